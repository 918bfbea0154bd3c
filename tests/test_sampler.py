"""Tests for Gumbel sampling: one-hot forward, straight-through gradient, distribution, inf/NaN redraws, tau."""

from __future__ import annotations

import pytest
import torch

from gdas import sampler
from gdas.sampler import gumbel_noise, gumbel_sample, sample, tau_at


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _soft_from(logits: torch.Tensor, tau: float, seed: int) -> torch.Tensor:
    """The soft sample h~ recomputed from the noise a fresh generator with `seed` draws first."""
    noise = gumbel_noise(logits.shape, logits, _gen(seed))
    return torch.softmax((torch.log_softmax(logits, -1) + noise) / tau, dim=-1)


# ---- tau schedule ----

def test_tau_schedule_endpoints_and_midpoint():
    assert tau_at(0, 240) == pytest.approx(10.0)
    assert tau_at(239, 240) == pytest.approx(0.1)
    assert tau_at(5, 11) == pytest.approx((10.0 + 0.1) / 2)  # linear: exact midpoint epoch
    assert tau_at(1, 3) == pytest.approx(5.05)
    taus = [tau_at(e, 10) for e in range(10)]
    steps = [a - b for a, b in zip(taus, taus[1:])]
    assert all(s == pytest.approx(9.9 / 9) for s in steps)


def test_tau_schedule_custom_range_and_single_epoch():
    assert tau_at(0, 5, tau_max=4.0, tau_min=2.0) == pytest.approx(4.0)
    assert tau_at(4, 5, tau_max=4.0, tau_min=2.0) == pytest.approx(2.0)
    assert tau_at(0, 1) == pytest.approx(0.1)  # one epoch: no division by zero, the final temperature


# ---- forward value ----

@pytest.mark.parametrize("tau", [10.0, 1.0, 0.1])
def test_forward_weights_exactly_one_hot_and_indices_are_argmax(tau):
    logits = torch.randn(14, 8, generator=_gen(3)).requires_grad_()
    s = gumbel_sample(logits, tau, _gen(7))
    soft = _soft_from(logits.detach(), tau, 7)
    expected = torch.nn.functional.one_hot(soft.argmax(-1), 8).to(logits.dtype)
    assert torch.equal(s.weights.detach(), expected)
    assert s.indices == soft.argmax(-1).tolist()
    assert all(isinstance(i, int) for i in s.indices)
    assert s.weights.requires_grad


def test_nested_indices_for_stacked_logits():
    logits = torch.randn(3, 14, 8, generator=_gen(1))
    s = gumbel_sample(logits, 1.0, _gen(2))
    assert s.weights.shape == (3, 14, 8)
    assert len(s.indices) == 3 and all(len(row) == 14 for row in s.indices)
    assert torch.equal(torch.tensor(s.indices), s.weights.argmax(-1))
    assert torch.equal(s.weights.sum(-1), torch.ones(3, 14))


def test_same_seed_same_draw_and_different_seed_differs():
    logits = torch.zeros(2, 14, 8)
    a, b, c = (gumbel_sample(logits, 1.0, _gen(s)) for s in (5, 5, 6))
    assert a.indices == b.indices and torch.equal(a.weights, b.weights)
    assert a.indices != c.indices


# ---- straight-through gradient ----

@pytest.mark.parametrize("tau", [5.0, 0.5])
def test_straight_through_gradient_equals_soft_gradient_at_sampled_entries(tau):
    base = torch.randn(14, 8, generator=_gen(11))
    coef = torch.randn(14, generator=_gen(12))
    logits = base.clone().requires_grad_()
    s = gumbel_sample(logits, tau, _gen(21))
    k = torch.tensor(s.indices)
    rows = torch.arange(14)
    (s.weights[rows, k] * coef).sum().backward()

    ref_logits = base.clone().requires_grad_()
    soft = _soft_from(ref_logits, tau, 21)
    assert torch.equal(soft.argmax(-1), k)
    (soft[rows, k] * coef).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert torch.allclose(logits.grad, ref_logits.grad, rtol=1e-5, atol=1e-7)


