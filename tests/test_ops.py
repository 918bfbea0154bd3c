"""Tests for the candidate ops: shapes for both strides, search/final forms, none, skip, FactorizedReduce."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gdas.spaces.darts.ops import PARAMETER_FREE, PRIMITIVES, FactorizedReduce, make_op

C = 4


def _bns(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_primitives_order_and_parameter_free_set():
    assert PRIMITIVES == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                          "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    assert PARAMETER_FREE == {"none", "max_pool_3x3", "avg_pool_3x3", "skip_connect"}


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("search", [True, False])
@pytest.mark.parametrize("size", [8, 7])
def test_output_shape(name, stride, search, size):
    torch.manual_seed(0)
    op = make_op(name, C, stride, search=search)
    x = torch.randn(2, C, size, size + 1)  # non-square: H and W handled independently
    out = op(x)
    exp_h, exp_w = (size, size + 1) if stride == 1 else (math.ceil(size / 2), math.ceil((size + 1) / 2))
    assert out.shape == (2, C, exp_h, exp_w)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("stride", [1, 2])
def test_search_form_has_no_affine_bn(name, stride):
    op = make_op(name, C, stride, search=True)
    for bn in _bns(op):
        assert not bn.affine and bn.weight is None and bn.bias is None
    if name in ("none", "max_pool_3x3", "avg_pool_3x3") or (name == "skip_connect" and stride == 1):
        assert sum(p.numel() for p in op.parameters()) == 0


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("stride", [1, 2])
def test_final_form_has_affine_bn(name, stride):
    op = make_op(name, C, stride, search=False)
    bns = _bns(op)
    for bn in bns:
        assert bn.affine and bn.weight is not None and bn.bias is not None
    has_bn = name.startswith(("sep_conv", "dil_conv")) or (name == "skip_connect" and stride == 2)
    assert bool(bns) == has_bn


@pytest.mark.parametrize("name", ["max_pool_3x3", "avg_pool_3x3"])
@pytest.mark.parametrize("stride", [1, 2])
def test_pools_followed_by_bn_only_in_search(name, stride):
    pool_type = nn.MaxPool2d if name.startswith("max") else nn.AvgPool2d
    searched = list(make_op(name, C, stride, search=True).children())
    assert len(searched) == 2 and isinstance(searched[0], pool_type)
    assert isinstance(searched[1], nn.BatchNorm2d) and not searched[1].affine
    final = list(make_op(name, C, stride, search=False).children())
    assert len(final) == 1 and isinstance(final[0], pool_type)
    assert final[0].kernel_size == 3 and final[0].padding == 1 and final[0].stride == stride


def test_avg_pool_excludes_padding():
    op = make_op("avg_pool_3x3", 1, 1, search=False)
    out = op(torch.ones(1, 1, 4, 4))
    assert torch.equal(out, torch.ones(1, 1, 4, 4))  # count_include_pad=True would shrink the borders


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("search", [True, False])
def test_none_gives_zeros(stride, search):
    op = make_op("none", C, stride, search=search)
    x = torch.randn(2, C, 7, 7)
    out = op(x)
    assert out.shape == (2, C, 4, 4) if stride == 2 else out.shape == x.shape
    assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize("search", [True, False])
def test_skip_connect_stride1_is_identity(search):
    op = make_op("skip_connect", C, 1, search=search)
    x = torch.randn(2, C, 5, 5)
    assert torch.equal(op(x), x)
    assert isinstance(make_op("skip_connect", C, 2, search=search), FactorizedReduce)


@pytest.mark.parametrize("size", [8, 7])
def test_factorized_reduce_channel_split(size):
    torch.manual_seed(1)
    fr = FactorizedReduce(3, 6, affine=False).eval()  # fresh running stats: BN divides by sqrt(1 + eps)
    assert fr.conv_1.out_channels == fr.conv_2.out_channels == 3
    assert fr.conv_1.stride == fr.conv_2.stride == (2, 2) and fr.conv_1.kernel_size == (1, 1)
    x = torch.randn(2, 3, size, size)
    out = fr(x)
    half = math.ceil(size / 2)
    assert out.shape == (2, 6, half, half)
    scale = math.sqrt(1 + fr.bn.eps)
    relu = x.clamp_min(0)
    first = nn.functional.conv2d(relu, fr.conv_1.weight, stride=2) / scale
    assert torch.allclose(out[:, :3], first, atol=1e-6)
    # The second half sees the input shifted by one pixel (padded at the far border for odd sizes).
    shifted = nn.functional.pad(relu[:, :, 1:, 1:], (0, size % 2, 0, size % 2))
    second = nn.functional.conv2d(shifted, fr.conv_2.weight, stride=2) / scale
    assert torch.allclose(out[:, 3:], second, atol=1e-6)


def test_factorized_reduce_mixed_parity():
    out = FactorizedReduce(2, 4, affine=True)(torch.randn(1, 2, 8, 7))
    assert out.shape == (1, 4, 4, 4)


def test_factorized_reduce_odd_channels_raise():
    with pytest.raises(ValueError, match="even"):
        FactorizedReduce(4, 5, affine=True)


def test_sep_conv_structure():
    op = make_op("sep_conv_5x5", C, 2, search=False)
    convs = [m for m in op.modules() if isinstance(m, nn.Conv2d)]
    # Two units of (depthwise kxk, pointwise 1x1); the stride only in the first depthwise conv.
    assert [c.kernel_size for c in convs] == [(5, 5), (1, 1), (5, 5), (1, 1)]
    assert [c.stride for c in convs] == [(2, 2), (1, 1), (1, 1), (1, 1)]
    assert convs[0].groups == C and convs[2].groups == C and convs[0].padding == (2, 2)
    assert len(_bns(op)) == 2


@pytest.mark.parametrize("name,kernel,padding", [("dil_conv_3x3", 3, 2), ("dil_conv_5x5", 5, 4)])
def test_dil_conv_structure(name, kernel, padding):
    convs = [m for m in make_op(name, C, 1, search=True).modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2
    assert convs[0].kernel_size == (kernel, kernel) and convs[0].dilation == (2, 2)
    assert convs[0].padding == (padding, padding) and convs[0].groups == C


def test_unknown_op_and_bad_stride_raise():
    with pytest.raises(ValueError, match="unknown op"):
        make_op("conv_7x7", C, 1, search=True)
    with pytest.raises(ValueError, match="stride"):
        make_op("sep_conv_3x3", C, 3, search=True)
