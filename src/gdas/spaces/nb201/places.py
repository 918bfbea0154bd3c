"""Where the searched ops of an NB201 network run (per stage, cell and edge), the network without them, and a
genotype's choices on the rows of its A matrix."""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

import torch

from gdas.spaces.base import Layout, Place
from gdas.spaces.nb201.genotype import NB201Genotype
from gdas.spaces.nb201.networks import NB201Network
from gdas.spaces.nb201.ops import NB201_OPS, make_op
from gdas.spaces.nb201.supernet import num_edges
from gdas.spaces.shapes import dataset_shape


def nb201_shape(dataset: str, shape: Optional[Sequence[int]] = None) -> tuple[int, int, int]:
    """(channels, side, classes) of an NB201 network on `dataset` (or `shape`): NB201 has no ImageNet layout."""
    return dataset_shape(dataset, shape, network="NAS-Bench-201", exclude=("imagenet",))


def stages(C: int, size: int) -> Iterator[tuple[int, int]]:
    """(channels, side) of the cells of each of the three stages (a stride-2 ResNet block between stages)."""
    for stage in range(3):
        yield C << stage, size
        size = (size + 1) // 2


def empty_genotype(steps: int) -> NB201Genotype:
    """The cell with `none` on every edge."""
    return NB201Genotype(tuple(tuple(("none", j) for j in range(i)) for i in range(1, steps + 1)))


def _op(C: int):
    return lambda op: make_op(op, C, C, 1, affine=True, track_running_stats=True)


def layout(cfg: Any, dataset: str, C: int, N: int, *, shape: Optional[Sequence[int]] = None) -> Layout:
    """Every edge of the 3N cells (NB201 keeps `none`: a Zero module) and the network whose every edge is `none`."""
    channels, size, classes = nb201_shape(dataset, shape)
    places = tuple(Place("cell", edge, (width, side, side), _op(width))
                   for width, side in stages(C, size) for _ in range(N) for edge in range(num_edges(cfg.steps)))
    return Layout(places, lambda: NB201Network(empty_genotype(cfg.steps), C, N, classes, in_channels=channels),
                  (channels, size, size))


def choices(genotype: NB201Genotype) -> dict[str, torch.Tensor]:
    """{"cell": (edges, ops)}: one op on every edge, in NB201's edge order."""
    counts = torch.zeros(len(genotype.edges), len(NB201_OPS))
    for row, (op, _, _) in enumerate(genotype.edges):
        counts[row, NB201_OPS.index(op)] = 1
    return {"cell": counts}
