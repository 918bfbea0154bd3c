"""NB201 inference network and its size: params and multiply-adds equal the authors' package's figures."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gdas.errors import GdasError
from gdas.spaces.nb201 import NB201Genotype, NB201Network, nb201_info
from gdas.spaces.nb201.cost import bias_adds

# (params_M, mult_adds_M) per dataset, read off the authors' package xautodl 1.0.0 (PyPI; torch 2.13.0):
# TinyNetwork(16, 5, Structure.str2structure(arch), classes) measured with its utils.flop_benchmark
# get_model_infos (FLOPs) and count_parameters_in_MB (params), inputs 32x32 (CIFAR) and 16x16 (ImageNet16-120).
# The last architecture's figures also match NATS-Bench's own record of it (index 1: 113.95 / 0.802 on
# CIFAR-10, 113.96 / 0.808 on CIFAR-100, 28.50 on ImageNet16-120).
REFERENCE = {
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|":
        {"cifar10": (1.288506, 184.73025), "cifar100": (1.294356, 184.7361), "imagenet16-120": (1.295656, 46.1902)},
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|":
        {"cifar10": (0.559386, 78.56193), "cifar100": (0.565236, 78.56778), "imagenet16-120": (0.566536, 19.64812)},
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|":
        {"cifar10": (1.531546, 220.11969), "cifar100": (1.537396, 220.12554), "imagenet16-120": (1.538696, 55.03756)},
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|":
        {"cifar10": (0.073306, 7.78305), "cifar100": (0.079156, 7.7889), "imagenet16-120": (0.080456, 1.9534)},
    "|nor_conv_1x1~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|":
        {"cifar10": (0.157306, 19.57953), "cifar100": (0.163156, 19.58538), "imagenet16-120": (0.164456, 4.90252)},
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|":
        {"cifar10": (0.802426, 113.95137), "cifar100": (0.808276, 113.95722), "imagenet16-120": (0.809576, 28.49548)},
}
BEST = next(iter(REFERENCE))


@pytest.mark.parametrize("arch", list(REFERENCE))
def test_sizes_equal_the_reference(arch):
    for dataset, (params, mult_adds) in REFERENCE[arch].items():
        info = nb201_info(arch, dataset)
        assert info["params_M"] == pytest.approx(params, abs=1e-9), dataset
        assert info["mult_adds_M"] == pytest.approx(mult_adds, abs=1e-9), dataset
        size, classes = (16, 120) if dataset == "imagenet16-120" else (32, 10 if dataset == "cifar10" else 100)
        assert info == {**info, "C": 16, "N": 5, "input_size": size, "num_classes": classes, "dataset": dataset}


def test_bias_adds_are_the_classifier_in_the_final_network():
    # Every conv of the final network is bias-free (affine BN follows), so only the Linear's bias adds.
    assert bias_adds(NB201Network(BEST, num_classes=10), (3, 32, 32)) == 10
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, stride=2, padding=1), torch.nn.Conv2d(5, 4, 1, bias=False))
    assert bias_adds(conv, (3, 8, 8)) == 5 * 4 * 4


def test_info_other_sizes_and_unknown_dataset():
    small = nb201_info(BEST, "CIFAR10", C=8, N=1)
    assert small["C"] == 8 and small["N"] == 1 and small["dataset"] == "cifar10"
    assert small["params_M"] < REFERENCE[BEST]["cifar10"][0] / 4
    with pytest.raises(GdasError, match="choose one of cifar10, cifar100, imagenet16-120"):
        nb201_info(BEST, "imagenet")


# ---- the inference network ----

def test_network_layout_matches_the_reference_state_dict():
    net = NB201Network(BEST, C=16, N=5, num_classes=10)
    keys = net.state_dict().keys()
    # Key names of the reference's TinyNetwork, so that NB201 checkpoints load with strict=True.
    for key in ("stem.0.weight", "stem.1.running_mean", "cells.0.layers.0.op.1.weight", "cells.0.layers.4.op.2.bias",
                "cells.5.conv_a.op.1.weight", "cells.5.downsample.1.weight", "cells.16.layers.5.op.2.weight",
                "lastact.0.weight", "classifier.bias"):
        assert key in keys, key
    assert not any(k.startswith("cells.0.layers.3.") for k in keys)  # layer 3 is skip_connect
    assert len(net.cells) == 17 and net.classifier.in_features == 64
    assert all(m.affine for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize("channels,size", [(3, 32), (3, 16), (1, 16)])
def test_network_forward_and_training_step(channels, size):
    torch.manual_seed(0)
    net = NB201Network(NB201Genotype.parse(BEST), C=4, N=1, num_classes=7, in_channels=channels)
    assert net.drop_path_prob == 0.0
    net.drop_path_prob = 0.3  # the training loop sets it; the network ignores it
    x, y = torch.randn(2, channels, size, size), torch.tensor([1, 5])
    logits = net(x)
    assert logits.shape == (2, 7)
    F.cross_entropy(logits, y).backward()
    assert all(p.grad is not None for p in net.parameters())


def test_all_none_cells_pass_only_the_resnet_blocks():
    torch.manual_seed(0)
    net = NB201Network("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", C=4, N=1, num_classes=3).eval()
    a = net(torch.randn(1, 3, 8, 8))
    b = net(torch.randn(1, 3, 8, 8))
    assert torch.equal(a, b)  # the first cell outputs zeros: the input never reaches the logits
