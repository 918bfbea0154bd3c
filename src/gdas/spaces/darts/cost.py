"""Per-op costs of the DARTS CNN cells (mult-adds or parameters, millions) at a final network's size."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Optional, Sequence

import torch

from gdas.errors import GdasError
from gdas.flops import count_mult_adds, count_parameters
from gdas.spaces.darts.ops import PRIMITIVES, make_op
from gdas.spaces.darts.supernet import num_edges
from gdas.spaces.shapes import dataset_shape


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
    if dataset.lower() == "imagenet":
        raise GdasError("costs are counted for the CIFAR-layout networks of a search, not the ImageNet layout")
    size = dataset_shape(dataset, shape)[1]
    names = ("normal",) if cfg.frc else ("normal", "reduce")
    costs = {name: torch.zeros(num_edges(cfg.steps), len(PRIMITIVES), dtype=torch.float64) for name in names}
    for index in range(3 * N + 2):
        reduction = index in (N, 2 * N + 1)
        C = 2 * C if reduction else C
        name = "reduce" if reduction else "normal"
        node_size = (size + 1) // 2 if reduction else size  # the computed nodes of a reduction cell are halved
        if name in costs:
            edge = 0
            for i in range(cfg.steps):
                for j in range(2 + i):
                    stride, at = (2, size) if reduction and j < 2 else (1, size if j < 2 else node_size)
                    for k, op in enumerate(PRIMITIVES):
                        costs[name][edge, k] += op_cost(op, C, stride, at, kind)
                    edge += 1
        size = node_size
    return {name: cost.float() for name, cost in costs.items()}
