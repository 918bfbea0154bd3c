"""The NB201 inference network for a genotype (the benchmark's macro skeleton, affine BN everywhere)."""

from __future__ import annotations

import torch
from torch import nn

from gdas.spaces.nb201.genotype import NB201Genotype
from gdas.spaces.nb201.ops import ResNetBasicBlock, make_op


class NB201Cell(nn.Module):
    """The genotype's cell: one op per edge, node i the sum of its edges, the last node the output."""

    def __init__(self, genotype: NB201Genotype, C: int):
        super().__init__()
        # Module names (layers.k) follow the reference so that NB201 checkpoints load by key.
        self.layers = nn.ModuleList()
        self.node_inputs: list[list[tuple[int, int]]] = []  # per node: (layer index, input node)
        for node in genotype.nodes:
            wiring = []
            for op, j in node:
                wiring.append((len(self.layers), j))
                self.layers.append(make_op(op, C, C, 1, affine=True, track_running_stats=True))
            self.node_inputs.append(wiring)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for wiring in self.node_inputs:
            outs = [self.layers[k](nodes[j]) for k, j in wiring]
            nodes.append(sum(outs[1:], outs[0]))
        return nodes[-1]


class NB201Network(nn.Module):
    """Stem, three stages of N cells (C, 2C, 4C) joined by stride-2 ResNet blocks, BN-ReLU, GAP, Linear.

    `forward` gives the logits; there is no auxiliary head and no drop-path, and `drop_path_prob` exists only
    because the training loop sets it.
    """

    def __init__(self, genotype: NB201Genotype | str, C: int = 16, N: int = 5, num_classes: int = 10,
                 in_channels: int = 3):
        super().__init__()
        self.genotype = genotype if isinstance(genotype, NB201Genotype) else NB201Genotype.parse(genotype)
        self.drop_path_prob = 0.0
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.cells = nn.ModuleList()
        C_prev = C
        for stage, C_curr in enumerate((C, 2 * C, 4 * C)):
            if stage:
                self.cells.append(ResNetBasicBlock(C_prev, C_curr, 2, affine=True))
            for _ in range(N):
                self.cells.append(NB201Cell(self.genotype, C_curr))
            C_prev = C_curr
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = self.stem(x)
        for cell in self.cells:
            feature = cell(feature)
        return self.classifier(self.global_pooling(self.lastact(feature)).flatten(1))
