"""The NB201 search cell and search network (supernet) with GDAS, no-acceleration and DARTS edge modes."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from gdas.sampler import SAMPLE_SCOPES, SAMPLERS, CellArch, cell_arch, edge_output, sample
from gdas.spaces.nb201.ops import NB201_OPS, ResNetBasicBlock, make_op

NONE_INDEX = NB201_OPS.index("none")


def num_edges(steps: int) -> int:
    """Edges of a cell whose `steps` nodes after the input each read every earlier node (6 for 3 steps)."""
    return steps * (steps + 1) // 2


class NB201SearchCell(nn.Module):
    """Node 0 is the input; node i (1..steps) sums one op on each earlier node; the last node is the output.

    Edge e runs in NB201's order (1<-0, 2<-0, 2<-1, 3<-0, ...) and holds every op of NB201_OPS.
    `reference_grad` adds, for each unsampled op k of a GDAS edge, the zero-valued term h_k (as the
    reference's `forward_gdas` does): the forward value is unchanged, but each unsampled h_k then
    receives the sum of the edge output's gradient.
    """

    def __init__(self, C: int, steps: int, *, affine: bool = False, track_running_stats: bool = True,
                 reference_grad: bool = False):
        super().__init__()
        self.steps, self.reference_grad = steps, reference_grad
        self.edges = nn.ModuleList(
            nn.ModuleList(make_op(name, C, C, 1, affine, track_running_stats) for name in NB201_OPS)
            for _ in range(num_edges(steps)))

    def forward(self, x: torch.Tensor, arch: CellArch) -> torch.Tensor:
        nodes = [x]
        edge = 0
        for i in range(1, self.steps + 1):
            terms: list[torch.Tensor] = []
            extra: Optional[torch.Tensor] = None  # scalar terms of `reference_grad`
            for j in range(i):
                out = edge_output(self.edges[edge], nodes[j], arch, edge, NONE_INDEX)
                if out is not None:
                    terms.append(out)
                if self.reference_grad and arch.indices is not None and arch.weights is not None:
                    w = arch.weights[edge]
                    rest = w.sum() - w[arch.indices[edge]]  # exactly 0.0 forward: w is one-hot in value
                    extra = rest if extra is None else extra + rest
                edge += 1
            node = sum(terms[1:], terms[0]) if terms else torch.zeros_like(x)
            nodes.append(node if extra is None else node + extra)
        return nodes[-1]


class NB201SearchNetwork(nn.Module):
    """Stem, three stages of N search cells (C, 2C, 4C) joined by stride-2 ResNet blocks, BN-ReLU, GAP, Linear.

    One (edges x ops) logit matrix `arch` is shared by every cell. Searched cells use BN without affine
    and, by default, track running statistics (the reference's GDAS setting on NB201).
    """

    def __init__(self, C: int, N: int, num_classes: int, *, in_channels: int = 3, steps: int = 3,
                 sampler: str = "gdas", sample_scope: str = "network", track_running_stats: bool = True,
                 reference_grad: bool = False):
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if sample_scope not in SAMPLE_SCOPES:
            raise ValueError(f"unknown sample scope {sample_scope!r}; choose one of {', '.join(SAMPLE_SCOPES)}")
        self.steps, self.sampler, self.sample_scope = steps, sampler, sample_scope
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.cells = nn.ModuleList()
        C_prev = C
        for stage, C_curr in enumerate((C, 2 * C, 4 * C)):
            if stage:
                self.cells.append(ResNetBasicBlock(C_prev, C_curr, 2))
            for _ in range(N):
                self.cells.append(NB201SearchCell(C_curr, steps, track_running_stats=track_running_stats,
                                                  reference_grad=reference_grad))
            C_prev = C_curr
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        self.arch = nn.Parameter(1e-3 * torch.randn(num_edges(steps), len(NB201_OPS)))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.arch]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p is not self.arch]

    def searched_cells(self) -> list[int]:
        """Indices in `self.cells` of the search cells (the others are the fixed ResNet blocks)."""
        return [i for i, cell in enumerate(self.cells) if isinstance(cell, NB201SearchCell)]

    def sample_arch(self, tau: float, *, arch_grad: bool, generator: Optional[torch.Generator] = None
                    ) -> list[Optional[CellArch]]:
        """Draw what every cell computes in the next forward pass (None for the ResNet blocks).

        One Gumbel draw shared by all cells (scope `network`) or one per cell (scope `cell`), made in a
        single call so that the sampled indices cross to the host once per forward. With `arch_grad=False`
        (the W step) no graph to A is kept and GDAS edges run unscaled: exactly the sampled child.
        """
        searched = self.searched_cells()
        copies = 1 if self.sample_scope == "network" else len(searched)
        with torch.set_grad_enabled(arch_grad and torch.is_grad_enabled()):
            drawn = sample(torch.stack([self.arch] * copies), tau, self.sampler, generator)
        archs: list[Optional[CellArch]] = [None] * len(self.cells)
        for n, cell_index in enumerate(searched):
            archs[cell_index] = cell_arch(drawn, 0 if copies == 1 else n, self.sampler, arch_grad)
        return archs

    def forward(self, x: torch.Tensor, archs: list[Optional[CellArch]]) -> torch.Tensor:
        feature = self.stem(x)
        for cell, arch in zip(self.cells, archs):
            feature = cell(feature) if arch is None else cell(feature, arch)
        return self.classifier(self.global_pooling(self.lastact(feature)).flatten(1))

    def arch_logits(self) -> dict[str, nn.Parameter]:
        """A by the name of `probabilities`."""
        return {"cell": self.arch}

    def probabilities(self) -> dict[str, torch.Tensor]:
        """softmax(A), the edge-by-op probabilities shared by every cell."""
        with torch.no_grad():
            return {"cell": torch.softmax(self.arch, -1)}
