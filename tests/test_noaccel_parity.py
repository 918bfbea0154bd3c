"""The no-acceleration ablation differs from GDAS in compute: on the same samples, the same weights and BN statistics
up to rounding (scripts/noaccel_parity.py measures how far)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gdas.configs.search import SearchConfig
from gdas.search import SearchTask
from gdas.spaces import get_space


class FixedBatches:
    """A data side with one fixed batch per phase (enough for SearchTask's W and A steps)."""

    num_classes, in_channels, n_stats = 3, 3, 1

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.batches = {p: (torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 3, (6,), generator=g))
                        for p in ("w", "a")}

    def loss(self, model, archs, phase, step):
        x, y = self.batches[phase]
        loss = F.cross_entropy(model(x, archs), y)
        return loss, loss.detach().view(1)


def _task(space: str, sampler: str) -> SearchTask:
    # Large weight decay and momentum: a zero-valued gradient would visibly move an unsampled op.
    sizes = {"darts": dict(C=4, N=1), "nb201": dict(space="nb201", C=4, N=1, steps=3)}[space]
    cfg = SearchConfig(dataset="synthetic", sampler=sampler, w_weight_decay=0.1, w_momentum=0.9, seed=3,
                       device="cpu", **sizes)
    return SearchTask(cfg, get_space(cfg.space), FixedBatches(), torch.device("cpu"), show_progress=False)


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_noaccel_w_steps_equal_gdas(space):
    gdas, noaccel = _task(space, "gdas"), _task(space, "gdas-noaccel")
    noaccel.model.load_state_dict(gdas.model.state_dict())
    for step in range(4):
        gdas.w_step(step, 1.0)
        noaccel.w_step(step, 1.0)
    # every parameter and BN buffer (running statistics, batch counts) of the supernet
    for (name, a), (_, b) in zip(gdas.model.state_dict().items(), noaccel.model.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6), name
    # and in the optimizer: only the ops GDAS ran carry momentum
    assert len(gdas.w_opt.state) == len(noaccel.w_opt.state) < len(gdas.w_params)


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_noaccel_a_step_leaves_bn_statistics_as_gdas(space):
    gdas, noaccel = _task(space, "gdas"), _task(space, "gdas-noaccel")
    noaccel.model.load_state_dict(gdas.model.state_dict())
    gdas.a_step(0, 1.0)
    noaccel.a_step(0, 1.0)
    for (name, a), (_, b) in zip(gdas.model.named_buffers(), noaccel.model.named_buffers()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6), name


def test_the_measurement_script_runs():
    """scripts/noaccel_parity.py, which README quotes: four comparisons; one darts W step apart by rounding only."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "noaccel_parity.py"
    out = subprocess.run([sys.executable, str(script), "--steps", "1", "--size", "16", "--batch", "4"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == 8 and [line.split(" (")[0] for line in out[::2]] == ["darts", "darts", "nb201", "nb201"]
    darts_gap = float(out[1].split()[1])
    assert 0 <= darts_gap < 1e-5


def test_a_draw_that_cuts_a_cell_off_leaves_the_layers_before_it_alone_in_both_modes():
    """NB201: `none` on every path through a cell gives the layers before it no gradient under GDAS; the ablation's
    zero-weighted candidates once gave them exact zeros, which weight decay and momentum then acted on."""
    gdas, noaccel = _task("nb201", "gdas"), _task("nb201", "gdas-noaccel")
    noaccel.model.load_state_dict(gdas.model.state_dict())
    none = get_space("nb201").ops.index("none")
    for task in (gdas, noaccel):
        with torch.no_grad():  # A all but certain of `none` on every edge: every draw cuts every cell off
            task.model.arch.fill_(-30.0)
            task.model.arch[:, none] = 30.0
        for step in range(3):
            task.w_step(step, 1.0)
    stem = [p for p in gdas.model.stem.parameters()]
    assert all(p.grad is None for p in stem)
    assert all(p.grad is None for p in noaccel.model.stem.parameters())
    for (name, a), (_, b) in zip(gdas.model.state_dict().items(), noaccel.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_noaccel_keeps_the_gradient_of_every_earlier_layer_that_gdas_gives():
    """Detaching the unsampled candidates' inputs changes no gradient GDAS computes: one W step's gradients match."""
    for space in ("darts", "nb201"):
        gdas, noaccel = _task(space, "gdas"), _task(space, "gdas-noaccel")
        noaccel.model.load_state_dict(gdas.model.state_dict())
        gdas.w_step(0, 1.0)
        noaccel.w_step(0, 1.0)
        for a, b in zip(gdas.model.parameters(), noaccel.model.parameters()):
            assert (a.grad is None) == (b.grad is None)
            if a.grad is not None:
                assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-6)  # rounding: sums in another order
