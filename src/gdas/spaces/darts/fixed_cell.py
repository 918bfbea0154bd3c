"""The fixed reduction cell (FIX-R, paper Fig. 3), shared by the FRC supernet and final networks."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from gdas.errors import GdasError
from gdas.spaces.darts.ops import FactorizedReduce, ReLUConvBN

DropPath = Callable[[torch.Tensor], torch.Tensor]

FRC_GROUPS = 8  # groups of the fixed reduction cell's 1x3 / 3x1 convolutions (paper Fig. 3)


def _conv_branch(C: int, affine: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(C, C, (1, 3), stride=(1, 2), padding=(0, 1), groups=FRC_GROUPS, bias=False),
        nn.Conv2d(C, C, (3, 1), stride=(2, 1), padding=(1, 0), groups=FRC_GROUPS, bias=False),
        nn.BatchNorm2d(C, affine=affine),
        nn.ReLU(inplace=False),
        nn.Conv2d(C, C, 1, bias=False),
        nn.BatchNorm2d(C, affine=affine),
    )


def _pool_branch(C: int, affine: bool) -> nn.Sequential:
    return nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1), nn.BatchNorm2d(C, affine=affine))


class FixedReductionCell(nn.Module):
    """Two grouped 1x3/3x1 conv branches and two max-pool branches; output 4C channels at half size."""

    multiplier = 4

    def __init__(self, C_pp: int, C_p: int, C: int, reduction_prev: bool, affine: bool):
        super().__init__()
        if C % FRC_GROUPS:
            raise GdasError(f"the fixed reduction cell needs C divisible by {FRC_GROUPS} (its convs use "
                            f"{FRC_GROUPS} groups); "
                            f"got C={C}: pick C as a multiple of 8")
        self.pre0 = FactorizedReduce(C_pp, C, affine) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0, affine)
        self.pre1 = ReLUConvBN(C_p, C, 1, 1, 0, affine)
        self.branches = nn.ModuleList([_conv_branch(C, affine), _conv_branch(C, affine),
                                       _pool_branch(C, affine), _pool_branch(C, affine)])

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_path: Optional[DropPath] = None) -> torch.Tensor:
        x0, x1 = self.pre0(s0), self.pre1(s1)
        outs = [self.branches[0](x0), self.branches[1](x1), self.branches[2](x0), self.branches[3](x1)]
        if drop_path is not None:
            outs = [drop_path(o) for o in outs]
        return torch.cat(outs, dim=1)
