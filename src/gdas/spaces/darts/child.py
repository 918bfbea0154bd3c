"""The sampled child of a supernet as a static network: each edge holds only its sampled op, no A."""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from gdas.spaces.base import child_cells
from gdas.spaces.darts.ops import NONE_INDEX
from gdas.spaces.darts.supernet import CellArch, SearchCell, SearchNetwork, node_output


class ChildCell(nn.Module):
    """One searched cell with its sampled ops only (deep copies of the supernet's modules)."""

    def __init__(self, cell: SearchCell, indices: list[int]):
        super().__init__()
        self.steps, self.reduction, self.C = cell.steps, cell.reduction, cell.C
        self.pre0, self.pre1 = copy.deepcopy(cell.pre0), copy.deepcopy(cell.pre1)
        self.ops = nn.ModuleList()
        self.wiring: list[list[int]] = []  # per node: the input state of each op that runs, in edge order
        edge = 0
        for i in range(cell.steps):
            inputs = []
            for j in range(2 + i):
                k = indices[edge]
                if k != NONE_INDEX:  # `none` contributes nothing, as in the supernet
                    self.ops.append(copy.deepcopy(cell.edges[edge][k]))
                    inputs.append(j)
                edge += 1
            self.wiring.append(inputs)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        ops = iter(self.ops)
        for inputs in self.wiring:
            terms = [next(ops)(states[j]) for j in inputs]
            states.append(node_output(terms, states[0], self.C, self.reduction))
        return torch.cat(states[2:], dim=1)


class ChildNetwork(nn.Module):
    """Stem, child cells (fixed cells copied as they are), GAP + Linear: the supernet's W-step computation."""

    def __init__(self, supernet: SearchNetwork, archs: list[Optional[CellArch]]):
        super().__init__()
        self.stem = copy.deepcopy(supernet.stem)
        self.cells = child_cells(supernet.cells, archs, ChildCell)
        self.global_pooling = copy.deepcopy(supernet.global_pooling)
        self.classifier = copy.deepcopy(supernet.classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.global_pooling(s1).flatten(1))


def child_network(supernet: SearchNetwork, archs: list[Optional[CellArch]]) -> ChildNetwork:
    """The static network a GDAS sample `archs` selects, with copies of the supernet's current weights."""
    return ChildNetwork(supernet, archs)
