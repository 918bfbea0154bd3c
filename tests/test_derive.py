"""Tests for deriving genotypes from hand-made architecture probabilities (top-T distinct inputs, no `none`)."""

from __future__ import annotations

import itertools

import pytest
import torch

from gdas.spaces.darts.derive import derive_cell, derive_genotype
from gdas.genotypes import Genotype
from gdas.spaces.darts.ops import PRIMITIVES

OP = {name: k for k, name in enumerate(PRIMITIVES)}
NODE_START = {2: 0, 3: 2, 4: 5, 5: 9}  # first edge of each node (inputs 0..i-1 follow in order)


def _probs(entries: dict[tuple[int, int, str], float], steps: int = 4, base: float = 0.01) -> torch.Tensor:
    """(edges, ops) matrix with `base` everywhere and entries[(node, input, op)] set."""
    starts, edge = {}, 0
    for i in range(steps):
        starts[2 + i] = edge
        edge += 2 + i
    probs = torch.full((edge, len(PRIMITIVES)), base)
    for (node, src, op), p in entries.items():
        probs[starts[node] + src, OP[op]] = p
    return probs


def _reference(probs: torch.Tensor, steps: int, top_t: int) -> tuple:
    """Brute force: score every choice of top_t distinct inputs, keep the best (earliest on ties)."""
    nodes, start = [], 0
    for i in range(steps):
        n = 2 + i
        best_op = {j: max(range(1, len(PRIMITIVES)), key=lambda k: (probs[start + j, k].item(), -k)) for j in range(n)}
        score = {j: probs[start + j, best_op[j]].item() for j in range(n)}
        ranked = sorted(range(n), key=lambda j: (-score[j], j))
        chosen = max(itertools.combinations(range(n), top_t), key=lambda c: (sum(score[j] for j in c),
                                                                             [-j for j in sorted(c)]))
        assert set(chosen) == set(ranked[:top_t])
        nodes.append(tuple((PRIMITIVES[best_op[j]], j) for j in ranked[:top_t]))
        start += n
    return tuple(nodes)


def test_hand_made_cell():
    probs = _probs({
        # node 2: both inputs kept; `none` is the largest on input 0 and is ignored.
        (2, 0, "none"): 0.9, (2, 0, "sep_conv_3x3"): 0.5, (2, 1, "max_pool_3x3"): 0.7,
        # node 3: inputs 1 (0.6) and 2 (0.4) beat input 0 (0.2).
        (3, 0, "skip_connect"): 0.2, (3, 1, "dil_conv_5x5"): 0.6, (3, 2, "sep_conv_5x5"): 0.4,
        # node 4: input 3 is all `none`; its best real op is tiny, so inputs 0 and 2 win.
        (4, 0, "avg_pool_3x3"): 0.3, (4, 1, "sep_conv_3x3"): 0.1, (4, 2, "dil_conv_3x3"): 0.35,
        (4, 3, "none"): 0.99,
        # node 5: a tie between inputs 0 and 2 at 0.5 (the earlier input goes first); input 4 lower.
        (5, 0, "skip_connect"): 0.5, (5, 2, "sep_conv_3x3"): 0.5, (5, 4, "sep_conv_5x5"): 0.45,
        (5, 1, "none"): 0.8,
    })
    assert derive_cell(probs) == (
        (("max_pool_3x3", 1), ("sep_conv_3x3", 0)),
        (("dil_conv_5x5", 1), ("sep_conv_5x5", 2)),
        (("dil_conv_3x3", 2), ("avg_pool_3x3", 0)),
        (("skip_connect", 0), ("sep_conv_3x3", 2)),
    )


def test_none_is_never_chosen_even_when_dominant():
    probs = _probs({}, base=0.01)
    probs[:, OP["none"]] = 0.93  # `none` is the top op everywhere
    for edge in range(14):
        probs[edge, OP["sep_conv_5x5"]] = 0.02 + 0.001 * edge
    cell = derive_cell(probs)
    assert all(op == "sep_conv_5x5" for node in cell for op, _ in node)
    # Later edges of each node score higher: the two latest inputs win.
    assert [tuple(src for _, src in node) for node in cell] == [(1, 0), (2, 1), (3, 2), (4, 3)]


def test_ties_break_towards_earlier_input_and_op():
    probs = torch.full((14, len(PRIMITIVES)), 0.125)  # every op equally likely
    cell = derive_cell(probs)
    assert cell == tuple((("max_pool_3x3", 0), ("max_pool_3x3", 1)) for _ in range(4))
    assert derive_cell(probs.clone()) == cell  # deterministic


def test_inputs_are_distinct():
    probs = _probs({(3, 1, "sep_conv_3x3"): 0.9, (3, 1, "sep_conv_5x5"): 0.8, (3, 0, "skip_connect"): 0.1})
    node3 = derive_cell(probs)[1]
    assert node3 == (("sep_conv_3x3", 1), ("skip_connect", 0))
    assert len({src for _, src in node3}) == 2


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("top_t", [1, 2])
def test_random_matrices_match_brute_force(seed, top_t):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(14, len(PRIMITIVES), generator=g), -1)
    assert derive_cell(probs, 4, top_t) == _reference(probs, 4, top_t)


def test_top_t_one():
    probs = _probs({(2, 1, "sep_conv_3x3"): 0.6, (3, 2, "skip_connect"): 0.7, (4, 0, "dil_conv_3x3"): 0.4,
                    (5, 3, "avg_pool_3x3"): 0.5})
    assert derive_cell(probs, top_t=1) == (
        (("sep_conv_3x3", 1),), (("skip_connect", 2),), (("dil_conv_3x3", 0),), (("avg_pool_3x3", 3),))


