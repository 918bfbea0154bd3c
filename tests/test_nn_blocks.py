"""Exactness of gdas.nn choices under the module supernet: what runs, the straight-through gradient, the DARTS
mixture, the no-acceleration ablation, shared labels, k of n inputs, and freezing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gdas
from gdas.nn.freeze import freeze_choices
from gdas.sampler import CellArch, drop_idle_grads, gumbel_noise
from gdas.spaces.module.supernet import ModuleSupernet, derive_choices

TAU = 2.0


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Net(nn.Module):
    """Every kind of choice: a shared label at two places, a depth, and 2 of 3 inputs."""

    def __init__(self, reduction: str = "sum"):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.op = gdas.nn.Choice({"conv3": Block(4), "conv5": nn.Conv2d(4, 4, 5, padding=2), "skip": nn.Identity()},
                                 label="op")
        self.body = gdas.nn.Repeat(lambda i: Block(4), depth=(0, 1, 2), label="depth")
        self.op2 = gdas.nn.Choice({"conv3": Block(4), "conv5": nn.Conv2d(4, 4, 5, padding=2), "skip": nn.Identity()},
                                  label="op")
        self.merge = gdas.nn.InputChoice(3, 2, reduction=reduction, label="inputs")
        self.head = nn.Linear(4 * (2 if reduction == "concat" else 1), 2)

    def forward(self, x):
        a = self.stem(x)
        b = self.op(a)
        c = self.body(b)
        d = self.op2(c)
        return self.head(self.merge([b, c, d]).mean((2, 3)))


def _net(sampler="gdas", seed=0, **kw) -> ModuleSupernet:
    torch.manual_seed(seed)
    return ModuleSupernet(Net(**kw), sampler=sampler)


def _batch(seed=0):
    g = _gen(seed)
    return torch.randn(4, 3, 6, 6, generator=g), torch.randint(0, 2, (4,), generator=g)


def _candidates(net: ModuleSupernet) -> dict[str, nn.Module]:
    m = net.net
    return {"op.conv3": m.op.candidates["conv3"], "op.conv5": m.op.candidates["conv5"],
            "op2.conv3": m.op2.candidates["conv3"], "op2.conv5": m.op2.candidates["conv5"],
            "body.0": m.body.blocks[0], "body.1": m.body.blocks[1]}


def _calls(net: ModuleSupernet):
    counts = dict.fromkeys(_candidates(net), 0)
    hooks = [mod.register_forward_hook(lambda *_, key=key: counts.__setitem__(key, counts[key] + 1))
             for key, mod in _candidates(net).items()]
    return counts, hooks


def _expected_runs(choices: dict) -> set[str]:
    runs = {f"{place}.{choices['op']}" for place in ("op", "op2") if choices["op"] != "skip"}
    return runs | {f"body.{i}" for i in range(choices["depth"])}


@pytest.mark.parametrize("phase", ["w", "a"])
def test_only_the_sampled_candidates_run_and_a_label_draws_once(phase):
    net = _net()
    seen = set()
    for seed in range(12):
        counts, hooks = _calls(net)
        archs = net.sample_arch(TAU, arch_grad=phase == "a", generator=_gen(seed))
        x, y = _batch(seed)
        F.cross_entropy(net(x, archs), y).backward()
        for h in hooks:
            h.remove()
        chosen = {label: net.block(label).names[a.indices[0]] if label != "inputs" else a.indices[0]
                  for label, a in zip(net.labels, archs)}
        chosen["depth"] = int(chosen["depth"])
        assert {k for k, n in counts.items() if n} == _expected_runs(chosen)
        assert all(n <= 1 for n in counts.values())
        assert (archs[0].weights is None) == (phase == "w")
        seen.add((chosen["op"], chosen["depth"]))
    assert len(seen) > 3  # the draws vary


def _soft(net: ModuleSupernet, seed: int) -> list[torch.Tensor]:
    """Each label's soft sample recomputed from the noise a fresh generator draws (over the padded rows)."""
    widest = max(net.widths)
    noise = gumbel_noise(torch.Size((len(net.labels), widest)), net.arch[0], _gen(seed))
    return [torch.softmax((torch.log_softmax(a[0], -1) + noise[i, :a.shape[1]]) / TAU, -1)
            for i, a in enumerate(net.arch)]


