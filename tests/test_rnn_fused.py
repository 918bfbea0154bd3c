"""The recurrent cells' fused window (hand-written backward) against their autograd path, and the fused decoder NLL."""

import copy
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from gdas.genotypes import REGISTRY, RNN_PRIMITIVES
from gdas.lm.corpus import get_batch
from gdas.lm.steps import batch_statistics, evaluate
from gdas.spaces.rnn import fused
from gdas.spaces.rnn import model as model_module
from gdas.spaces.rnn.cells import RecurrentCell, RecurrentSearchCell
from gdas.spaces.rnn.genotype import RecurrentGenotype
from gdas.spaces.rnn.model import RNNModel
from gdas.spaces.rnn.softmax import decoder_nll

T, B, H, X = 4, 5, 6, 7
K = len(RNN_PRIMITIVES)
NONE, TANH, RELU, SIGMOID, IDENTITY = range(K)
# Node 2 samples `none` on both edges (a zero state), node 8 has one edge left, the others mix functions.
INDICES = [RELU, NONE, NONE, TANH, SIGMOID, IDENTITY] + [(e * 7 + 3) % K for e in range(6, 35)] + [NONE]
INDICES[28:35] = [NONE] * 7
INDICES[35] = SIGMOID
TWO_PAIRS = RecurrentGenotype((((("tanh", 0), ("relu", 0))), (("sigmoid", 1), ("tanh", 0)),
                               (("identity", 2), ("identity", 1))), (3, 1))


def _run(cell, fused_path: bool, x, h, *args, seed: int = 3, context=None):
    """Outputs, every gradient and the buffers after one forward/backward of `cell` on one path."""
    cell = copy.deepcopy(cell)
    cell.fused = fused_path
    x, h = x.clone().requires_grad_(), h.clone().requires_grad_()
    args = [a.detach().clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args]
    torch.manual_seed(seed)  # the same dropout masks on both paths
    with context(cell) if context else torch.enable_grad():
        out, last = cell(x, h, *args)
    assert torch.equal(last, out[-1])
    weights = torch.linspace(-1, 2, out.numel(), dtype=out.dtype).view_as(out)
    (out * weights).sum().backward()
    grads = {name: p.grad for name, p in cell.named_parameters()}
    grads.update(x=x.grad, h=h.grad, **{f"arg{i}": a.grad for i, a in enumerate(args) if isinstance(a, torch.Tensor)})
    return out.detach(), grads, dict(cell.state_dict())


def _assert_same(a, b):
    out_a, grads_a, state_a = a
    out_b, grads_b, state_b = b
    torch.testing.assert_close(out_a, out_b, rtol=1e-10, atol=1e-12)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert (grads_a[name] is None) == (grads_b[name] is None), name  # a matrix that never ran: no gradient
        if grads_b[name] is not None:
            torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-9, atol=1e-12, msg=name)
    for name in state_a:
        torch.testing.assert_close(state_a[name], state_b[name], rtol=1e-10, atol=1e-12, msg=name)


