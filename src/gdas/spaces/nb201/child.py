"""A GDAS sample of the NAS-Bench-201 supernet as a static network (each edge holds only its sampled op)."""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from gdas.sampler import CellArch
from gdas.spaces.base import child_cells
from gdas.spaces.nb201.supernet import NONE_INDEX, NB201SearchCell, NB201SearchNetwork


class ChildCell(nn.Module):
    """One search cell with its sampled ops only (deep copies of the supernet's modules)."""

    def __init__(self, cell: NB201SearchCell, indices: list[int]):
        super().__init__()
        self.steps = cell.steps
        self.ops = nn.ModuleList()
        self.wiring: list[list[int]] = []  # per node: the input node of each op that runs, in edge order
        edge = 0
        for i in range(1, cell.steps + 1):
            inputs = []
            for j in range(i):
                if indices[edge] != NONE_INDEX:  # `none` contributes nothing, as in the supernet
                    self.ops.append(copy.deepcopy(cell.edges[edge][indices[edge]]))
                    inputs.append(j)
                edge += 1
            self.wiring.append(inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        ops = iter(self.ops)
        for inputs in self.wiring:
            terms = [next(ops)(nodes[j]) for j in inputs]
            nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x))
        return nodes[-1]


class ChildNetwork(nn.Module):
    """Stem, child cells and the supernet's ResNet blocks, BN-ReLU, GAP + Linear: the W step's computation."""

    def __init__(self, supernet: NB201SearchNetwork, archs: list[Optional[CellArch]]):
        super().__init__()
        self.stem = copy.deepcopy(supernet.stem)
        self.cells = child_cells(supernet.cells, archs, ChildCell)
        self.lastact = copy.deepcopy(supernet.lastact)
        self.global_pooling = copy.deepcopy(supernet.global_pooling)
        self.classifier = copy.deepcopy(supernet.classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = self.stem(x)
        for cell in self.cells:
            feature = cell(feature)
        return self.classifier(self.global_pooling(self.lastact(feature)).flatten(1))


def child_network(supernet: NB201SearchNetwork, archs: list[Optional[CellArch]]) -> ChildNetwork:
    """The static network a GDAS sample `archs` selects, with copies of the supernet's current weights."""
    return ChildNetwork(supernet, archs)
