"""The NB201 genotype from architecture probabilities: each edge keeps its most likely op (`none` too), skips capped."""

from __future__ import annotations

from typing import Optional

import torch

from gdas.errors import GdasError
from gdas.spaces.nb201.genotype import NB201Genotype
from gdas.spaces.nb201.ops import NB201_OPS, PARAM_FREE


def derive_nb201(probs: torch.Tensor, max_skip: Optional[int] = None) -> NB201Genotype:
    """Edge e of `probs` (edges x ops, NB201 edge order 1<-0, 2<-0, 2<-1, ...) keeps its argmax op.

    Unlike the DARTS rule, `none` may win (NB201's rule, as the reference's `genotype()`); ties go to the
    earlier op in NB201_OPS. With `max_skip`, the skip_connect edges beyond K with the lowest skip probability
    take their best op with parameters instead (after P-DARTS's limit on the cell's skips, loosely: P-DARTS
    derives again without them, where a parameter-free op may win).
    """
    if probs.dim() != 2 or probs.shape[1] != len(NB201_OPS):
        raise GdasError(f"NB201 probabilities must be (edges, {len(NB201_OPS)}), got {tuple(probs.shape)}; "
                        "pass the 'cell' entry of NB201SearchNetwork.probabilities()")
    edges = probs.shape[0]
    steps = int(round(((8 * edges + 1) ** 0.5 - 1) / 2))
    if steps * (steps + 1) // 2 != edges or steps < 1:
        raise GdasError(f"{edges} edges is not a complete NB201 cell (1, 3, 6, 10, ... edges); pass the 'cell' "
                        "entry of NB201SearchNetwork.probabilities()")
    # First maximum, computed on the host so that ties resolve the same way on every device.
    rows = probs.detach().to("cpu", torch.float64).tolist()
    best = [max(range(len(row)), key=lambda k, row=row: (row[k], -k)) for row in rows]
    if max_skip is not None:
        skip = NB201_OPS.index("skip_connect")
        weighted = [k for k, op in enumerate(NB201_OPS) if op not in PARAM_FREE]
        skips = sorted((rows[e][skip], e) for e in range(edges) if best[e] == skip)
        for _, e in skips[:max(0, len(skips) - max_skip)]:
            best[e] = max(weighted, key=lambda k, row=rows[e]: (row[k], -k))
    nodes, e = [], 0
    for i in range(1, steps + 1):
        nodes.append(tuple((NB201_OPS[best[e + j]], j) for j in range(i)))
        e += i
    return NB201Genotype(tuple(nodes))
