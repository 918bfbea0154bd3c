"""Final CNN networks built from a genotype: CIFAR and ImageNet-mobile layouts, auxiliary heads, drop-path."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from gdas.errors import GdasError
from gdas.spaces.darts.fixed_cell import FixedReductionCell
from gdas.spaces.base import Node, Output
from gdas.spaces.darts.genotype import Genotype
from gdas.spaces.darts.ops import FactorizedReduce, ReLUConvBN, make_op


def drop_path(x: torch.Tensor, drop_prob: float, training: bool,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Zero whole samples with probability `drop_prob` and scale survivors by 1/keep (identity in eval)."""
    if not training or drop_prob <= 0.0:
        return x
    if drop_prob >= 1.0:
        raise ValueError(f"drop_prob must be below 1, got {drop_prob}")
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], *([1] * (x.dim() - 1)), dtype=x.dtype, device=x.device)
    mask.bernoulli_(keep, generator=generator)
    return x * mask / keep


class Cell(nn.Module):
    """A derived cell: each node sums its (op, input) pairs; the output concatenates the `concat` nodes."""

    def __init__(self, nodes: tuple[Node, ...], concat: tuple[int, ...], C_pp: int, C_p: int, C: int,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        n_states = len(nodes) + 2
        for offset, node in enumerate(nodes):
            for _, src in node:
                if not 0 <= src < offset + 2:
                    raise GdasError(f"cell node {offset + 2}: input {src} must be an earlier node "
                                    f"(0..{offset + 1})")
        if not concat or any(not 0 <= i < n_states for i in concat):
            raise GdasError(f"cell concat {list(concat)} must list node indices in 0..{n_states - 1}")
        if reduction and any(i < 2 for i in concat):
            # Nodes 0/1 keep the input resolution; the computed nodes are halved: they cannot be concatenated.
            raise GdasError(f"reduction cell concat {list(concat)} includes input node 0 or 1, whose "
                            "resolution is not reduced; concatenate computed nodes (2 and up) only")
        self.reduction = reduction
        self.concat = tuple(concat)
        self.multiplier = len(concat)
        self.pre0 = FactorizedReduce(C_pp, C, affine=True) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0, True)
        self.pre1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=True)
        self.ops = nn.ModuleList()
        self.inputs: list[tuple[int, ...]] = []
        for node in nodes:
            for name, src in node:
                self.ops.append(make_op(name, C, 2 if reduction and src < 2 else 1, search=False))
            self.inputs.append(tuple(src for _, src in node))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        apply_drop = self.training and drop_prob > 0.0
        k = 0
        for sources in self.inputs:
            total: Optional[torch.Tensor] = None
            for src in sources:
                op = self.ops[k]
                k += 1
                h = op(states[src])
                if apply_drop and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob, True)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class FixedReduction(FixedReductionCell):
    """The fixed reduction cell (affine BN) with the `cell(s0, s1, drop_prob)` signature of `Cell`."""

    def forward(self, s0: torch.Tensor, s1: torch.Tensor,  # type: ignore[override]
                drop_prob: float = 0.0) -> torch.Tensor:
        use = self.training and drop_prob > 0.0
        return super().forward(s0, s1, (lambda t: drop_path(t, drop_prob, True)) if use else None)


class _AuxiliaryHead(nn.Module):
    """ReLU, AvgPool 5x5 (no padding) to a 2x2 map, Conv1x1->128, BN, ReLU, Conv2x2->768, BN, ReLU, Linear.

    The pool stride is taken from the input size so that the pooled map is 2x2: 3 for the 8x8 map of
    32x32 CIFAR images (the paper's head), 2 for the 7x7 map of 28x28 images and of 224x224 ImageNet.
    """

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h < 6 or w < 6:
            raise GdasError(f"the auxiliary head needs a feature map of at least 6x6, got {h}x{w}; "
                            "use larger images or train without the auxiliary head")
        x = nn.functional.avg_pool2d(self.relu(x), 5, stride=(max(1, h - 5), max(1, w - 5)),
                                     count_include_pad=False)
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryHeadCIFAR(_AuxiliaryHead):
    """Auxiliary classifier on the 8x8 map after the second reduction (pool stride 3)."""


class AuxiliaryHeadImageNet(_AuxiliaryHead):
    """Auxiliary classifier after the second ImageNet reduction (7x7 map at 224x224 input: pool stride 2)."""


