"""The recurrent search cell (GDAS / DARTS / no-acceleration) and the final recurrent cell."""

from collections import Counter

import pytest
import torch
from torch import nn

from gdas.errors import GdasError
from gdas.genotypes import REGISTRY, RNN_PRIMITIVES
from gdas.spaces.rnn import cells
from gdas.spaces.rnn.cells import RecurrentCell, RecurrentSearchCell, num_rnn_edges

T, B, H = 3, 4, 6
K = len(RNN_PRIMITIVES)
NONE, TANH, RELU, SIGMOID, IDENTITY = range(K)


def make_search(dropout=0.0, steps=8):
    torch.manual_seed(0)
    cell = RecurrentSearchCell(H, H, dropout, dropout, steps)
    return cell, torch.randn(T, B, H), torch.randn(B, H)


def one_hot(indices):
    return torch.nn.functional.one_hot(torch.tensor(indices), K).float()


def count_activations(monkeypatch):
    calls = Counter()

    def wrap(name, fn):
        def counted(x):
            calls[name] += x.shape[0]  # edges evaluated in this call
            return fn(x)
        return counted

    monkeypatch.setattr(cells, "ACTIVATIONS", {n: wrap(n, f) for n, f in cells.ACTIVATIONS.items()})
    return calls


def test_edge_count():
    assert num_rnn_edges(8) == 36 and num_rnn_edges(3) == 6


@pytest.mark.parametrize("mode", ["gdas", "mixed"])
def test_search_cell_shapes(mode):
    cell, x, h = make_search(dropout=0.2)
    indices = [RELU] * 36
    weights = torch.softmax(torch.randn(36, K), -1)
    out, last = cell(x, h, weights, indices if mode == "gdas" else None)
    assert out.shape == (T, B, H) and last.shape == (B, H)
    assert torch.equal(last, out[-1])


def test_gdas_runs_only_the_sampled_functions(monkeypatch):
    """On the autograd path (the fused window's count is in test_rnn_fused.py)."""
    calls = count_activations(monkeypatch)
    cell, x, h = make_search()
    cell.fused = False
    indices = [TANH if e % 3 == 0 else NONE if e % 3 == 1 else IDENTITY for e in range(36)]
    cell(x, h, None, indices)
    expected = Counter({RNN_PRIMITIVES[k]: T * n for k, n in Counter(indices).items() if k != NONE})
    assert calls == expected  # no relu/sigmoid, and nothing for `none` edges


def test_darts_mode_runs_every_function(monkeypatch):
    calls = count_activations(monkeypatch)
    cell, x, h = make_search()
    cell(x, h, torch.softmax(torch.randn(36, K), -1), None)
    assert calls == Counter({name: T * 36 for name in RNN_PRIMITIVES[1:]})


def test_only_used_parameters_and_logits_get_gradients():
    cell, x, h = make_search()
    logits = torch.randn(36, K, requires_grad=True)
    soft = torch.softmax(logits, -1)
    indices = [RELU] * 36
    indices[3:6] = [NONE] * 3  # every edge into node 3 samples `none`
    weights = one_hot(indices) + (soft - soft.detach())  # straight-through, as the sampler builds it
    out, _ = cell(x, h, weights, indices)
    out.pow(2).sum().backward()
    assert cell.Ws[2].grad is None  # node 3's matrix never ran
    assert all(cell.Ws[i].grad is not None and cell.Ws[i].grad.abs().sum() > 0 for i in (0, 1, 3, 7))
    logits.grad = None
    indices = [NONE if e % 4 == 1 else SIGMOID for e in range(36)]  # no node left without an input
    soft = torch.softmax(logits, -1)
    weights = one_hot(indices) + (soft - soft.detach())
    out, _ = cell(x, h, weights, indices)
    out.pow(2).sum().backward()
    row_has_grad = logits.grad.abs().sum(1) > 0
    assert row_has_grad.tolist() == [k != NONE for k in indices]  # A learns only from edges that ran


def test_straight_through_output_equals_the_hard_cell():
    cell, x, h = make_search(dropout=0.3)
    gen = torch.Generator().manual_seed(3)
    indices = torch.randint(0, K, (36,), generator=gen).tolist()
    logits = torch.randn(36, K, requires_grad=True)
    soft = torch.softmax(logits, -1)
    st = one_hot(indices) + (soft - soft.detach())
    torch.manual_seed(7)
    with_weights, _ = cell(x, h, st, indices)
    torch.manual_seed(7)  # same dropout masks
    hard, _ = cell(x, h, None, indices)
    assert torch.equal(with_weights, hard)
    torch.manual_seed(7)
    mixed, _ = cell(x, h, st, None)  # the no-acceleration ablation: every function, one-hot weights
    assert torch.allclose(mixed, hard, atol=1e-6)


