"""Candidate operations of the CNN search space; the same classes build supernets and final networks."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

# The order fixes the column of each op in the architecture matrix A.
PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

# Ops without weights: the "parameter-free" share that signals skip-connect collapse.
PARAMETER_FREE: frozenset[str] = frozenset({"none", "max_pool_3x3", "avg_pool_3x3", "skip_connect"})
NONE_INDEX = PRIMITIVES.index("none")


class Zero(nn.Module):
    """The `none` op: zeros of the output shape (spatially subsampled for stride 2)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv(kxk) -> BN; the cell input preprocessing."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, affine: bool):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> depthwise (dilated) kxk conv -> pointwise 1x1 conv -> BN."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, dilation: int,
                 affine: bool):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel, stride=stride, padding=padding, dilation=dilation,
                      groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv units with dilation 1; the stride applies to the first only."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, affine: bool):
        super().__init__(
            DilConv(C_in, C_in, kernel, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel, 1, padding, 1, affine),
        )


class FactorizedReduce(nn.Module):
    """ReLU, two 1x1 stride-2 convs (the second on the input shifted by one pixel), concat, BN."""

    def __init__(self, C_in: int, C_out: int, affine: bool):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = x[:, :, 1:, 1:]
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            # Odd sizes: pad the shifted view so both branches produce the same spatial size.
            shifted = nn.functional.pad(shifted, (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class Pool(nn.Sequential):
    """3x3 max/avg pooling (padding 1); followed by BN(affine=False) inside the search supernet."""

    def __init__(self, kind: str, C: int, stride: int, with_bn: bool):
        pool: nn.Module
        if kind == "max":
            pool = nn.MaxPool2d(3, stride=stride, padding=1)
        else:
            pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        layers = [pool] + ([nn.BatchNorm2d(C, affine=False)] if with_bn else [])
        super().__init__(*layers)


OpFactory = Callable[[int, int, bool], nn.Module]


def _skip(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine)


# Factories: (C, stride, affine) -> module. Pools get their search-time BN in `make_op`.
_FACTORIES: dict[str, OpFactory] = {
    "none": lambda C, stride, affine: Zero(stride),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine),
}


def make_op(name: str, C: int, stride: int, *, search: bool) -> nn.Module:
    """Build candidate op `name` on C channels.

    `search=True` gives the supernet form (every BN affine=False, pools followed by BN);
    `search=False` gives the final-network form (affine BN, bare pools).
    """
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        return Pool(name[:3], C, stride, with_bn=search)
    if name not in _FACTORIES:
        raise ValueError(f"unknown op {name!r}; known ops: {', '.join(PRIMITIVES)}")
    return _FACTORIES[name](C, stride, not search)
