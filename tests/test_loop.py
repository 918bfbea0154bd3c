"""The shared loop pieces: the one W update and the frozen-W forward of the A step."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from gdas.engine.distributed import Context
from gdas.engine.loop import frozen, optimizer_step
from gdas.spaces.darts.supernet import SearchNetwork


def _net() -> SearchNetwork:
    torch.manual_seed(0)
    return SearchNetwork(4, 1, 3, in_channels=3)


def _a_grads(net: SearchNetwork, freeze: bool) -> list[torch.Tensor]:
    torch.manual_seed(1)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 1])
    archs = net.sample_arch(2.0, arch_grad=True, generator=torch.Generator().manual_seed(5))
    if freeze:
        with frozen(net.weight_parameters()):
            loss = F.cross_entropy(net(x, archs), y)
    else:
        loss = F.cross_entropy(net(x, archs), y)
    for p in net.arch_parameters():
        p.grad = None
    loss.backward(inputs=net.arch_parameters())
    return [p.grad.clone() for p in net.arch_parameters()]


def test_frozen_w_gives_the_same_a_gradient_and_no_w_gradient():
    net = _net()
    plain = _a_grads(net, freeze=False)
    frozen_grads = _a_grads(net, freeze=True)
    assert all(g.abs().sum() > 0 for g in plain)
    for a, b in zip(plain, frozen_grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-8)
    assert all(p.grad is None and p.requires_grad for p in net.weight_parameters())


def test_frozen_restores_each_flag_even_after_an_error():
    params = [torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2), requires_grad=False)]
    with pytest.raises(RuntimeError):
        with frozen(params):
            assert not any(p.requires_grad for p in params)
            raise RuntimeError("boom")
    assert [p.requires_grad for p in params] == [True, False]


def test_optimizer_step_clips_then_steps():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([p], lr=1.0)
    loss = (p * torch.tensor([30.0, 40.0, 0.0, 0.0])).sum()  # gradient norm 50
    optimizer_step(loss, opt, [p], grad_clip=5.0, ctx=Context())
    assert torch.allclose(p.detach(), torch.tensor([-3.0, -4.0, 0.0, 0.0]))


def test_a_step_when_every_sampled_path_is_none() -> None:
    """NB201 can sample `none` on every edge into the output node: the loss then does not depend on A."""
    from gdas.bench.measure import build_task
    from gdas.configs.search import SEARCH_PRESETS
    from gdas.sampler import CellArch

    cfg = dataclasses.replace(SEARCH_PRESETS["nb201-smoke"], device="cpu", batch_size=4, synthetic_train=8)
    task = build_task(cfg, torch.device("cpu"))
    (arch,) = task.a_params
    before = arch.detach().clone()

    def all_none(tau, *, arch_grad, generator=None):
        weights = torch.zeros_like(arch).index_fill(1, torch.tensor([0]), 1.0) + (arch - arch.detach())
        return [None if not isinstance(c, type(task.model.cells[0])) else CellArch(weights, [0] * arch.shape[0])
                for c in task.model.cells]

    task.model.sample_arch = all_none
    stats = task.a_step(0, 1.0)
    assert torch.isfinite(stats).all()
    assert torch.equal(arch.grad, torch.zeros_like(arch))
    # Adam with weight decay still moves A (as it would with the zero gradient of `none`'s zeros).
    assert not torch.equal(arch.detach(), before)
