"""Costs of the DARTS CNN final network (mult-adds or parameters, millions): per op of its cells, and its fixed part."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Optional, Sequence

import torch

from gdas.flops import count_mult_adds, count_parameters
from gdas.spaces.darts.ops import PRIMITIVES, make_op
from gdas.spaces.darts.places import cifar_layout, edges, free_network
from gdas.spaces.darts.supernet import num_edges
from gdas.spaces.shapes import Shape, dataset_shape


@lru_cache(maxsize=None)
def op_cost(op: str, C: int, stride: int, size: int, kind: str) -> float:
    """Mult-adds (one image) or parameters of op `op` of a final network on a C x size x size input, millions."""
    module = make_op(op, C, stride, search=False)
    if kind == "params":
        return count_parameters(module, exclude=()) / 1e6
    return count_mult_adds(module, (C, size, size)) / 1e6


def op_costs(cfg: Any, dataset: str, C: int, N: int, kind: str, *,
             shape: Optional[Sequence[int]] = None) -> dict[str, torch.Tensor]:
    """{A matrix name: (edges, ops) costs}, summed over the cells of the final CIFAR-layout network (C, N on
    `dataset`, or on `shape` = (channels, side, classes) of the real data) that use that matrix; each edge's op
    counted on that cell's channels and resolution."""
    cifar_layout(dataset)
    size = dataset_shape(dataset, shape)[1]
    names = ("normal",) if cfg.frc else ("normal", "reduce")
    costs = {name: torch.zeros(num_edges(cfg.steps), len(PRIMITIVES), dtype=torch.float64) for name in names}
    for name, edge, channels, stride, at in edges(cfg.steps, cfg.frc, C, N, size):
        for k, op in enumerate(PRIMITIVES):
            costs[name][edge, k] += op_cost(op, channels, stride, at, kind)
    return {name: cost.float() for name, cost in costs.items()}


def fixed_cost(cfg: Any, dataset: str, C: int, N: int, kind: str, *, shape: Optional[Sequence[int]] = None) -> float:
    """What no choice of ops changes in the final CIFAR-layout network (C, N on `dataset`, or on `shape`): stem,
    the cells' preprocessing, classifier, and with --frc the fixed reduction cells; millions."""
    cifar_layout(dataset)
    return _fixed_cost(cfg.steps, cfg.frc, C, N, dataset_shape(dataset, shape), kind)


@lru_cache(maxsize=None)
def _fixed_cost(steps: int, frc: bool, C: int, N: int, shape: Shape, kind: str) -> float:
    """Counted on the real network with every searched op replaced by `none` (a Zero: no weights, no mult-adds),
    so that with one op per kept edge this plus the ops' `op_cost`s is the network's own count."""
    network = free_network(steps, frc, C, N, shape)
    if kind == "params":
        return count_parameters(network) / 1e6
    channels, size, _ = shape
    return count_mult_adds(network, (channels, size, size)) / 1e6
