"""The NAS-Bench-201 candidate operations and the ResNet basic block that joins its stages."""

from __future__ import annotations

import torch
from torch import nn

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
PARAM_FREE: frozenset[str] = frozenset({"none", "skip_connect", "avg_pool_3x3"})


class ReLUConvBN(nn.Module):
    """ReLU, Conv2d, BN. The conv carries a bias exactly when the BN has no affine shift (as NB201 builds it)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, affine: bool,
                 track_running_stats: bool = True):
        super().__init__()
        # `op` as a Sequential keeps the state-dict keys of NB201's checkpoints (op.1.weight, op.2.running_mean).
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel, stride=stride, padding=padding, bias=not affine),
            nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Zero(nn.Module):
    """The `none` op: zeros of the output shape (strided when stride > 1)."""

    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__()
        self.C_in, self.C_out, self.stride = C_in, C_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.C_in == self.C_out:
            return (x if self.stride == 1 else x[:, :, ::self.stride, ::self.stride]).mul(0.0)
        h, w = x.shape[-2:]
        h, w = (h + self.stride - 1) // self.stride, (w + self.stride - 1) // self.stride
        return x.new_zeros(x.shape[0], self.C_out, h, w)


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class AvgPool(nn.Module):
    """3x3 average pooling (padding 1, padded cells not counted), after a ReLU-Conv1x1-BN when channels change."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool, track_running_stats: bool):
        super().__init__()
        self.preprocess = None if C_in == C_out else ReLUConvBN(C_in, C_out, 1, 1, 0, affine, track_running_stats)
        self.op = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x if self.preprocess is None else self.preprocess(x))


class FactorizedReduce(nn.Module):
    """`skip_connect` when the shape changes: ReLU, two 1x1 convs (the second on the input shifted by a pixel
    at stride 2), concat, BN. NB201 cells never change shape; this keeps `make_op` complete."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool, track_running_stats: bool):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"FactorizedReduce supports stride 1 or 2, got {stride}")
        self.stride = stride
        self.relu = nn.ReLU(inplace=False)
        if stride == 2:
            halves = (C_out // 2, C_out - C_out // 2)
            self.convs = nn.ModuleList(nn.Conv2d(C_in, c, 1, stride=2, bias=not affine) for c in halves)
        else:
            self.conv = nn.Conv2d(C_in, C_out, 1, bias=not affine)
        self.bn = nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return self.bn(self.conv(x))
        x = self.relu(x)
        # The shifted branch reads x[1:, 1:] zero-padded at the bottom/right, so odd sizes line up.
        shifted = nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.convs[0](x), self.convs[1](shifted)], dim=1))


def make_op(name: str, C_in: int, C_out: int, stride: int, affine: bool, track_running_stats: bool) -> nn.Module:
    """Candidate op `name` (one of NB201_OPS) as NB201 builds it."""
    if name == "none":
        return Zero(C_in, C_out, stride)
    if name == "skip_connect":
        if stride == 1 and C_in == C_out:
            return Identity()
        return FactorizedReduce(C_in, C_out, stride, affine, track_running_stats)
    if name == "nor_conv_1x1":
        return ReLUConvBN(C_in, C_out, 1, stride, 0, affine, track_running_stats)
    if name == "nor_conv_3x3":
        return ReLUConvBN(C_in, C_out, 3, stride, 1, affine, track_running_stats)
    if name == "avg_pool_3x3":
        return AvgPool(C_in, C_out, stride, affine, track_running_stats)
    raise ValueError(f"unknown NB201 op {name!r}; choose one of {', '.join(NB201_OPS)}")


class ResNetBasicBlock(nn.Module):
    """Two ReLU-Conv3x3-BN units plus a shortcut (AvgPool2x2 + Conv1x1 at stride 2), between NB201's stages."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ResNetBasicBlock supports stride 1 or 2, got {stride}")
        self.conv_a = ReLUConvBN(C_in, C_out, 3, stride, 1, affine, track_running_stats)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1, affine, track_running_stats)
        self.downsample: nn.Module | None
        if stride == 2:
            self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(C_in, C_out, 1, bias=False))
        elif C_in != C_out:
            self.downsample = ReLUConvBN(C_in, C_out, 1, 1, 0, affine, track_running_stats)
        else:
            self.downsample = None
        self.out_dim = C_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return residual + self.conv_b(self.conv_a(x))
