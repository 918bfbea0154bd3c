"""Deriving the final CNN genotype from the architecture parameters A (top-T inputs per node)."""

from __future__ import annotations

from typing import Optional

import torch

from gdas.spaces.base import Node
from gdas.spaces.darts.genotype import Genotype
from gdas.spaces.darts.ops import NONE_INDEX, PRIMITIVES


def derive_cell(probs: torch.Tensor, steps: int = 4, top_t: int = 2) -> tuple[Node, ...]:
    """Nodes of one cell from softmax(A) of shape (edges, ops).

    The importance of edge (j -> i) is its largest non-`none` probability. Each node keeps its
    `top_t` most important incoming edges (distinct inputs), each with its best non-`none` op.
    Ties break towards the earlier input and the earlier op, so the result is deterministic.
    """
    probs = probs.detach().float().cpu()
    if probs.shape[-1] != len(PRIMITIVES):
        raise ValueError(f"expected {len(PRIMITIVES)} op columns, got {probs.shape[-1]}")
    masked = probs.clone()
    masked[:, NONE_INDEX] = -1.0
    nodes, start = [], 0
    for i in range(steps):
        n_inputs = 2 + i
        block = masked[start:start + n_inputs]
        best_p, best_op = block.max(dim=1)
        order = sorted(range(n_inputs), key=lambda j: (-best_p[j].item(), j))[:top_t]
        nodes.append(tuple((PRIMITIVES[int(best_op[j])], j) for j in order))
        start += n_inputs
    return tuple(nodes)


def derive_genotype(normal: torch.Tensor, reduce: Optional[torch.Tensor], steps: int = 4,
                    top_t: int = 2) -> Genotype:
    """Genotype from softmax(A) of the normal and reduction cells (`reduce=None`: fixed reduction cell)."""
    concat = tuple(range(2, 2 + steps))
    return Genotype(derive_cell(normal, steps, top_t), concat,
                    None if reduce is None else derive_cell(reduce, steps, top_t),
                    None if reduce is None else concat)
