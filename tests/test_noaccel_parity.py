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
