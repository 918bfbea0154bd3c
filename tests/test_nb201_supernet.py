"""NB201 supernet: shapes, which ops run, the W step, exact sampled child, and A gradients of every sampler."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from gdas import build_supernet
from gdas.configs.base import add_config_options, resolve
from gdas.configs.search import SEARCH_PRESETS, SearchConfig
from gdas.errors import GdasError
from gdas.sampler import CellArch
from gdas.spaces import get_space
from gdas.spaces.nb201 import supernet as supernet_module
from gdas.spaces.nb201.ops import NB201_OPS, ResNetBasicBlock
from gdas.spaces.nb201.supernet import NB201SearchCell, NB201SearchNetwork, num_edges
from supernet_helpers import cell_output_shapes, gen as _gen, image_batch, soft_sample

NONE = NB201_OPS.index("none")
TAU = 2.0


def _net(sampler: str = "gdas", *, C: int = 4, N: int = 1, seed: int = 0, **kw) -> NB201SearchNetwork:
    torch.manual_seed(seed)
    return NB201SearchNetwork(C, N, 3, sampler=sampler, **kw)


def _batch(seed: int = 0, size: int = 8, channels: int = 3, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    return image_batch(seed, size, channels, n)


def _soft(net: NB201SearchNetwork, seed: int, copies: int = 1) -> torch.Tensor:
    """The soft sample h~ that sample_arch draws from generator `seed`, recomputed with a graph to A."""
    return soft_sample(torch.stack([net.arch] * copies), seed, TAU)


def _hand_wired(net: NB201SearchNetwork, x: torch.Tensor, archs):
    """The sampled child wired by hand from the supernet's modules (only op indices[e] of each edge).

    Returns the logits, every searched cell's node tensors and every sampled op's output (by cell, edge).
    """
    feature, nodes_of, outs_of = net.stem(x), {}, {}
    for c, (cell, arch) in enumerate(zip(net.cells, archs)):
        if arch is None:
            feature = cell(feature)
            continue
        nodes, edge = [feature], 0
        for i in range(1, cell.steps + 1):
            node = torch.zeros_like(feature)
            for j in range(i):
                k = arch.indices[edge]
                if k != NONE:
                    outs_of[c, edge] = cell.edges[edge][k](nodes[j])
                    node = node + outs_of[c, edge]
                edge += 1
            if node.requires_grad:
                node.retain_grad()
            nodes.append(node)
        nodes_of[c] = nodes
        feature = nodes[-1]
    logits = net.classifier(net.global_pooling(net.lastact(feature)).flatten(1))
    return logits, nodes_of, outs_of


# ---- structure ----

def test_structure_and_parameters():
    assert num_edges(3) == 6 and num_edges(4) == 10
    net = _net(N=2)
    kinds = [type(c) for c in net.cells]
    assert kinds == [NB201SearchCell] * 2 + [ResNetBasicBlock] + [NB201SearchCell] * 2 + [ResNetBasicBlock] + \
        [NB201SearchCell] * 2
    assert net.arch.shape == (6, 5) and 0 < net.arch.abs().max() < 0.01  # 1e-3 * N(0, 1)
    assert net.arch_parameters() == [net.arch]
    weights = net.weight_parameters()
    assert len(weights) + 1 == len(list(net.parameters())) and all(p is not net.arch for p in weights)
    cell = net.cells[0]
    assert len(cell.edges) == 6 and all(len(ops) == 5 for ops in cell.edges)
    bns = [m for m in cell.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not bn.affine and bn.track_running_stats for bn in bns)
    convs = [m for m in cell.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(conv.bias is not None for conv in convs)  # the reference: conv bias = not affine


def test_bad_sampler_and_scope_raise():
    with pytest.raises(ValueError, match="sampler"):
        NB201SearchNetwork(4, 1, 3, sampler="enas")
    with pytest.raises(ValueError, match="scope"):
        NB201SearchNetwork(4, 1, 3, sample_scope="batch")


@pytest.mark.parametrize("size,channels", [(32, 3), (16, 3), (16, 1)])
@pytest.mark.parametrize("sampler", ["gdas", "gdas-noaccel", "darts"])
def test_output_shapes(size, channels, sampler):
    torch.manual_seed(0)
    net = NB201SearchNetwork(4, 1, 7, in_channels=channels, sampler=sampler)
    x, _ = _batch(size=size, channels=channels)
    out, shapes = cell_output_shapes(net, x, TAU)
    assert out.shape == (2, 7)
    assert shapes == [(2, 4, size, size), (2, 8, size // 2, size // 2), (2, 8, size // 2, size // 2),
                      (2, 16, size // 4, size // 4), (2, 16, size // 4, size // 4)]


def test_more_steps_give_a_bigger_cell():
    torch.manual_seed(0)
    net = NB201SearchNetwork(4, 1, 3, steps=4)
    assert net.arch.shape == (10, 5) and len(net.cells[0].edges) == 10
    assert net(_batch()[0], net.sample_arch(TAU, arch_grad=True, generator=_gen(0))).shape == (2, 3)


# ---- which ops run ----

@pytest.mark.parametrize("sampler", ["gdas", "gdas-noaccel", "darts"])
def test_which_ops_run(sampler):
    net = _net(sampler, N=2)
    counts, hooks = {}, []
    for c in net.searched_cells():
        for e, ops in enumerate(net.cells[c].edges):
            for k, op in enumerate(ops):
                counts[c, e, k] = 0

                def hook(module, inputs, output, key=(c, e, k)):
                    counts[key] += 1
                hooks.append(op.register_forward_hook(hook))
    x, y = _batch()
    archs = net.sample_arch(TAU, arch_grad=True, generator=_gen(2))
    F.cross_entropy(net(x, archs), y).backward()
    for h in hooks:
        h.remove()
    if sampler == "gdas":
        assert sum(counts.values()) > 0
        for (c, e, k), n in counts.items():
            assert n == (1 if k == archs[c].indices[e] and k != NONE else 0), (c, e, NB201_OPS[k])
    else:
        assert set(counts.values()) == {1}  # every op of every edge, `none` included


def test_sampling_is_one_call_per_forward(monkeypatch):
    calls = []
    real = supernet_module.sample

    def counted(*args, **kwargs):
        calls.append(tuple(args[0].shape))
        return real(*args, **kwargs)

    monkeypatch.setattr(supernet_module, "sample", counted)
    _net(N=2).sample_arch(TAU, arch_grad=True)
    _net(N=2, sample_scope="cell").sample_arch(TAU, arch_grad=True)
    assert calls == [(1, 6, 5), (6, 6, 5)]


def test_sample_scopes():
    shared = _net(N=2).sample_arch(1.0, arch_grad=True, generator=_gen(0))
    assert [a is None for a in shared] == [False, False, True, False, False, True, False, False]
    drawn = [a.indices for a in shared if a is not None]
    assert len(drawn) == 6 and all(ind == drawn[0] for ind in drawn)
    per_cell = _net(N=2, sample_scope="cell").sample_arch(1.0, arch_grad=True, generator=_gen(0))
    drawn = [tuple(a.indices) for a in per_cell if a is not None]
    assert len(set(drawn)) == 6  # fixed seed: six distinct draws


# ---- W step and forward value ----

def test_w_step_grads_only_on_sampled_ops_and_none_to_a():
    net = _net(N=2)
    x, y = _batch()
    archs = net.sample_arch(TAU, arch_grad=False, generator=_gen(4))  # a draw with convs on 5 edges
    assert all(a.weights is None for a in archs if a is not None)
    F.cross_entropy(net(x, archs), y).backward()
    assert net.arch.grad is None
    trained = 0
    for c in net.searched_cells():
        for e, ops in enumerate(net.cells[c].edges):
            for k, op in enumerate(ops):
                for p in op.parameters():
                    if k != archs[c].indices[e]:
                        assert p.grad is None, f"cell {c} edge {e}: unsampled {NB201_OPS[k]} got a gradient"
                    elif p.grad is not None:
                        trained += 1
    assert trained > 0
    assert all(p.grad is not None for p in net.stem.parameters())
    assert all(p.grad is not None for p in net.classifier.parameters())


@pytest.mark.parametrize("scope", ["network", "cell"])
def test_forward_equals_hand_wired_child_exactly(scope):
    net = _net(N=2, sample_scope=scope).eval()
    x, _ = _batch()
    with_a = net.sample_arch(TAU, arch_grad=True, generator=_gen(3))
    without_a = net.sample_arch(TAU, arch_grad=False, generator=_gen(3))
    assert [a and a.indices for a in with_a] == [a and a.indices for a in without_a]
    out = net(x, with_a)
    assert out.requires_grad
    with torch.no_grad():
        assert torch.equal(out, net(x, without_a))
        assert torch.equal(out, _hand_wired(net, x, without_a)[0])


def test_all_none_cell_gives_zeros():
    torch.manual_seed(0)
    cell = NB201SearchCell(4, 3)
    out = cell(torch.randn(2, 4, 5, 5), CellArch(None, [NONE] * 6))
    assert out.shape == (2, 4, 5, 5) and not out.any()


# ---- A step ----

@pytest.mark.parametrize("reference_grad", [False, True])
def test_a_step_gradient_is_soft_relaxation_at_sampled_entries(reference_grad):
    """GDAS: dL/dA = d/dA sum_e h~[e, k*_e] <dL/dnode, op_k*(x)>, from a hand-wired child's gradients.

    reference_grad adds, as the reference's forward_gdas, h~[e, k] * sum(dL/dnode) for every unsampled k.
    """
    net = _net(N=2, reference_grad=reference_grad).eval()  # eval: the repeated forwards see identical BN
    x, y = _batch(5)
    seed = 6
    archs = net.sample_arch(TAU, arch_grad=True, generator=_gen(seed))
    F.cross_entropy(net(x, archs), y).backward(inputs=[net.arch])
    got = net.arch.grad.clone()
    assert got.abs().sum() > 0

    soft = _soft(net, seed)[0]
    indices = next(a.indices for a in archs if a is not None)
    assert soft.argmax(-1).tolist() == indices  # the recomputed soft sample picks the same ops
    logits, nodes_of, outs_of = _hand_wired(net, x, archs)
    F.cross_entropy(logits, y).backward(inputs=[n for nodes in nodes_of.values() for n in nodes[1:]])
    total = soft.new_zeros(())
    for c, nodes in nodes_of.items():
        edge = 0
        for i in range(1, len(nodes)):
            grad = nodes[i].grad
            for _ in range(i):
                k = indices[edge]
                if (c, edge) in outs_of:
                    total = total + soft[edge, k] * (grad * outs_of[c, edge].detach()).sum()
                if reference_grad:
                    total = total + (soft[edge].sum() - soft[edge, k]) * grad.sum()
                edge += 1
    expected = torch.autograd.grad(total, net.arch)[0]
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-9)


def test_reference_grad_keeps_the_forward_value():
    plain, ref = _net(), _net(reference_grad=True)
    x, _ = _batch()
    a = plain(x, plain.sample_arch(TAU, arch_grad=True, generator=_gen(4)))
    b = ref(x, ref.sample_arch(TAU, arch_grad=True, generator=_gen(4)))
    assert torch.equal(a, b)


def test_noaccel_and_darts_gradients_are_the_mixture():
    """gdas-noaccel: dL/dA through every op weighted by the one-hot; darts: through softmax(A)."""
    for sampler in ("gdas-noaccel", "darts"):
        net = _net(sampler).eval()
        x, y = _batch(7)
        archs = net.sample_arch(TAU, arch_grad=True, generator=_gen(8))
        assert all(a.indices is None for a in archs if a is not None)
        F.cross_entropy(net(x, archs), y).backward(inputs=[net.arch])
        got = net.arch.grad.clone()
        weights = _soft(net, 8)[0] if sampler == "gdas-noaccel" else torch.softmax(net.arch, -1)
        # dL/dw measured at the forward value of w: the one-hot for no-accel, softmax(A) for darts.
        value = F.one_hot(weights.argmax(-1), 5).float() if sampler == "gdas-noaccel" else weights.detach()
        leaf = value.clone().requires_grad_()
        probe = [None if a is None else CellArch(leaf, None) for a in archs]
        F.cross_entropy(net(x, probe), y).backward(inputs=[leaf])
        expected = torch.autograd.grad((weights * leaf.grad).sum(), net.arch)[0]
        assert got.abs().sum() > 0 and torch.allclose(got, expected, rtol=1e-4, atol=1e-9)
        assert torch.equal(archs[0].weights.detach(), value)


def test_probabilities_are_softmax():
    net = _net()
    probs = net.probabilities()
    assert set(probs) == {"cell"} and not probs["cell"].requires_grad
    assert torch.allclose(probs["cell"], torch.softmax(net.arch, -1))


# ---- --reference-grad: the reference's NB201 gradient, reachable by an option ----

def _tiny_cell_grad(reference_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(dL/dA from the cell, the same by the closed form) on a 3-edge cell whose draw is skip, none, skip.

    Node 1 = x (skip), node 2 = none(x) + skip(node 1) = x: with L = <R, out> every node's gradient is R.
    d softmax((log_softmax(A) + o) / tau)_k / dA_j = h~_k (delta_kj - h~_j) / tau (log_softmax's shift
    cancels), so the paper's estimator gives row e = <R, input of e> J[k*] for a non-`none` k*, and the
    reference adds sum(R) * sum_{k != k*} J[k] for every edge, `none` included.
    """
    torch.manual_seed(0)
    cell = NB201SearchCell(2, 2, reference_grad=reference_grad)
    x, R = torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3)
    drawn = [NB201_OPS.index(op) for op in ("skip_connect", "none", "skip_connect")]
    A = torch.randn(3, 5, requires_grad=True)
    noise = torch.rand(3, 5) + 6.0 * F.one_hot(torch.tensor(drawn), 5)  # forces the draw
    soft = torch.softmax((torch.log_softmax(A, -1) + noise) / TAU, -1)
    hard = F.one_hot(soft.argmax(-1), 5).float()
    assert soft.argmax(-1).tolist() == drawn
    (cell(x, CellArch(hard + soft - soft.detach(), drawn)) * R).sum().backward()

    h = soft.detach()
    expected = torch.zeros(3, 5)
    for e, k in enumerate(drawn):
        J = (torch.diag(h[e]) - torch.outer(h[e], h[e])) / TAU  # J[k, j] = d h~_k / dA_j
        if k != NONE:
            expected[e] += float((R * x).sum()) * J[k]
        if reference_grad:
            expected[e] += float(R.sum()) * (J.sum(0) - J[k])
    return A.grad, expected