def test_a_step_gradient_is_the_soft_gradient_at_the_sampled_candidates():
    net = _net(seed=3)
    net.eval()  # the same BN behaviour in both forward passes
    x, y = _batch(4)
    seed = 5
    archs = net.sample_arch(TAU, arch_grad=True, generator=_gen(seed))
    F.cross_entropy(net(x, archs), y).backward(inputs=net.arch_parameters())
    got = [p.grad.clone() for p in net.arch_parameters()]
    assert all(g.abs().sum() > 0 for g in got)
    # dL/dw at the sampled entries, measured with leaf weights of value 1 in the same draw
    leaves = [torch.ones_like(a.weights).requires_grad_() for a in archs]
    fixed = [CellArch(w, a.indices) for w, a in zip(leaves, archs)]
    coef = torch.autograd.grad(F.cross_entropy(net(x, fixed), y), leaves)
    soft = _soft(net, seed)
    for i, arch in enumerate(archs):
        picked = arch.indices[0] if isinstance(arch.indices[0], list) else [arch.indices[0]]
        assert sorted(soft[i].detach().topk(len(picked)).indices.tolist()) == sorted(picked)
        expected = torch.autograd.grad(sum(soft[i][k] * coef[i][0, k] for k in picked), net.arch[i])[0]
        assert torch.allclose(got[i], expected, rtol=1e-4, atol=1e-9)


def test_darts_mixture_is_the_softmax_weighted_sum():
    net = _net("darts", seed=1)
    net.eval()
    x, _ = _batch(2)
    archs = net.sample_arch(TAU, arch_grad=False)
    out = net(x, archs)
    m = net.net
    p = {label: torch.softmax(a[0], -1) for label, a in zip(net.labels, net.arch)}

    def op(module, h):
        return sum(w * c(h) for w, c in zip(p["op"], module.candidates.values()))
    a = m.stem(x)
    b = op(m.op, a)
    outs = [b, m.body.blocks[0](b)]
    outs.append(m.body.blocks[1](outs[1]))
    c = sum(w * outs[d] for w, d in zip(p["depth"], (0, 1, 2)))
    d = op(m.op2, c)
    merged = 2 * sum(w * h for w, h in zip(p["inputs"], (b, c, d)))
    assert torch.allclose(out, m.head(merged.mean((2, 3))), atol=1e-5)


def test_noaccel_runs_everything_equals_gdas_and_leaves_idle_ones_untouched():
    gd, na = _net("gdas", seed=2), _net("gdas-noaccel", seed=9)
    na.load_state_dict(gd.state_dict())
    x, y = _batch(3)
    for seed in range(6):
        a_gd = gd.sample_arch(TAU, arch_grad=False, generator=_gen(seed))
        a_na = na.sample_arch(TAU, arch_grad=False, generator=_gen(seed))
        assert all(a.indices is None and a.sampled == b.indices for a, b in zip(a_na, a_gd))
        counts, hooks = _calls(na)
        stats = {k: [b.clone() for b in m.buffers()] for k, m in _candidates(na).items()}
        loss_na = F.cross_entropy(na(x, a_na), y)
        loss_gd = F.cross_entropy(gd(x, a_gd), y)
        for h in hooks:
            h.remove()
        assert all(n == 1 for n in counts.values())  # every candidate and block ran
        assert torch.allclose(loss_na, loss_gd, atol=1e-6)
        loss_na.backward()
        drop_idle_grads(a_na)
        chosen = {"op": na.block("op").names[a_gd[0].indices[0]], "depth": na.block("depth").depths[a_gd[1].indices[0]]}
        runs = _expected_runs(chosen)
        for key, module in _candidates(na).items():
            grads = [p.grad for p in module.parameters()]
            if key not in runs:
                assert all(g is None for g in grads), key
                assert all(torch.equal(b, s) for b, s in zip(module.buffers(), stats[key])), key
        na.zero_grad(set_to_none=True)
        for (_, b_na), (_, b_gd) in zip(na.net.named_buffers(), gd.net.named_buffers()):
            assert torch.equal(b_na, b_gd)  # BN statistics move as under GDAS


def test_k_of_n_inputs_and_reductions():
    for reduction in ("sum", "mean", "concat"):
        net = _net(seed=4, reduction=reduction)
        net.eval()
        x, _ = _batch(5)
        archs = net.sample_arch(TAU, arch_grad=False, generator=_gen(1))
        picked = archs[net.labels.index("inputs")].indices[0]
        assert isinstance(picked, list) and len(picked) == 2 and picked == sorted(picked)
        inputs = []
        net.net.merge.register_forward_pre_hook(lambda mod, args: inputs.append(args[0]))
        out = net(x, archs)
        chosen = [inputs[0][i] for i in picked]
        merged = {"sum": chosen[0] + chosen[1], "mean": (chosen[0] + chosen[1]) / 2,
                  "concat": torch.cat(chosen, 1)}[reduction]
        assert torch.allclose(out, net.net.head(merged.mean((2, 3))), atol=1e-6)


