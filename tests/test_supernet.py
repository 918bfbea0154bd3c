"""Tests for the search cell and supernet: only the sampled op runs and learns, exact child outputs, A gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gdas.spaces.darts import supernet as supernet_module
from gdas.errors import GdasError
from gdas.spaces.darts.fixed_cell import FixedReductionCell
from gdas.spaces.darts.ops import PRIMITIVES
from gdas.spaces.darts.supernet import CellArch, SearchCell, SearchNetwork, num_edges
from supernet_helpers import cell_output_shapes, gen as _gen, image_batch as _batch, soft_sample

NONE = PRIMITIVES.index("none")
SKIP = PRIMITIVES.index("skip_connect")
TAU = 2.0


def _net(sampler: str = "gdas", *, C: int = 4, N: int = 1, seed: int = 0, **kw) -> SearchNetwork:
    torch.manual_seed(seed)
    return SearchNetwork(C, N, 3, sampler=sampler, **kw)


def _searched(net: SearchNetwork, archs) -> list[tuple[int, SearchCell, CellArch]]:
    return [(i, c, a) for i, (c, a) in enumerate(zip(net.cells, archs)) if a is not None]


def _row(net: SearchNetwork, cell_index: int) -> int:
    """Row of the stacked (normal, reduce) logits that a cell reads under sample scope `network`."""
    return int(net.reduction_flags[cell_index])


def _soft(net: SearchNetwork, seed: int, tau: float = TAU) -> torch.Tensor:
    """The soft sample h~ of sample_arch (scope `network`), recomputed from the same noise; keeps the graph to A."""
    return soft_sample(torch.stack(net.arch_parameters()), seed, tau)


def _reference_forward(net: SearchNetwork, x: torch.Tensor, archs) -> torch.Tensor:
    """The sampled child, wired by hand from the supernet's own modules: only op indices[e] of each edge."""
    s0 = s1 = net.stem(x)
    for cell, arch in zip(net.cells, archs):
        if arch is None:
            s0, s1 = s1, cell(s0, s1)
            continue
        states, edge = [cell.pre0(s0), cell.pre1(s1)], 0
        for i in range(cell.steps):
            node = None
            for j in range(2 + i):
                k = arch.indices[edge]
                if k != NONE:
                    y = cell.edges[edge][k](states[j])
                    node = y if node is None else node + y
                edge += 1
            if node is None:
                size = (states[0].shape[-1] + 1) // 2 if cell.reduction else states[0].shape[-1]
                node = states[0].new_zeros(states[0].shape[0], cell.C, size, size)
            states.append(node)
        s0, s1 = s1, torch.cat(states[2:], dim=1)
    return net.classifier(net.global_pooling(s1).flatten(1))


def _count_parametric_sampled(net: SearchNetwork, archs) -> int:
    return sum(any(True for _ in cell.edges[e][k].parameters())
               for _, cell, arch in _searched(net, archs) for e, k in enumerate(arch.indices))


# ---- structure ----

def test_structure_and_parameters():
    assert num_edges(4) == 14 and num_edges(2) == 5
    net = _net(N=2)
    assert net.reduction_flags == [False, False, True, False, False, True, False, False]
    assert net.arch_normal.shape == net.arch_reduce.shape == (14, len(PRIMITIVES))
    assert net.arch_normal.abs().max() < 0.01  # 1e-3 * N(0, 1)
    assert not torch.equal(net.arch_normal, net.arch_reduce)
    arch_ids = {id(p) for p in net.arch_parameters()}
    weights = net.weight_parameters()
    assert not arch_ids & {id(p) for p in weights}
    assert len(weights) + 2 == len(list(net.parameters()))
    for cell in net.cells:
        assert len(cell.edges) == 14 and all(len(ops) == len(PRIMITIVES) for ops in cell.edges)


def test_bad_sampler_and_scope_raise():
    with pytest.raises(ValueError, match="sampler"):
        SearchNetwork(4, 1, 3, sampler="enas")
    with pytest.raises(ValueError, match="scope"):
        SearchNetwork(4, 1, 3, sample_scope="batch")


@pytest.mark.parametrize("size,channels", [(32, 3), (28, 1)])
@pytest.mark.parametrize("sampler", ["gdas", "darts"])
def test_output_shapes(size, channels, sampler):
    torch.manual_seed(0)
    net = SearchNetwork(8, 1, 10, in_channels=channels, sampler=sampler)
    x, _ = _batch(size=size, channels=channels)
    out, shapes = cell_output_shapes(net, x, TAU)
    assert out.shape == (2, 10)
    half, quarter = (size + 1) // 2, (size + 3) // 4
    assert shapes == [(2, 32, size, size), (2, 64, half, half), (2, 64, half, half),
                      (2, 128, quarter, quarter), (2, 128, quarter, quarter)]