def _search_cell(dropout: float = 0.3):
    torch.manual_seed(0)
    return RecurrentSearchCell(X, H, dropout, dropout / 2).double()


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(T, B, X, generator=g, dtype=torch.float64), torch.randn(B, H, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("mode", ["train", "eval", "batch_statistics"])
def test_search_cell_w_step_equals_the_autograd_path(mode):
    cell = _search_cell()
    if mode == "eval":
        cell.eval()
    context = batch_statistics if mode == "batch_statistics" else None  # a search's derived-cell evaluation
    x, h = _inputs()
    _assert_same(_run(cell, True, x, h, None, INDICES, context=context),
                 _run(cell, False, x, h, None, INDICES, context=context))


def test_search_cell_a_step_equals_the_autograd_path():
    """The straight-through weights of the sampled entries get the autograd path's gradient (A's gradient)."""
    cell = _search_cell()
    x, h = _inputs()
    logits = torch.randn(36, K, dtype=torch.float64)
    soft = torch.softmax(logits, -1)
    weights = F.one_hot(torch.tensor(INDICES), K).double() + (soft - soft.detach())
    a, b = _run(cell, True, x, h, weights, INDICES), _run(cell, False, x, h, weights, INDICES)
    _assert_same(a, b)
    assert a[1]["arg0"].abs().sum() > 0


@pytest.mark.parametrize("genotype", [REGISTRY["GDAS_RNN"], REGISTRY["DARTS_V2_RNN"], TWO_PAIRS],
                         ids=["GDAS_RNN", "DARTS_V2_RNN", "two-pairs"])
@pytest.mark.parametrize("train", [True, False])
def test_final_cell_equals_the_autograd_path(genotype, train):
    torch.manual_seed(0)
    cell = RecurrentCell(X, H, 0.3, 0.2, genotype).double().train(train)
    x, h = _inputs()
    _assert_same(_run(cell, True, x, h), _run(cell, False, x, h))


def test_fused_window_computes_only_the_sampled_functions(monkeypatch):
    calls = Counter()

    def counted(name, pair):
        def forward(t):
            calls[name, "forward"] += t.numel() // (B * H)  # edges evaluated
            return pair[0](t)

        def backward(grad, out):
            calls[name, "backward"] += out.numel() // (B * H)
            return pair[1](grad, out)
        return forward, backward

    monkeypatch.setattr(fused, "ACTIVATIONS", {n: counted(n, p) for n, p in fused.ACTIVATIONS.items()})
    cell = RecurrentSearchCell(X, H, 0.0, 0.0).double()
    x, h = _inputs()
    indices = [TANH if e % 3 == 0 else NONE if e % 3 == 1 else IDENTITY for e in range(36)]
    out, _ = cell(x.requires_grad_(), h, None, indices)
    out.sum().backward()
    edges = Counter(RNN_PRIMITIVES[k] for k in indices if k != NONE)
    assert calls == Counter({(name, way): T * n for name, n in edges.items() for way in ("forward", "backward")})


def test_fused_path_is_not_used_for_mixing_or_foreign_norms():
    cell = _search_cell(0.0)
    x, h = _inputs()
    mixed = torch.softmax(torch.randn(36, K, dtype=torch.float64), -1)
    assert cell._fused_plan(cell._plan(mixed, None)) is None  # DARTS / no-acceleration: every function
    assert cell._fused_plan(cell._plan(None, INDICES)) is not None
    cell.bns[3] = torch.nn.Identity()  # a cell changed by hand runs the reference path
    assert cell._fused_plan(cell._plan(None, INDICES)) is None
    out, _ = cell(x, h, None, INDICES)
    assert out.shape == (T, B, H)


def test_decoder_nll_equals_log_softmax_nll_loss():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(40, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(40, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(40, (12,), generator=g)
    ours = decoder_nll(h, w, b, y)
    (ours * 1.7).backward()
    got = [t.grad.clone() for t in (h, w, b)]
    for t in (h, w, b):
        t.grad = None
    ref = F.nll_loss(F.log_softmax(F.linear(h, w, b), -1), y)
    (ref * 1.7).backward()
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    for a, r in zip(got, (h.grad, w.grad, b.grad)):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)
    ours = decoder_nll(h, w, b, y)
    ours.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace"):  # its buffer became the gradient: no second backward
        ours.backward()


def test_model_nll_is_the_decoder_log_softmax_nll_also_under_autocast(monkeypatch):
    calls = []
    monkeypatch.setattr(model_module, "decoder_nll", lambda *a: calls.append(1) or decoder_nll(*a))
    torch.manual_seed(0)
    model = RNNModel(30, 8, 8, RecurrentCell(8, 8, 0.0, 0.0, REGISTRY["GDAS_RNN"]))
    dropped, y = torch.randn(3, 2, 8), torch.randint(30, (3, 2))
    ref = F.nll_loss(F.log_softmax(model.decoder(dropped.view(-1, 8)), -1), y.view(-1))
    torch.testing.assert_close(model.nll(dropped, y), ref)
    assert len(calls) == 1
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the autocast path: autograd's ops, float32 loss
        assert model.nll(dropped, y).dtype == torch.float32
    assert len(calls) == 1  # float32 input, yet the fused NLL stays out of autocast


def test_evaluation_sums_the_log_softmax_nll_over_windows():
    torch.manual_seed(0)
    model = RNNModel(30, 8, 8, RecurrentCell(8, 8, 0.2, 0.1, REGISTRY["GDAS_RNN"])).double().train()
    data = torch.randint(30, (23, 3))
    total, tokens = evaluate(model, data, 5, device=torch.device("cpu"), amp="none")
    assert model.training and tokens == 22 * 3
    model.eval()
    hidden, expected = model.init_hidden(3), 0.0
    with torch.no_grad():
        for start in range(0, 22, 5):  # windows 0-4, 5-9, 10-14, 15-19, 20-21 predict the next token
            x, y = get_batch(data, start, 5)
            log_probs, hidden = model(x, hidden)
            expected += F.nll_loss(log_probs.reshape(-1, 30), y.reshape(-1), reduction="sum").item()
    assert total == pytest.approx(expected, rel=1e-6)  # summed in float32


def test_model_fused_switch_selects_the_reference_path(monkeypatch):
    calls = Counter()
    monkeypatch.setattr(fused, "ACTIVATIONS", {n: (lambda t, f=f, n=n: calls.update([n]) or f[0](t), f[1])
                                               for n, f in fused.ACTIVATIONS.items()})
    monkeypatch.setattr(model_module, "decoder_nll", lambda *a: calls.update(["decoder"]) or decoder_nll(*a))
    torch.manual_seed(0)
    model = RNNModel(30, 8, 8, RecurrentCell(8, 8, 0.0, 0.0, REGISTRY["GDAS_RNN"])).eval()  # no dropout masks
    x, y = torch.randint(30, (3, 2)), torch.randint(30, (3, 2))
    model.fused = False
    assert not model.cell.fused and not model.fused
    _, dropped, _ = model.features(x, model.init_hidden(2))
    reference = model.nll(dropped, y)
    assert not calls  # autograd's ops only
    model.fused = True
    _, dropped, _ = model.features(x, model.init_hidden(2))
    torch.testing.assert_close(model.nll(dropped, y), reference)
    assert calls["decoder"] == 1 and sum(calls.values()) > 1