def test_frozen_model_equals_the_supernet_under_the_same_choices():
    net = _net(seed=6, reduction="concat")
    net.eval()
    x, _ = _batch(7)
    for choices in ({"op": "conv3", "depth": 2, "inputs": [0, 2]}, {"op": "skip", "depth": 0, "inputs": [1, 2]},
                    {"op": "conv5", "depth": 1, "inputs": [0, 1]}):
        expected = net(x, net.fixed_archs(choices))
        import copy
        frozen = freeze_choices(copy.deepcopy(net.net), choices)
        assert not any(isinstance(m, gdas.nn.ChoiceBlock) for m in frozen.modules())
        assert torch.equal(frozen(x), expected)
        n_params = sum(p.numel() for p in frozen.parameters())
        assert n_params < sum(p.numel() for p in net.weight_parameters())
        scripted = torch.jit.trace(frozen, x)
        assert torch.allclose(scripted(x), expected)
    torch.jit.script(gdas.nn.Select([0, 2], "mean"))  # the frozen input selector compiles


def test_derive_takes_the_most_likely_candidates():
    net = _net()
    with torch.no_grad():
        net.arch_logits()["op"].copy_(torch.tensor([[0.0, 2.0, 1.0]]))
        net.arch_logits()["depth"].copy_(torch.tensor([[0.0, 0.5, 1.0]]))
        net.arch_logits()["inputs"].copy_(torch.tensor([[3.0, -1.0, 2.0]]))
    assert derive_choices(net.groups, net.probabilities()) == {"op": "conv5", "depth": 2, "inputs": [0, 2]}


def test_bad_spaces_are_one_line_errors():
    with pytest.raises(gdas.GdasError, match="has no choices"):
        ModuleSupernet(nn.Linear(2, 2))

    class Clash(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = gdas.nn.Choice({"x": nn.Identity(), "y": nn.Identity()}, label="k")
            self.b = gdas.nn.Choice({"x": nn.Identity(), "z": nn.Identity()}, label="k")

    with pytest.raises(gdas.GdasError, match=r"labelled 'k' at a and b differ \(Choice of x, y vs Choice of x, z\)"):
        ModuleSupernet(Clash())
    with pytest.raises(gdas.GdasError, match="at least two candidates"):
        gdas.nn.Choice([nn.Identity()])
    with pytest.raises(gdas.GdasError, match="ascending"):
        gdas.nn.Repeat(lambda i: nn.Identity(), depth=(2, 1))
    with pytest.raises(gdas.GdasError, match="1 <= n_chosen < n_candidates"):
        gdas.nn.InputChoice(2, 2)
    net = _net()
    with pytest.raises(gdas.GdasError, match="no candidate 'conv7'; did you mean 'conv5'"):
        net.fixed_archs({"op": "conv7", "depth": 1, "inputs": [0, 1]})
    with pytest.raises(gdas.GdasError, match="no choice for 'inputs'"):
        net.fixed_archs({"op": "conv3", "depth": 1})
    with pytest.raises(gdas.GdasError, match="choice 'op' has no architecture"):
        Net()(torch.zeros(1, 3, 4, 4))


def test_values_choice_builds_one_candidate_per_value():
    choice = gdas.nn.Choice.from_values(lambda k: nn.Conv2d(2, 2, k, padding=k // 2), (3, 5), label="kernel")
    assert choice.names == ("3", "5") and choice.candidates["5"].kernel_size == (5, 5)


def test_random_choices_are_uniform_per_label():
    from gdas.spaces.module.supernet import random_choices

    net = _net()
    draws = [random_choices(net.groups, _gen(seed)) for seed in range(300)]
    counts = {name: sum(d["op"] == name for d in draws) for name in ("conv3", "conv5", "skip")}
    assert all(70 < n < 130 for n in counts.values()), counts
    assert all(len(d["inputs"]) == 2 and d["inputs"] == sorted(set(d["inputs"])) for d in draws)
    assert {d["depth"] for d in draws} == {0, 1, 2}