# ---- GDAS W step: only the sampled op of each edge learns ----

def test_w_step_grads_only_on_sampled_ops():
    net = _net()
    x, y = _batch()
    archs = net.sample_arch(TAU, arch_grad=False, generator=_gen(1))
    assert all(a.weights is None for _, _, a in _searched(net, archs))
    F.cross_entropy(net(x, archs), y).backward()
    assert net.arch_normal.grad is None and net.arch_reduce.grad is None
    assert _count_parametric_sampled(net, archs) > 10  # the check below is not vacuous
    for _, cell, arch in _searched(net, archs):
        for e, ops in enumerate(cell.edges):
            for k, op in enumerate(ops):
                for p in op.parameters():
                    if k == arch.indices[e]:
                        assert p.grad is not None and torch.isfinite(p.grad).all()
                    else:
                        assert p.grad is None, f"edge {e}: unsampled op {PRIMITIVES[k]} got a gradient"
        for p in list(cell.pre0.parameters()) + list(cell.pre1.parameters()):
            assert p.grad is not None
    assert all(p.grad is not None for p in net.stem.parameters())
    assert all(p.grad is not None for p in net.classifier.parameters())


def test_noaccel_w_step_touches_every_op():
    net = _net("gdas-noaccel")
    x, y = _batch()
    archs = net.sample_arch(TAU, arch_grad=False, generator=_gen(1))
    F.cross_entropy(net(x, archs), y).backward()
    assert all(p.grad is not None for p in net.weight_parameters())
    assert net.arch_normal.grad is None


# ---- forward value: exactly the sampled child ----

@pytest.mark.parametrize("scope", ["network", "cell"])
def test_forward_equals_sampled_child_exactly(scope):
    net = _net(sample_scope=scope).eval()
    x, _ = _batch()
    with_a = net.sample_arch(TAU, arch_grad=True, generator=_gen(3))
    without_a = net.sample_arch(TAU, arch_grad=False, generator=_gen(3))
    assert [a and a.indices for a in with_a] == [a and a.indices for a in without_a]
    out_with_a = net(x, with_a)
    assert out_with_a.requires_grad
    out_without_a = net(x, without_a)
    assert torch.equal(out_with_a, out_without_a)
    with torch.no_grad():
        assert torch.equal(out_without_a, _reference_forward(net, x, without_a))


def test_forward_equals_noaccel_forward_exactly():
    gdas = _net("gdas").eval()
    noaccel = _net("gdas-noaccel", seed=1).eval()
    noaccel.load_state_dict(gdas.state_dict())
    x, _ = _batch()
    with torch.no_grad():
        a = gdas(x, gdas.sample_arch(TAU, arch_grad=True, generator=_gen(4)))
        b = noaccel(x, noaccel.sample_arch(TAU, arch_grad=True, generator=_gen(4)))
    assert torch.equal(a, b)


# ---- GDAS A step: gradient of the soft relaxation at the sampled entries ----

def _edge_coefficients(net: SearchNetwork, x, y, archs, values: dict[int, torch.Tensor], *,
                       sampled_only: bool) -> dict[int, torch.Tensor]:
    """dL/dw per searched cell, with its edge weights w held fixed at `values[cell]` (a leaf per cell).

    sampled_only=True runs only the sampled ops (GDAS); False runs every op mixed by w (no-accel, DARTS).
    """
    leaves = {i: v.detach().clone().requires_grad_() for i, v in values.items()}
    probe = [None if a is None else CellArch(leaves[i], a.indices if sampled_only else None)
             for i, a in enumerate(archs)]
    F.cross_entropy(net(x, probe), y).backward(inputs=list(leaves.values()))
    return {i: leaf.grad for i, leaf in leaves.items()}


def _one_hot(archs, *, ones: bool = False) -> dict[int, torch.Tensor]:
    """The forward value of each searched cell's GDAS weights (all ones when only sampled ops are read)."""
    out = {}
    for i, a in enumerate(archs):
        if a is not None:
            hot = F.one_hot(torch.tensor(a.indices), len(PRIMITIVES)).float()
            out[i] = torch.ones_like(hot) if ones else hot
    return out


def _relaxation_grad(net, soft, archs, coef, *, sampled_only: bool) -> list[torch.Tensor]:
    total = soft.new_zeros(())
    for i, arch in enumerate(archs):
        if arch is None:
            continue
        h = soft[_row(net, i)]
        if sampled_only:
            rows = torch.arange(h.shape[0])
            k = torch.tensor(arch.indices)
            total = total + (h[rows, k] * coef[i][rows, k]).sum()
        else:
            total = total + (h * coef[i]).sum()
    return list(torch.autograd.grad(total, net.arch_parameters()))


