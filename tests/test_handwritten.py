"""`gdas.build_network` for a user's own loop: its forward gives the logits tensor (the pair only with an
auxiliary head in train mode), so losses, metrics and exporters take it as it is."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
import torch.nn.functional as F

import gdas
from gdas.errors import GdasError
from gdas.networks import network_from

NETWORKS = {"darts": dict(genotype="GDAS", C=8), "nb201": dict(genotype="nb201-resnet", C=4)}


def _net(space: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return gdas.build_network(num_classes=3, N=1, **{**NETWORKS[space], **kw})


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 16, 16, generator=g), torch.tensor([0, 1, 2, 1])


@pytest.mark.parametrize("space", list(NETWORKS))
def test_cross_entropy_takes_the_output_in_train_and_eval(space):
    net, (x, y) = _net(space), _batch()
    loss = F.cross_entropy(net.train()(x), y)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    with torch.no_grad():
        out = net.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (4, 3)
    assert torch.isfinite(F.cross_entropy(out, y))


def test_the_auxiliary_pair_only_when_asked_for_and_training():
    x, y = _batch()
    x = F.interpolate(x, size=32)  # the CIFAR auxiliary head reads 8x8 maps
    net = _net("darts", auxiliary=True).train()
    logits, aux = net(x)
    assert logits.shape == aux.shape == (4, 3)
    (F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)).backward()
    assert all(p.grad is not None for p in net.auxiliary_head.parameters())
    assert isinstance(net.eval()(x), torch.Tensor)
    with pytest.raises(GdasError, match=r"^NAS-Bench-201 networks have no auxiliary head; build them with "
                                        r"auxiliary=False$"):
        _net("nb201", auxiliary=True)


@pytest.mark.parametrize("space", list(NETWORKS))
def test_state_dict_keys_are_those_of_the_trained_network(space):
    """A training run's weights load into a build_network module (and back) by the same keys."""
    genotype = gdas.load_genotype(NETWORKS[space]["genotype"])
    trained = network_from(genotype, dict(dataset="cifar10", C=NETWORKS[space]["C"], N=1, num_classes=3,
                                          auxiliary=False, in_channels=3))
    net = _net(space)
    assert list(net.state_dict()) == list(trained.state_dict())
    net.load_state_dict(trained.state_dict())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_user_exports_it_with_torchscript_and_onnx():
    net, (x, _) = _net("nb201").eval(), _batch()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = net(x)
        traced = torch.jit.trace(net, x)
        assert torch.allclose(traced(x), expected, atol=1e-5)
    reference = pytest.importorskip("onnx.reference")
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buffer, dynamo=False, input_names=["images"], output_names=["logits"])
    got = reference.ReferenceEvaluator(buffer.getvalue()).run(None, {"images": x.numpy()})
    assert len(got) == 1 and torch.allclose(torch.from_numpy(got[0]), expected, atol=1e-4)