def test_straight_through_gradient_of_a_full_weighting():
    base = torch.randn(2, 14, 8, generator=_gen(4))
    coef = torch.randn(2, 14, 8, generator=_gen(5))
    logits = base.clone().requires_grad_()
    (gumbel_sample(logits, 2.0, _gen(9)).weights * coef).sum().backward()
    ref = base.clone().requires_grad_()
    (_soft_from(ref, 2.0, 9) * coef).sum().backward()
    assert torch.allclose(logits.grad, ref.grad, rtol=1e-5, atol=1e-7)


# ---- distribution ----

def test_argmax_frequencies_follow_softmax():
    probs_logits = torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5])
    draws = 40000
    s = gumbel_sample(probs_logits.expand(draws, 5).contiguous(), 1.0, _gen(0))
    freq = torch.bincount(torch.tensor(s.indices), minlength=5).float() / draws
    assert torch.allclose(freq, torch.softmax(probs_logits, -1), atol=0.01)


def test_gumbel_noise_is_standard_gumbel():
    noise = gumbel_noise(torch.Size([50000]), torch.zeros(1), _gen(0))
    assert noise.mean().item() == pytest.approx(0.5772, abs=0.02)  # Euler-Mascheroni constant
    assert noise.var().item() == pytest.approx(torch.pi ** 2 / 6, rel=0.05)


# ---- inf/NaN safety ----

def test_inf_noise_is_redrawn(monkeypatch):
    calls = []
    real = sampler.gumbel_noise

    def flaky(shape, like, generator):
        calls.append(1)
        if len(calls) == 1:
            return torch.full(shape, float("inf"), dtype=like.dtype)
        return real(shape, like, generator)

    monkeypatch.setattr(sampler, "gumbel_noise", flaky)
    logits = torch.randn(14, 8, generator=_gen(0)).requires_grad_()
    s = gumbel_sample(logits, 1.0, _gen(1))
    assert len(calls) == 2
    assert torch.isfinite(s.weights).all()
    assert torch.equal(s.weights.detach().sum(-1), torch.ones(14))
    assert s.indices == s.weights.argmax(-1).tolist()
    s.weights.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_always_inf_raises(monkeypatch):
    monkeypatch.setattr(sampler, "gumbel_noise", lambda shape, like, generator: torch.full(shape, float("inf")))
    with pytest.raises(FloatingPointError, match="inf/NaN"):
        gumbel_sample(torch.zeros(14, 8), 1.0)


def test_nan_logits_raise():
    logits = torch.zeros(14, 8)
    logits[3, 2] = float("nan")
    with pytest.raises(FloatingPointError):
        gumbel_sample(logits, 1.0, _gen(0))


# ---- modes ----

def test_darts_mode_returns_softmax_without_indices():
    logits = torch.randn(2, 14, 8, generator=_gen(2))
    s = sample(logits, 1.0, "darts")
    assert s.indices is None
    assert torch.equal(s.weights, torch.softmax(logits, -1))


@pytest.mark.parametrize("mode", ["gdas", "gdas-noaccel"])
def test_gdas_modes_sample(mode):
    logits = torch.randn(14, 8, generator=_gen(2))
    s = sample(logits, 1.0, mode, _gen(3))
    ref = gumbel_sample(logits, 1.0, _gen(3))
    assert s.indices == ref.indices and torch.equal(s.weights, ref.weights)


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(torch.zeros(14, 8), 1.0, "enas")


# ---- k of K (Gumbel-top-k) ----

def test_k_of_k_draw_is_k_hot_at_the_top_perturbed_entries_with_the_soft_gradient():
    logits = torch.randn(3, 5, generator=_gen(4)).requires_grad_()
    s = gumbel_sample(logits, 1.5, _gen(9), k=[1, 2, 3])
    soft = _soft_from(logits.detach(), 1.5, 9)
    for row, (n, picked) in enumerate(zip((1, 2, 3), s.indices)):
        assert picked == sorted(soft[row].topk(n).indices.tolist())
        expected = torch.zeros(5)
        expected[picked] = 1.0
        assert torch.equal(s.weights[row].detach(), expected)
    coef = torch.randn(3, 5, generator=_gen(5))
    (s.weights * coef).sum().backward()
    ref = logits.detach().clone().requires_grad_()
    soft_ref = torch.softmax((torch.log_softmax(ref, -1) + gumbel_noise(ref.shape, ref, _gen(9))) / 1.5, -1)
    (soft_ref * coef).sum().backward()
    assert torch.allclose(logits.grad, ref.grad, atol=1e-6)
