"""Tests for the run directory's TensorBoard events (tensorboardX), read back with TensorBoard's own reader."""

from __future__ import annotations

import math

import pytest

from gdas.engine.rundir import RunDir

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _reader(path) -> EventAccumulator:
    acc = EventAccumulator(str(path))
    acc.Reload()
    return acc


def test_tensorboard_reads_the_scalars_of_each_epoch(tmp_path):
    run = RunDir(tmp_path)
    for step in range(5):  # numbers become scalars; the epoch (the step itself), strings and flags do not
        run.log_scalars(step, {"epoch": step, "loss": 2.0 - 0.25 * step, "acc/top1": 10.0 * step,
                               "genotype": "normal: ...", "frc": True})
    run.log_scalars(5, {"loss": math.inf, "acc/top1": math.nan})
    run.close()
    run.close()  # idempotent
    files = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(files) == 1
    acc = _reader(tmp_path / "tb")
    assert sorted(acc.Tags()["scalars"]) == ["acc/top1", "loss"]
    loss = acc.Scalars("loss")
    assert [e.step for e in loss] == [0, 1, 2, 3, 4, 5]
    assert [e.value for e in loss[:5]] == pytest.approx([2.0, 1.75, 1.5, 1.25, 1.0])
    assert loss[5].value == math.inf and math.isnan(acc.Scalars("acc/top1")[5].value)


def test_events_are_on_disk_when_the_epoch_is_logged(tmp_path):
    run = RunDir(tmp_path)
    for step in range(2):
        run.log_scalars(step, {"tau": 10.0 - step})
        assert _values(tmp_path / "tb", "tau") == [10.0 - s for s in range(step + 1)]  # no wait, no close
    run.close()


def _values(path, tag: str) -> list[float]:
    acc = _reader(path)
    return [e.value for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def test_other_ranks_write_no_events(tmp_path):
    run = RunDir(tmp_path, writer=False)
    run.log_scalars(0, {"tau": 10.0})
    run.close()
    assert not (tmp_path / "tb").exists()