def _make_cell(genotype: Genotype, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool
               ) -> nn.Module:
    if reduction and genotype.reduce is None:
        return FixedReduction(C_pp, C_p, C, reduction_prev, affine=True)
    if reduction:
        assert genotype.reduce_concat is not None
        return Cell(genotype.reduce, genotype.reduce_concat, C_pp, C_p, C, True, reduction_prev)
    return Cell(genotype.normal, genotype.normal_concat, C_pp, C_p, C, False, reduction_prev)


class _CellStack(nn.Module):
    """Shared body: 3N+2 cells with reductions at N and 2N+1 (doubling C), aux head after the second."""

    auxiliary_head: Optional[nn.Module]
    drop_path_prob: float
    global_pooling: nn.Module
    classifier: nn.Module

    def _build_cells(self, genotype: Genotype, C_pp: int, C_p: int, C: int, N: int,
                     reduction_prev: bool) -> tuple[int, int]:
        """Create `self.cells`; return (channels after the last cell, channels after the 2nd reduction)."""
        if not isinstance(genotype, Genotype):
            raise GdasError(f"a CNN network needs a CNN genotype, got {type(genotype).__name__}")
        if N < 1 or C < 1:
            raise GdasError(f"C and N must be positive, got C={C}, N={N}")
        self.cells = nn.ModuleList()
        self.aux_index = 2 * N + 1
        C_aux = 0
        for index in range(3 * N + 2):
            reduction = index in (N, 2 * N + 1)
            if reduction:
                C *= 2
            cell = _make_cell(genotype, C_pp, C_p, C, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C
            if index == self.aux_index:
                C_aux = C_p
        return C_p, C_aux

    def _run_cells(self, s0: torch.Tensor, s1: torch.Tensor) -> Output:
        """The logits, or (logits, auxiliary logits) while training with an auxiliary head."""
        logits_aux = None
        for index, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if index == self.aux_index and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits if logits_aux is None else (logits, logits_aux)


class NetworkCIFAR(_CellStack):
    """Stem Conv3x3 + BN, 3N+2 cells, optional auxiliary head, GAP + Linear (32x32 CIFAR, 28x28 MNIST-like)."""

    def __init__(self, genotype: Genotype, C: int, N: int, num_classes: int, auxiliary: bool,
                 in_channels: int = 3, stem_multiplier: int = 3):
        super().__init__()
        self.drop_path_prob = 0.0  # set by the training loop each epoch
        C_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False), nn.BatchNorm2d(C_stem))
        C_last, C_aux = self._build_cells(genotype, C_stem, C_stem, C, N, reduction_prev=False)
        self.auxiliary_head = AuxiliaryHeadCIFAR(C_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_last, num_classes)

    def forward(self, x: torch.Tensor) -> Output:
        s = self.stem(x)
        return self._run_cells(s, s)


class NetworkImageNet(_CellStack):
    """ImageNet-mobile: two-stage stride-8 stem, 3N+2 cells (the first sees a reduced s0), GAP + Linear."""

    def __init__(self, genotype: Genotype, C: int, N: int, num_classes: int, auxiliary: bool,
                 in_channels: int = 3):
        super().__init__()
        if C < 2:
            raise GdasError(f"the ImageNet network needs C >= 2 (its stem starts at C/2), got C={C}")
        self.drop_path_prob = 0.0
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C),
        )
        C_last, C_aux = self._build_cells(genotype, C, C, C, N, reduction_prev=True)
        self.auxiliary_head = AuxiliaryHeadImageNet(C_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)  # = AvgPool 7x7 at 224x224
        self.classifier = nn.Linear(C_last, num_classes)

    def forward(self, x: torch.Tensor) -> Output:
        s0 = self.stem0(x)
        return self._run_cells(s0, self.stem1(s0))


def build_network(genotype: Genotype, dataset: str, C: int, N: int, num_classes: int, auxiliary: bool,
                  in_channels: int = 3) -> nn.Module:
    """The ImageNet-mobile layout for dataset "imagenet", the CIFAR layout for every other dataset."""
    if dataset.lower() == "imagenet":
        return NetworkImageNet(genotype, C, N, num_classes, auxiliary, in_channels)
    return NetworkCIFAR(genotype, C, N, num_classes, auxiliary, in_channels)
