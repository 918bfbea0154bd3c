"""The MobileNet-style space: MobileNetV2 1.0 expressed in it counts as an independently written MobileNetV2 does,
a frozen network is a plain exportable module equal to the supernet under the same choices."""

from __future__ import annotations

import copy
import io

import torch
from torch import nn

import gdas
from gdas.export import onnx_bytes
from gdas.flops import count_mult_adds, count_parameters
from gdas.spaces import get_space
from gdas.spaces.mobilenet.net import MobileNetSpace, mobilenet_v2_choices
from gdas.spaces.module.supernet import ModuleSupernet


def _conv(c_in, c_out, k, s=1, groups=1, act=True):
    layers = [nn.Conv2d(c_in, c_out, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, *([nn.ReLU6()] if act else []))


def reference_mobilenet_v2(num_classes: int = 1000) -> nn.Module:
    """MobileNetV2 1.0 from the paper's table (t, c, n, s), written without gdas."""
    layers, c = [_conv(3, 32, 3, 2)], 32
    for t, out, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                         (6, 320, 1, 1)):
        for i in range(n):
            hidden = c * t
            body = ([] if t == 1 else [_conv(c, hidden, 1)]) + [_conv(hidden, hidden, 3, s if i == 0 else 1, hidden),
                                                                  _conv(hidden, out, 1, act=False)]
            layers.append(nn.Sequential(*body))
            c = out
    return nn.Sequential(*layers, _conv(c, 1280, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, num_classes))


def test_mobilenet_v2_in_the_space_counts_as_mobilenet_v2():
    ours = gdas.freeze("mobilenet", gdas.load_genotype("mobilenet-v2"), num_classes=1000, dataset="imagenet", C=32,
                       N=4)
    ref = reference_mobilenet_v2()
    assert count_parameters(ours, ()) == count_parameters(ref, ()) == 3_504_872
    assert count_mult_adds(ours, (3, 224, 224)) == count_mult_adds(ref, (3, 224, 224))
    info = get_space("mobilenet").info(gdas.load_genotype("mobilenet-v2"), "imagenet", 32, 4, shape=(3, 224, 1000))
    assert info["params_M"] == 3.504872 and 295 < info["mult_adds_M"] < 305


def test_frozen_network_is_plain_equal_to_the_supernet_and_exports():
    torch.manual_seed(0)
    supernet = ModuleSupernet(MobileNetSpace(num_classes=10, width=0.25, depth=2, layout="cifar"))
    supernet.eval()
    labels = supernet.labels
    choices = {label: ("skip" if i % 3 == 1 else ("k5e3", "k7e6", "k3e6")[i % 3]) for i, label in enumerate(labels)}
    choices = {k: ("k3e3" if v == "skip" and k.endswith("b1") else v) for k, v in choices.items()}
    x = torch.randn(2, 3, 32, 32)
    expected = supernet(x, supernet.fixed_archs(choices))
    frozen = gdas.freeze("mobilenet", choices, weights=supernet.net.state_dict(), num_classes=10, C=8, N=2)
    frozen.eval()
    assert not any(isinstance(m, gdas.nn.ChoiceBlock) for m in frozen.modules())
    assert not any("candidates" in k for k in frozen.state_dict())
    assert torch.equal(frozen(x), expected)
    plain = copy.deepcopy(frozen)
    assert len(onnx_bytes(plain, x[:1])) > 1000
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.trace(plain, x), buffer)
    assert buffer.tell() > 1000
