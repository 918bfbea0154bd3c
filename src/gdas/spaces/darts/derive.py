"""Deriving the final CNN genotype from the architecture parameters A (top-T inputs per node, optional skip limit)."""

from __future__ import annotations

from typing import Mapping, Optional

import torch

from gdas.spaces.base import Node
from gdas.spaces.darts.genotype import Genotype
from gdas.spaces.darts.ops import NONE_INDEX, PARAMETER_FREE, PRIMITIVES

SKIP_INDEX = PRIMITIVES.index("skip_connect")


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


def expected_choices(probs: Mapping[str, Optional[torch.Tensor]], top_t: int = 2) -> dict[str, torch.Tensor]:
    """What `derive_cell` keeps, in expectation under softmax(A) and differentiable in it: on each edge the op
    shares without `none` (never derived), renormalised, times the share of its node's inputs kept (top_t of
    2 + i, every input alike). The soft form of `places.choices` of the derived genotype."""
    out = {}
    for name, p in probs.items():
        if p is None:
            continue
        steps = next(n for n in range(p.shape[0] + 1) if sum(2 + i for i in range(n)) == p.shape[0])
        keep = torch.tensor([min(top_t, 2 + i) / (2 + i) for i in range(steps) for _ in range(2 + i)],
                            dtype=p.dtype, device=p.device)
        derivable = torch.ones(p.shape[-1], dtype=p.dtype, device=p.device)
        derivable[NONE_INDEX] = 0
        ops = p * derivable
        out[name] = ops / ops.sum(-1, keepdim=True) * keep[:, None]
    return out


def limit_skips(probs: torch.Tensor, nodes: tuple[Node, ...], max_skip: int) -> tuple[Node, ...]:
    """At most `max_skip` skip_connect ops in a derived cell (after P-DARTS's limit, loosely).

    The excess skips with the lowest skip probability are replaced, one by one, by the most likely
    (input, op) pair of their node whose op has parameters, on the skip's own input or an input the node
    does not use yet. Ties break towards the earlier input and the earlier op. P-DARTS instead zeroes the
    excess skips' weights and derives again, where a parameter-free op may win.
    """
    probs = probs.detach().float().cpu()
    starts = [sum(2 + k for k in range(i)) for i in range(len(nodes))]
    skips = sorted((probs[starts[i] + src, SKIP_INDEX].item(), i, src)
                   for i, node in enumerate(nodes) for op, src in node if op == "skip_connect")
    weighted = [k for k, op in enumerate(PRIMITIVES) if op not in PARAMETER_FREE]
    out = [list(node) for node in nodes]
    for _, i, src in skips[:max(0, len(skips) - max_skip)]:
        taken = {j for op, j in out[i] if (op, j) != ("skip_connect", src)}
        _, neg_j, neg_k = max((probs[starts[i] + j, k].item(), -j, -k) for j in range(2 + i) if j not in taken
                              for k in weighted)
        out[i][out[i].index(("skip_connect", src))] = (PRIMITIVES[-neg_k], -neg_j)
    return tuple(tuple(node) for node in out)


def derive_genotype(normal: torch.Tensor, reduce: Optional[torch.Tensor], steps: int = 4,
                    top_t: int = 2, max_skip: Optional[int] = None) -> Genotype:
    """Genotype from softmax(A) of the normal and reduction cells (`reduce=None`: fixed reduction cell).

    `max_skip` limits the normal cell's skip_connect ops (`limit_skips`); the reduction cell is left as derived.
    """
    concat = tuple(range(2, 2 + steps))
    cell = derive_cell(normal, steps, top_t)
    if max_skip is not None:
        cell = limit_skips(normal, cell, max_skip)
    return Genotype(cell, concat,
                    None if reduce is None else derive_cell(reduce, steps, top_t),
                    None if reduce is None else concat)
