"""Language models, dropouts, T=1 derivation, parameter counts, perplexity and NT-ASGD."""

import math
import random
from typing import Optional

import pytest
import torch
import torch.nn.functional as F

from gdas.errors import GdasError
from gdas.genotypes import REGISTRY, RNN_PRIMITIVES, RecurrentGenotype
from gdas.lm.asgd import NTASGD
from gdas.spaces.rnn.cells import RecurrentCell
from gdas.spaces.rnn.model import (LockedDropout, RNNModel, RNNSearchModel, derive_recurrent, embedded_dropout,
                            lm_param_count, perplexity)

K = len(RNN_PRIMITIVES)
NONE, TANH, RELU, SIGMOID, IDENTITY = range(K)


def test_locked_dropout_mask_is_shared_over_time():
    drop = LockedDropout().train()
    torch.manual_seed(0)
    out = drop(torch.ones(6, 3, 20), 0.5)
    assert all(torch.equal(out[t], out[0]) for t in range(6))
    assert set(out.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1/(1-p)
    x = torch.randn(6, 3, 20)
    assert torch.equal(drop.eval()(x, 0.5), x)


def test_embedded_dropout_drops_whole_words():
    torch.manual_seed(0)
    embed = torch.nn.Embedding(50, 8)
    words = torch.arange(50).repeat(2, 1)  # every word twice
    out = embedded_dropout(embed, words, 0.5)
    dropped = (out == 0).all(-1)
    assert dropped.any() and (~dropped).any()
    assert torch.equal(dropped[0], dropped[1])  # the same word is dropped everywhere
    kept = ~dropped[0]
    assert torch.allclose(out[0, kept], 2 * embed.weight[kept])
    assert torch.equal(embedded_dropout(embed, words, 0.0), embed(words))


def make_lm(ntoken=30, nhid=8):
    torch.manual_seed(0)
    return RNNModel(ntoken, nhid, nhid, RecurrentCell(nhid, nhid, 0.1, 0.1, REGISTRY["GDAS_RNN"]))


def test_language_model_forward_and_tied_weights():
    model = make_lm()
    assert model.decoder.weight is model.encoder.weight
    hidden = model.init_hidden(4)
    assert hidden.shape == (4, 8) and not hidden.any()
    log_probs, new_hidden = model(torch.randint(0, 30, (5, 4)), hidden)
    assert log_probs.shape == (5, 4, 30) and new_hidden.shape == (4, 8)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(5, 4), atol=1e-5)
    _, _, raw, dropped = model(torch.randint(0, 30, (5, 4)), hidden, return_h=True)
    assert raw.shape == dropped.shape == (5, 4, 8)


def test_language_model_checks_sizes_and_overrides_cell_dropout():
    with pytest.raises(GdasError, match="embedding size to equal the hidden size"):
        RNNModel(10, 6, 8, RecurrentCell(6, 8, 0.1, 0.1, REGISTRY["GDAS_RNN"]))
    model = RNNModel(10, 8, 8, RecurrentCell(8, 8, 0.1, 0.1, REGISTRY["GDAS_RNN"]), dropouth=0.15, dropoutx=0.6)
    assert (model.cell.dropout_h, model.cell.dropout_x) == (0.15, 0.6)


def test_search_model_arch_and_sampling():
    torch.manual_seed(0)
    model = RNNSearchModel(30, 8, 8, steps=8)
    (arch,) = model.arch_parameters()
    assert arch.shape == (36, K) and arch.abs().max() < 0.01
    assert all(p is not arch for p in model.weight_parameters())
    x, hidden = torch.randint(0, 30, (4, 3)), model.init_hidden(3)

    (drawn,) = model.sample_arch(5.0, arch_grad=True, generator=torch.Generator().manual_seed(1))
    assert len(drawn.indices) == 36 and torch.equal(drawn.weights.detach().argmax(-1), torch.tensor(drawn.indices))
    log_probs, _ = model(x, hidden, [drawn])
    log_probs.mean().backward()
    assert arch.grad is not None and arch.grad.abs().sum() > 0

    arch.grad = None
    (w_step,) = model.sample_arch(5.0, arch_grad=False)
    assert w_step.weights is None
    model(x, hidden, [w_step])[0].mean().backward()
    assert arch.grad is None

    (darts,) = RNNSearchModel(30, 8, 8, steps=8, sampler="darts").sample_arch(1.0, arch_grad=True)
    assert darts.indices is None and torch.allclose(darts.weights.sum(-1), torch.ones(36))
    (noaccel,) = RNNSearchModel(30, 8, 8, steps=8, sampler="gdas-noaccel").sample_arch(1.0, arch_grad=True)
    assert noaccel.indices is None and noaccel.weights.detach().sum().item() == 36.0
    with pytest.raises(ValueError, match="unknown sampler"):
        RNNSearchModel(30, 8, 8, steps=8, sampler="random")


def test_derive_recurrent_keeps_one_input_per_node():
    logits = torch.zeros(36, K)
    picks = {1: (0, RELU), 2: (1, TANH), 3: (0, IDENTITY), 4: (2, SIGMOID), 5: (4, RELU), 6: (5, TANH),
             7: (3, IDENTITY), 8: (7, RELU)}
    edge = 0
    for node in range(1, 9):
        j, k = picks[node]
        logits[edge + j, k] = 3.0
        logits[edge + (j + 1) % node, NONE] = 9.0  # `none` is never chosen, however strong
        edge += node
    genotype = derive_recurrent(logits)
    assert genotype == RecurrentGenotype(tuple(((RNN_PRIMITIVES[k], j),) for j, k in picks.values()),
                                         tuple(range(1, 9)))
    # Ties break towards the earlier input and the earlier function.
    assert derive_recurrent(torch.zeros(6, K)).recurrent == ((("tanh", 0),),) * 3
    with pytest.raises(ValueError, match="expected logits"):
        derive_recurrent(torch.zeros(35, K))


