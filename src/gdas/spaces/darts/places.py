"""Where the searched ops of a DARTS final network run (per cell and edge), the network without them, and a
genotype's choices on the rows of the A matrices."""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

import torch
from torch import nn

from gdas.errors import GdasError
from gdas.spaces.base import Layout, Place
from gdas.spaces.darts.genotype import Genotype
from gdas.spaces.darts.networks import Cell, build_network
from gdas.spaces.darts.ops import PRIMITIVES, Zero, make_op
from gdas.spaces.darts.supernet import num_edges
from gdas.spaces.shapes import Shape, dataset_shape


def cifar_layout(dataset: str) -> None:
    if dataset.lower() == "imagenet":
        raise GdasError("costs are counted for the CIFAR-layout networks of a search, not the ImageNet layout")


def edges(steps: int, frc: bool, C: int, N: int, size: int) -> Iterator[tuple[str, int, int, int, int]]:
    """(A matrix name, edge, channels, stride, input side) of every searched edge of the final CIFAR-layout
    network (C, N on images of side `size`), cell by cell; each edge's op runs on that cell's channels."""
    for index in range(3 * N + 2):
        reduction = index in (N, 2 * N + 1)
        C = 2 * C if reduction else C
        name = "reduce" if reduction else "normal"
        node_size = (size + 1) // 2 if reduction else size  # the computed nodes of a reduction cell are halved
        if not (reduction and frc):
            edge = 0
            for i in range(steps):
                for j in range(2 + i):
                    stride, at = (2, size) if reduction and j < 2 else (1, size if j < 2 else node_size)
                    yield name, edge, C, stride, at
                    edge += 1
        size = node_size


def free_network(steps: int, frc: bool, C: int, N: int, shape: Shape) -> nn.Module:
    """The final network with every searched op replaced by `none` (a Zero: no weights, no mult-adds): the stem,
    the cells' preprocessing and node sums, the classifier, and with --frc the fixed reduction cells."""
    channels, _, classes = shape
    nodes = tuple((("skip_connect", 0), ("skip_connect", 1)) for _ in range(steps))  # any ops: all replaced
    concat = tuple(range(2, 2 + steps))
    network = build_network(Genotype(nodes, concat, None if frc else nodes, None if frc else concat),
                            "cifar10", C, N, classes, False, channels)
    for cell in network.cells:
        if isinstance(cell, Cell):
            cell.ops = nn.ModuleList(Zero(2 if cell.reduction and src < 2 else 1)
                                     for sources in cell.inputs for src in sources)
    return network


def _op(C: int, stride: int):
    """The final network's op at an edge; `none` is no op at all there (derivation never keeps it)."""
    return lambda op: None if op == "none" else make_op(op, C, stride, search=False)


def layout(cfg: Any, dataset: str, C: int, N: int, *, shape: Optional[Sequence[int]] = None) -> Layout:
    """The places of the final CIFAR-layout network (C, N on `dataset`, or on `shape`) and the network without
    its searched ops."""
    cifar_layout(dataset)
    full = dataset_shape(dataset, shape)
    places = tuple(Place(name, edge, (channels, at, at), _op(channels, stride))
                   for name, edge, channels, stride, at in edges(cfg.steps, cfg.frc, C, N, full[1]))
    return Layout(places, lambda: free_network(cfg.steps, cfg.frc, C, N, full), (full[0], full[1], full[1]))


def choices(genotype: Genotype) -> dict[str, torch.Tensor]:
    """{cell: (edges, ops) counts}: 1 where a node reads an input through an op, 0 on the edges it leaves out."""
    cells = {"normal": genotype.normal} if genotype.reduce is None else {"normal": genotype.normal,
                                                                         "reduce": genotype.reduce}
    out = {}
    for name, nodes in cells.items():
        counts = torch.zeros(num_edges(len(nodes)), len(PRIMITIVES))
        for i, node in enumerate(nodes):
            start = num_edges(i)
            for op, src in node:
                counts[start + src, PRIMITIVES.index(op)] += 1
        out[name] = counts
    return out