def test_gdas_weight_gradient_equals_the_no_acceleration_one_at_sampled_entries():
    """GDAS computes only the sampled functions, yet the gradient reaching each sampled weight is the one
    the no-acceleration ablation (every function, one-hot weighted) gives it; unsampled weights get none."""
    cell, x, h = make_search()
    gen = torch.Generator().manual_seed(11)
    indices = torch.randint(1, K, (36,), generator=gen).tolist()
    indices[7] = NONE  # a `none` edge: zero output, so zero gradient in both modes
    grads = []
    for mode_indices in (indices, None):
        weights = one_hot(indices).requires_grad_(True)
        out, _ = cell(x, h, weights, mode_indices)
        out.pow(2).sum().backward()
        grads.append(weights.grad)
    gdas, noaccel = grads
    sampled = one_hot(indices).bool()
    assert torch.allclose(gdas[sampled], noaccel[sampled], rtol=1e-4, atol=1e-6)
    assert gdas[~sampled].abs().sum() == 0 and noaccel[~sampled].abs().sum() > 0
    assert gdas[sampled].abs().sum() > 0 and gdas[7, NONE] == 0


def test_search_cell_matches_hand_computation(monkeypatch):
    """Node i = sum over its sampled edges of s_j + sigmoid(c) * (f(g) - s_j), [c, g] = s_j W_i; h = mean."""
    steps = 3
    cell, x, h = make_search(steps=steps)
    cell.bns = nn.ModuleList(nn.Identity() for _ in range(steps + 1))
    indices = [TANH, SIGMOID, NONE, RELU, IDENTITY, TANH]  # node1 <- 0; node2 <- 0, 1; node3 <- 0, 1, 2
    f = {TANH: torch.tanh, RELU: torch.relu, SIGMOID: torch.sigmoid, IDENTITY: lambda v: v}
    out, _ = cell(x[:1], h, None, indices)
    c0, g0 = (torch.cat([x[0], h], -1) @ cell.W0).chunk(2, -1)
    states = [h + torch.sigmoid(c0) * (torch.tanh(g0) - h)]
    edge = 0
    for i in range(1, steps + 1):
        total = torch.zeros(B, H)
        for j in range(i):
            k = indices[edge + j]
            if k != NONE:
                c, g = (states[j] @ cell.Ws[i - 1]).chunk(2, -1)
                total = total + states[j] + torch.sigmoid(c) * (f[k](g) - states[j])
        states.append(total)
        edge += i
    assert torch.allclose(out[0], torch.stack(states[1:]).mean(0), atol=1e-6)


def test_all_none_node_is_zero_and_batch_norm_is_applied():
    cell, x, h = make_search()
    indices = [NONE] * 36
    out, _ = cell(x, h, None, indices)
    assert torch.equal(out, torch.zeros_like(out))  # no node has an input
    indices = [RELU] * 36
    out, _ = cell(x, h, None, indices)
    assert cell.bns[8].num_batches_tracked.item() == T  # node outputs are normalised at every step
    assert sum(p.numel() for p in cell.bns.parameters()) == 0  # affine=False


def test_dropout_masks_are_drawn_once_per_sequence(monkeypatch):
    drawn = []
    original = cells._dropout_mask

    def spy(like, rows, cols, p):
        drawn.append((rows, cols, p))
        return original(like, rows, cols, p)

    monkeypatch.setattr(cells, "_dropout_mask", spy)
    torch.manual_seed(0)
    cell = RecurrentSearchCell(5, H, 0.5, 0.25)
    cell(torch.randn(7, B, 5), torch.zeros(B, H), None, [RELU] * 36)
    assert drawn == [(B, 5, 0.5), (B, H, 0.25)]  # x and h, once for all 7 steps
    cell.eval()
    drawn.clear()
    cell(torch.randn(7, B, 5), torch.zeros(B, H), None, [RELU] * 36)
    assert drawn == []


def test_bad_arguments():
    cell, x, h = make_search()
    with pytest.raises(ValueError, match="indices"):
        cell(x, h, None, None)
    with pytest.raises(ValueError, match="shape"):
        cell(x, h, torch.ones(35, K), None)
    with pytest.raises(ValueError, match="36 sampled"):
        cell(x, h, None, [RELU] * 10)


def test_final_cell_matches_genotype_by_hand():
    genotype = REGISTRY["GDAS_RNN"]
    torch.manual_seed(0)
    cell = RecurrentCell(5, H, 0.0, 0.0, genotype).eval()
    x, h = torch.randn(2, B, 5), torch.randn(B, H)
    out, last = cell(x, h)
    assert out.shape == (2, B, H) and torch.equal(last, out[-1])
    f = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda v: v}
    c0, g0 = (torch.cat([x[0], h], -1) @ cell.W0).chunk(2, -1)
    states = [h + torch.sigmoid(c0) * (torch.tanh(g0) - h)]
    for i, ((name, j),) in enumerate(genotype.recurrent):
        c, g = (states[j] @ cell.Ws[i]).chunk(2, -1)
        states.append(states[j] + torch.sigmoid(c) * (f[name](g) - states[j]))
    assert torch.allclose(out[0], torch.stack(states[1:]).mean(0), atol=1e-6)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in cell.modules())


def test_final_cell_rejects_cnn_genotype():
    with pytest.raises(GdasError, match="recurrent genotype"):
        RecurrentCell(4, 4, 0.0, 0.0, REGISTRY["GDAS"])
