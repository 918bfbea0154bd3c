"""The CNN search cell and search network (supernet) with GDAS, no-acceleration and DARTS edge modes."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from gdas.spaces.darts.fixed_cell import FixedReductionCell
from gdas.spaces.darts.ops import NONE_INDEX, PRIMITIVES, FactorizedReduce, ReLUConvBN, make_op
from gdas.sampler import SAMPLE_SCOPES, SAMPLERS, CellArch, cell_arch, edge_output, sample


def num_edges(steps: int) -> int:
    """Edges of a cell with `steps` intermediate nodes and two inputs: 2 + 3 + ... (14 for 4 steps)."""
    return sum(2 + i for i in range(steps))


def _dense_channels_last(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


def node_output(terms: list[torch.Tensor], x0: torch.Tensor, C: int, reduction: bool) -> torch.Tensor:
    """Sum of a node's edge outputs in edge order; zeros of the node's shape when every edge is `none`."""
    if terms:
        out = sum(terms[1:], terms[0])
        if out.requires_grad and out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous():
            # The cell's concat hands each node a strided channel slice of its gradient; every op ends in a
            # BN whose channels_last backward is several times slower on such a slice than on a dense one.
            out.register_hook(_dense_channels_last)
        return out
    h, w = x0.shape[-2:]
    if reduction:
        h, w = (h + 1) // 2, (w + 1) // 2
    return x0.new_zeros(x0.shape[0], C, h, w)


class SearchCell(nn.Module):
    """A cell with every candidate op on each of its edges; `CellArch` decides which ones run."""

    def __init__(self, steps: int, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.steps, self.reduction, self.C = steps, reduction, C
        self.pre0 = FactorizedReduce(C_pp, C, affine=False) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0, False)
        self.pre1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList()
        for i in range(steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(nn.ModuleList(make_op(name, C, stride, search=True) for name in PRIMITIVES))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, arch: CellArch) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        edge = 0
        for i in range(self.steps):
            terms = []
            for j in range(2 + i):
                out = edge_output(self.edges[edge], states[j], arch, edge, NONE_INDEX)
                if out is not None:
                    terms.append(out)
                edge += 1
            states.append(node_output(terms, states[0], self.C, self.reduction))
        return torch.cat(states[2:], dim=1)


class SearchNetwork(nn.Module):
    """Stem, 3N+2 cells (reductions at N and 2N+1, doubling C), GAP + Linear; A for normal/reduce cells.

    `frc=True` searches only the normal cell; reduction cells are the fixed reduction cell.
    """

    def __init__(self, C: int, N: int, num_classes: int, *, in_channels: int = 3, steps: int = 4,
                 stem_multiplier: int = 3, frc: bool = False, sampler: str = "gdas",
                 sample_scope: str = "network"):
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if sample_scope not in SAMPLE_SCOPES:
            raise ValueError(f"unknown sample scope {sample_scope!r}; choose one of {', '.join(SAMPLE_SCOPES)}")
        self.steps, self.frc, self.sampler, self.sample_scope = steps, frc, sampler, sample_scope
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        self.reduction_flags: list[bool] = []
        reduction_prev = False
        for index in range(3 * N + 2):
            reduction = index in (N, 2 * N + 1)
            if reduction:
                C_curr *= 2
            cell: nn.Module
            if reduction and frc:
                cell = FixedReductionCell(C_pp, C_p, C_curr, reduction_prev, affine=False)
            else:
                cell = SearchCell(steps, C_pp, C_p, C_curr, reduction, reduction_prev)
            self.cells.append(cell)
            self.reduction_flags.append(reduction)
            reduction_prev = reduction
            C_pp, C_p = C_p, 4 * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)
        n_edges, n_ops = num_edges(steps), len(PRIMITIVES)
        self.arch_normal = nn.Parameter(1e-3 * torch.randn(n_edges, n_ops))
        self.arch_reduce = None if frc else nn.Parameter(1e-3 * torch.randn(n_edges, n_ops))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [p for p in (self.arch_normal, self.arch_reduce) if p is not None]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def _searched(self) -> list[tuple[int, nn.Parameter]]:
        """(cell index, its logits) for every cell that is searched (not the fixed reduction cell)."""
        out = []
        for i, red in enumerate(self.reduction_flags):
            logits = self.arch_reduce if red else self.arch_normal
            if logits is not None:
                out.append((i, logits))
        return out

    def sample_arch(self, tau: float, *, arch_grad: bool, generator: Optional[torch.Generator] = None
                    ) -> list[Optional[CellArch]]:
        """Draw what every cell computes in the next forward pass (None for fixed cells).

        One Gumbel draw per cell type (scope `network`) or per cell (scope `cell`), made in a single
        call so that the sampled indices cross to the host once per forward. With `arch_grad=False`
        (the W step) no graph to A is kept and GDAS edges run unscaled: exactly the sampled child.
        """
        searched = self._searched()
        if self.sample_scope == "network":
            params = self.arch_parameters()
            rows = [0 if logits is self.arch_normal else 1 for _, logits in searched]
        else:
            params = [logits for _, logits in searched]
            rows = list(range(len(searched)))
        with torch.set_grad_enabled(arch_grad and torch.is_grad_enabled()):
            drawn = sample(torch.stack(params), tau, self.sampler, generator)
        archs: list[Optional[CellArch]] = [None] * len(self.cells)
        for (cell_index, _), row in zip(searched, rows):
            archs[cell_index] = cell_arch(drawn, row, self.sampler, arch_grad)
        return archs

    def forward(self, x: torch.Tensor, archs: list[Optional[CellArch]]) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell, arch in zip(self.cells, archs):
            s0, s1 = s1, (cell(s0, s1) if arch is None else cell(s0, s1, arch))
        return self.classifier(self.global_pooling(s1).flatten(1))

    def arch_logits(self) -> dict[str, Optional[nn.Parameter]]:
        """A per cell type, by the names of `probabilities` (None for the fixed reduction cell)."""
        return {"normal": self.arch_normal, "reduce": self.arch_reduce}

    def probabilities(self) -> dict[str, Optional[torch.Tensor]]:
        """softmax(A) per cell type (None for the fixed reduction cell)."""
        with torch.no_grad():
            return {k: None if v is None else torch.softmax(v, -1) for k, v in self.arch_logits().items()}