@pytest.mark.parametrize("frc", [False, True])
def test_a_step_gradient_is_soft_relaxation_at_sampled_entries(frc):
    net = _net(frc=frc)
    x, y = _batch(5)
    seed = 6
    archs = net.sample_arch(TAU, arch_grad=True, generator=_gen(seed))
    F.cross_entropy(net(x, archs), y).backward(inputs=net.arch_parameters())
    assert all(p.grad is None for p in net.weight_parameters())
    got = [p.grad.clone() for p in net.arch_parameters()]
    assert all(g.abs().sum() > 0 for g in got)

    soft = _soft(net, seed)
    for i, arch in enumerate(archs):  # the recomputed soft sample picks the same ops
        if arch is not None:
            assert soft[_row(net, i)].argmax(-1).tolist() == arch.indices
    coef = _edge_coefficients(net, x, y, archs, _one_hot(archs, ones=True), sampled_only=True)
    expected = _relaxation_grad(net, soft, archs, coef, sampled_only=True)
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, rtol=1e-4, atol=1e-9)


def test_a_step_gradient_gdas_vs_noaccel():
    """No-accel weights every op by the one-hot, so its A gradient uses every entry of the relaxation;
    GDAS runs only the sampled op, so its A gradient is the same computation restricted to the sampled
    entries. Both are checked against coefficients measured once on the no-accel network."""
    gdas = _net("gdas")
    noaccel = _net("gdas-noaccel", seed=1)
    noaccel.load_state_dict(gdas.state_dict())
    gdas.eval()
    noaccel.eval()  # identical BN behaviour across the extra forward passes
    x, y = _batch(7)
    seed = 8
    grads = {}
    for name, net in (("gdas", gdas), ("noaccel", noaccel)):
        archs = net.sample_arch(TAU, arch_grad=True, generator=_gen(seed))
        F.cross_entropy(net(x, archs), y).backward(inputs=net.arch_parameters())
        assert all(p.grad is None for p in net.weight_parameters())
        grads[name] = [p.grad.clone() for p in net.arch_parameters()]
    archs = gdas.sample_arch(TAU, arch_grad=False, generator=_gen(seed))  # the same draw, with indices
    for a, b in zip(archs, noaccel.sample_arch(TAU, arch_grad=True, generator=_gen(seed))):
        assert b.indices is None and torch.equal(b.weights.detach(), _one_hot([a])[0])
    coef = _edge_coefficients(noaccel, x, y, archs, _one_hot(archs), sampled_only=False)
    full = _relaxation_grad(noaccel, _soft(noaccel, seed), archs, coef, sampled_only=False)
    at_sampled = _relaxation_grad(noaccel, _soft(noaccel, seed), archs, coef, sampled_only=True)
    assert not torch.allclose(full[0], at_sampled[0], rtol=0.05)  # the two comparisons discriminate
    for g, e in zip(grads["noaccel"], full):
        assert torch.allclose(g, e, rtol=1e-4, atol=1e-9)
    for g, e in zip(grads["gdas"], at_sampled):
        assert torch.allclose(g, e, rtol=1e-4, atol=1e-9)


def test_darts_a_step_gradient_matches_manual_mixture():
    net = _net("darts")
    x, y = _batch(9)
    archs = net.sample_arch(TAU, arch_grad=True)
    assert all(a.indices is None for a in archs)
    F.cross_entropy(net(x, archs), y).backward(inputs=net.arch_parameters())
    got = [p.grad.clone() for p in net.arch_parameters()]
    soft = torch.softmax(torch.stack(net.arch_parameters()), -1)
    values = {i: soft[_row(net, i)] for i in range(len(archs))}
    coef = _edge_coefficients(net, x, y, archs, values, sampled_only=False)
    expected = _relaxation_grad(net, soft, archs, coef, sampled_only=False)
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, rtol=1e-4, atol=1e-9)


# ---- which ops run ----

def _count_calls(net: SearchNetwork):
    counts: dict[tuple[int, int, int], int] = {}
    hooks = []
    for c, cell in enumerate(net.cells):
        if not isinstance(cell, SearchCell):
            continue
        for e, ops in enumerate(cell.edges):
            for k, op in enumerate(ops):
                counts[(c, e, k)] = 0

                def hook(module, inputs, output, key=(c, e, k)):
                    counts[key] += 1
                hooks.append(op.register_forward_hook(hook))
    return counts, hooks


@pytest.mark.parametrize("sampler", ["gdas", "gdas-noaccel", "darts"])
def test_which_ops_run(sampler):
    net = _net(sampler)
    counts, hooks = _count_calls(net)
    x, y = _batch()
    archs = net.sample_arch(TAU, arch_grad=True, generator=_gen(2))
    F.cross_entropy(net(x, archs), y).backward()
    for h in hooks:
        h.remove()
    for (c, e, k), n in counts.items():
        if sampler == "gdas":
            chosen = archs[c].indices
            assert n == (1 if k == chosen[e] and k != NONE else 0)
        else:
            assert n == 1  # every op of every edge, including `none`