@pytest.mark.parametrize("ntoken,nhid,paper_m", [(10000, 850, 23), (33278, 700, 33)])
def test_lm_param_count(ntoken, nhid, paper_m):
    count = lm_param_count(REGISTRY["GDAS_RNN"], ntoken, nhid)
    # tied embedding + decoder bias + W0 (2H x 2H) + 8 node matrices (H x 2H)
    assert count == ntoken * nhid + ntoken + (2 * nhid) * (2 * nhid) + 8 * nhid * 2 * nhid
    assert round(count / 1e6) == paper_m


def test_perplexity_equals_exp_mean_nll():
    # Two targets with probabilities 1/2 and 1/4: mean NLL = 1.5 ln 2, perplexity = 2 ** 1.5.
    log_probs = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]]))
    total_nll = F.nll_loss(log_probs, torch.tensor([0, 1]), reduction="sum").item()
    assert perplexity(total_nll, 2) == pytest.approx(2 ** 1.5)
    assert perplexity(2 * math.log(7.0), 2) == pytest.approx(7.0)  # uniform over 7 words
    assert perplexity(1e6, 1) == math.inf
    with pytest.raises(ValueError):
        perplexity(1.0, 0)


def quadratic_step(opt, p):
    opt.zero_grad()
    (p - 3.0).pow(2).sum().backward()
    opt.step()


def awd_lstm_switch_epoch(losses: list[float], nonmono: int) -> Optional[int]:
    """The epoch AWD-LSTM's main.py switches to ASGD at, written out: before recording this epoch's loss,
    switch when more than `nonmono` losses are recorded and this one is worse than the lowest of the
    recorded ones except the last `nonmono`."""
    recorded: list[float] = []
    for epoch, loss in enumerate(losses):
        if len(recorded) > nonmono:
            lowest = recorded[0]
            for i in range(len(recorded) - nonmono):
                lowest = min(lowest, recorded[i])
            if loss > lowest:
                return epoch
        recorded.append(loss)
    return None


@pytest.mark.parametrize("nonmono", [0, 1, 2, 3, 5, 8])
def test_ntasgd_switch_follows_awd_lstm_over_random_loss_sequences(nonmono):
    rng = random.Random(nonmono)
    switches = set()
    for _ in range(300):
        # A noisy downward trend on a coarse grid: early rises, late rises and ties all occur.
        losses = [round(5 - 0.05 * i + rng.uniform(-1, 1), 1) for i in range(rng.randint(1, 16))]
        opt = NTASGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, nonmono=nonmono)
        switched = [opt.step_epoch(v) for v in losses]
        expected = awd_lstm_switch_epoch(losses, nonmono)
        assert switched == [epoch == expected for epoch in range(len(losses))], (losses, nonmono)
        assert opt.averaging == (expected is not None) and opt.history == losses
        switches.add(expected)
    assert None in switches and nonmono + 1 in switches  # both outcomes, down to the earliest possible epoch


def test_ntasgd_ignores_a_history_no_longer_than_nonmono():
    # The ptb/wt2 value: rising losses cannot switch until more than 5 earlier ones are recorded.
    opt = NTASGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, nonmono=5)
    assert [opt.step_epoch(v) for v in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)] == [False] * 6
    assert opt.step_epoch(1.5) is True  # the 7th: worse than 1.0, the best before the last five


def test_ntasgd_switch_builds_awd_lstm_asgd():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = NTASGD([p], lr=0.1, weight_decay=1e-4, nonmono=0)
    assert [opt.step_epoch(v) for v in (5.0, 6.0)] == [False, True]
    assert isinstance(opt.optimizer, torch.optim.ASGD) and opt.averaging
    group = opt.param_groups[0]
    assert (group["lr"], group["t0"], group["lambd"], group["weight_decay"]) == (0.1, 0, 0.0, 1e-4)


def test_ntasgd_evaluates_with_averaged_weights_and_restores():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = NTASGD([p], lr=0.1, nonmono=0)
    quadratic_step(opt, p)
    with opt.swap_averaged():  # before the switch: nothing to swap
        assert torch.equal(p.detach(), torch.full((2,), 0.6))
    assert opt.step_epoch(1.0) is False and opt.step_epoch(1.5) is True
    for _ in range(4):
        quadratic_step(opt, p)
    current, average = p.detach().clone(), opt.optimizer.state[p]["ax"].clone()
    assert not torch.equal(current, average)
    with opt.swap_averaged():
        assert torch.equal(p.detach(), average)
    assert torch.equal(p.detach(), current)


def test_ntasgd_state_round_trip():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = NTASGD([p], lr=0.1, nonmono=1)
    for v in (3.0, 2.0, 2.5, 2.6):
        opt.step_epoch(v)
    assert opt.averaging
    quadratic_step(opt, p)
    quadratic_step(opt, p)
    state = opt.state_dict()
    q = torch.nn.Parameter(p.detach().clone())
    restored = NTASGD([q], lr=0.1, nonmono=1)
    restored.load_state_dict(state)
    assert restored.averaging and restored.history == [3.0, 2.0, 2.5, 2.6]
    assert torch.equal(restored.optimizer.state[q]["ax"], opt.optimizer.state[p]["ax"])
    quadratic_step(opt, p)
    quadratic_step(restored, q)
    assert torch.equal(p.detach(), q.detach())  # resumed training continues identically