def test_other_step_counts():
    probs = _probs({(2, 0, "sep_conv_3x3"): 0.4, (3, 2, "skip_connect"): 0.9}, steps=2)
    assert probs.shape[0] == 5
    assert derive_cell(probs, steps=2) == ((("sep_conv_3x3", 0), ("max_pool_3x3", 1)),
                                           (("skip_connect", 2), ("max_pool_3x3", 0)))


def test_derive_genotype_cnn_and_frc():
    normal = _probs({(2, 0, "skip_connect"): 0.9})
    reduce = _probs({(2, 1, "sep_conv_5x5"): 0.9})
    g = derive_genotype(normal, reduce)
    assert isinstance(g, Genotype)
    assert g.normal == derive_cell(normal) and g.reduce == derive_cell(reduce)
    assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)
    frc = derive_genotype(normal, None)
    assert frc.reduce is None and frc.reduce_concat is None and frc.fixed_reduction
    assert frc.normal == g.normal


def test_accepts_tensors_with_grad_and_wrong_width_raises():
    logits = torch.randn(14, len(PRIMITIVES), requires_grad=True)
    derive_cell(torch.softmax(logits, -1))  # no error: detached internally
    with pytest.raises(ValueError, match="op columns"):
        derive_cell(torch.rand(14, 5))


# ---- --max-skip (P-DARTS) ----

def _skip_heavy() -> torch.Tensor:
    """A normal cell whose plain derivation has 6 skip_connect ops, each with a known skip probability."""
    return _probs({
        (2, 0, "skip_connect"): 0.60, (2, 1, "skip_connect"): 0.30, (2, 1, "sep_conv_3x3"): 0.20,
        (3, 0, "skip_connect"): 0.50, (3, 2, "sep_conv_5x5"): 0.40, (3, 1, "dil_conv_3x3"): 0.25,
        (4, 1, "skip_connect"): 0.20, (4, 3, "dil_conv_3x3"): 0.35, (4, 0, "max_pool_3x3"): 0.10,
        (4, 2, "sep_conv_3x3"): 0.15,
        (5, 0, "skip_connect"): 0.45, (5, 4, "skip_connect"): 0.40, (5, 4, "sep_conv_3x3"): 0.38,
        (5, 2, "avg_pool_3x3"): 0.30,
    })


def test_max_skip_keeps_the_most_likely_skips_and_fills_with_weighted_ops():
    probs = _skip_heavy()
    plain = derive_cell(probs)
    assert plain == ((("skip_connect", 0), ("skip_connect", 1)), (("skip_connect", 0), ("sep_conv_5x5", 2)),
                     (("dil_conv_3x3", 3), ("skip_connect", 1)), (("skip_connect", 0), ("skip_connect", 4)))
    g = derive_genotype(probs, None, max_skip=2)
    # Of 6 skips, kept: the two most likely (0.60 on 0->2, 0.50 on 0->3). Replaced, least likely first:
    # 1->4 (0.20): node 4's best weighted pair on a free input (1, 2 or 0) is sep_conv_3x3@2 (0.15);
    # 1->2 (0.30): sep_conv_3x3@1 (0.20, the skip's own input); 4->5 (0.40): sep_conv_3x3@4 (0.38);
    # 0->5 (0.45) is the third most likely skip: also over the limit, avg_pool@2 is parameter-free, so
    # the best weighted op on inputs 0..3 (0 is its own) ties at the base value: the earliest input and op.
    assert g.normal == ((("skip_connect", 0), ("sep_conv_3x3", 1)), (("skip_connect", 0), ("sep_conv_5x5", 2)),
                        (("dil_conv_3x3", 3), ("sep_conv_3x3", 2)), (("sep_conv_3x3", 0), ("sep_conv_3x3", 4)))
    assert [op for node in g.normal for op, _ in node].count("skip_connect") == 2
    assert derive_genotype(probs, None, max_skip=0).normal[0] == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1))


def test_max_skip_leaves_cells_within_the_limit_and_the_reduction_cell_alone():
    probs = _skip_heavy()
    assert derive_genotype(probs, probs, max_skip=6) == derive_genotype(probs, probs)
    assert derive_genotype(probs, probs, max_skip=5) != derive_genotype(probs, probs)
    limited = derive_genotype(probs, probs, max_skip=1)
    assert limited.reduce == derive_cell(probs)
    assert sum(op == "skip_connect" for node in limited.normal for op, _ in node) == 1


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_skip", [0, 1, 2])
def test_max_skip_on_random_matrices(seed, max_skip):
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(14, len(PRIMITIVES), generator=g)
    logits[:, OP["skip_connect"]] += 2.5  # skip-heavy, as a collapsing search
    probs = torch.softmax(logits, -1)
    plain, limited = derive_cell(probs), derive_genotype(probs, None, max_skip=max_skip).normal
    skips = [(probs[NODE_START[i + 2] + src, OP["skip_connect"]].item(), i, src)
             for i, node in enumerate(plain) for op, src in node if op == "skip_connect"]
    kept = sorted(skips)[max(0, len(skips) - max_skip):]
    assert sorted((i, src) for _, i, src in kept) == sorted(
        (i, src) for i, node in enumerate(limited) for op, src in node if op == "skip_connect")
    for i, (old, new) in enumerate(zip(plain, limited)):
        assert len({src for _, src in new}) == len(new)  # inputs stay distinct
        for pair in set(new) - set(old):
            assert pair[0] not in ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect")