@pytest.mark.parametrize("reference_grad", [False, True])
def test_a_gradient_of_a_tiny_cell_is_the_closed_form(reference_grad):
    got, expected = _tiny_cell_grad(reference_grad)
    assert got.abs().sum() > 0 and torch.allclose(got, expected, rtol=1e-5, atol=1e-7)
    if reference_grad:  # the `none` edge's row is the extra terms alone
        assert got[1].abs().sum() > 0


def test_reference_grad_is_a_search_option():
    parser = argparse.ArgumentParser()
    add_config_options(parser, SearchConfig)
    for argv, want in (([], False), (["--reference-grad"], True), (["--no-reference-grad"], False)):
        cfg = resolve(SEARCH_PRESETS, "nb201-smoke", parser.parse_args(argv))
        cfg.validate()
        net = get_space("nb201").build_supernet(cfg, 3, 3)
        assert [net.cells[c].reference_grad for c in net.searched_cells()] == [want] * 3
    net = build_supernet("nb201", num_classes=3, C=4, N=1, reference_grad=True)
    assert all(net.cells[c].reference_grad for c in net.searched_cells())


@pytest.mark.parametrize("changes", [dict(space="darts", steps=4), dict(sampler="darts"),
                                     dict(sampler="gdas-noaccel")])
def test_reference_grad_is_refused_where_it_means_nothing(changes):
    cfg = dataclasses.replace(SEARCH_PRESETS["nb201-smoke"], reference_grad=True, **changes)
    with pytest.raises(GdasError, match=r"^--reference-grad is for the nb201 supernet under GDAS") as info:
        cfg.validate()
    assert "\n" not in str(info.value)
    space = changes.pop("space", "nb201")
    with pytest.raises(GdasError, match=r"^reference_grad=True is for .*: drop it$"):
        build_supernet(space, num_classes=3, reference_grad=True, **changes)