def test_sampling_is_one_call_per_forward(monkeypatch):
    calls = []
    real = supernet_module.sample

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(supernet_module, "sample", counted)
    _net(N=2).sample_arch(TAU, arch_grad=True)
    _net(N=2, sample_scope="cell").sample_arch(TAU, arch_grad=True)
    assert calls == [(2, 14, 8), (8, 14, 8)]


# ---- sample scope ----

def test_scope_network_shares_draws_per_cell_type():
    net = _net(N=2)
    archs = net.sample_arch(1.0, arch_grad=True, generator=_gen(0))
    normal = [a.indices for a, red in zip(archs, net.reduction_flags) if not red]
    reduce = [a.indices for a, red in zip(archs, net.reduction_flags) if red]
    assert len(normal) == 6 and len(reduce) == 2
    assert all(ind == normal[0] for ind in normal) and all(ind == reduce[0] for ind in reduce)
    assert normal[0] != reduce[0]
    assert all(len(ind) == 14 for ind in normal + reduce)


def test_scope_cell_draws_per_cell():
    net = _net(N=2, sample_scope="cell")
    archs = net.sample_arch(1.0, arch_grad=True, generator=_gen(0))
    normal = [a.indices for a, red in zip(archs, net.reduction_flags) if not red]
    assert len({tuple(ind) for ind in normal}) == len(normal)  # 8^-14 chance of a collision per pair
    # Each cell's weights still lead back to its own cell type's logits.
    loss = sum((a.weights * torch.arange(8.0)).sum() for a, red in zip(archs, net.reduction_flags) if not red)
    loss.backward()
    assert net.arch_normal.grad is not None and net.arch_normal.grad.abs().sum() > 0
    assert net.arch_reduce.grad is None or torch.count_nonzero(net.arch_reduce.grad) == 0


# ---- FRC ----

def test_frc_network():
    net = _net(frc=True)
    assert net.arch_reduce is None and net.arch_parameters() == [net.arch_normal]
    for cell, red in zip(net.cells, net.reduction_flags):
        assert isinstance(cell, FixedReductionCell) == red
    x, y = _batch()
    archs = net.sample_arch(TAU, arch_grad=False, generator=_gen(0))
    assert [a is None for a in archs] == net.reduction_flags
    out = net(x, archs)
    assert out.shape == (2, 3)
    F.cross_entropy(out, y).backward()
    fixed = [c for c in net.cells if isinstance(c, FixedReductionCell)]
    assert all(p.grad is not None for c in fixed for p in c.parameters())
    assert net.probabilities()["reduce"] is None


def test_frc_channels_not_divisible_by_8_raise():
    with pytest.raises(GdasError, match="divisible by 8"):
        SearchNetwork(6, 1, 3, frc=True)  # reduction cells get 2C = 12 channels


def test_probabilities_are_softmax():
    net = _net()
    probs = net.probabilities()
    assert torch.allclose(probs["normal"], torch.softmax(net.arch_normal, -1))
    assert torch.allclose(probs["reduce"].sum(-1), torch.ones(14))
    assert not probs["normal"].requires_grad


# ---- the `none` op inside a cell ----

@pytest.mark.parametrize("reduction,size", [(False, 8), (True, 8), (True, 7)])
def test_none_only_cell_gives_zeros(reduction, size):
    torch.manual_seed(0)
    cell = SearchCell(4, 6, 6, 4, reduction=reduction, reduction_prev=False)
    s = torch.randn(2, 6, size, size)
    out = cell(s, s, CellArch(None, [NONE] * 14))
    side = (size + 1) // 2 if reduction else size
    assert out.shape == (2, 16, side, side)
    assert torch.count_nonzero(out) == 0


def test_none_only_node_is_zero_and_later_nodes_read_it():
    torch.manual_seed(0)
    cell = SearchCell(4, 6, 6, 4, reduction=False, reduction_prev=False).eval()
    s0, s1 = torch.randn(2, 6, 8, 8), torch.randn(2, 6, 8, 8)
    # Node 2: none + none; every other edge: skip_connect. Node 3 = x0 + x1 + node2 (= 0).
    indices = [NONE, NONE] + [SKIP] * 12
    weights = torch.ones(14, len(PRIMITIVES), requires_grad=True)
    out = cell(s0, s1, CellArch(weights, indices))
    x0, x1 = cell.pre0(s0), cell.pre1(s1)
    assert torch.count_nonzero(out[:, :4]) == 0
    assert torch.equal(out[:, 4:8], x0 + x1)
    out.sum().backward()
    assert weights.grad[0].abs().sum() == 0 and weights.grad[1].abs().sum() == 0
    assert weights.grad[2, SKIP] != 0
