"""A run file that cannot be written (a full disk) stops the run with one line that names the file and a command
that works; the folder stays at its last checkpoint, and continuing gives the uninterrupted result."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch

from cli_helpers import FULL, no_space, run_cli
from test_resume_phases import KINDS, assert_same_run

import gdas
from gdas.engine import rundir
from gdas.engine.rundir import BEST, CHECKPOINT, RunDir
from gdas.errors import GdasError

SEARCH = ["search", *KINDS["search"]]
TRAIN = ["train", *KINDS["train"]]


def assert_at_last_checkpoint(run: Path) -> None:
    """Every per-epoch record is whole and of an epoch the checkpoint holds; no temporary or backup file is left."""
    if not run.exists():
        return
    last = RunDir(run).load_checkpoint()["epoch"] if (run / CHECKPOINT).exists() else -1
    for name in ("metrics.jsonl", "alphas.jsonl", "genotypes.jsonl"):
        if (run / name).exists():
            lines = (run / name).read_text().splitlines()
            assert [json.loads(line)["epoch"] for line in lines] == list(range(last + 1)), name
    if (run / BEST).exists():
        assert RunDir(run).load_checkpoint(BEST)["epoch"] <= last
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]


def fix_of(err: str, out: Path) -> Optional[list[str]]:
    """The command a write failure names (None: the same command again), checked against the folder's state."""
    if err.endswith("then run the command again"):
        assert not (out / "config.json").exists()
        return None
    command = err.split("; free space, then continue with ", 1)[1].split()
    assert command[0] == "gdas", err
    return command[1:]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, Path]:
    """One uninterrupted run of each command, made on first use."""
    class Runs(dict):
        def __missing__(self, command: str) -> Path:
            out = tmp_path_factory.mktemp(command) / "full"
            assert run_cli(*{"search": SEARCH, "train": TRAIN}[command], "--out", out) == 0
            self[command] = out
            return out

    return Runs()


# Each epoch writes metrics.jsonl, the events, alphas.jsonl, genotypes.jsonl, then checkpoint.pt: the nth write.
@pytest.mark.parametrize("name, nth", [
    ("config.json", 1),  # the run folder's first file
    ("split.json", 1),  # after config.json, before any epoch
    ("metrics.jsonl", 2),  # epoch 1's first record
    ("tb", 2),
    ("alphas.jsonl", 2),  # after epoch 1's metrics.jsonl
    ("genotypes.jsonl", 2),  # after epoch 1's alphas.jsonl
    ("checkpoint.pt", 1),  # epoch 0 is recorded, its checkpoint fails: no checkpoint at all
    ("checkpoint.pt", 2),  # epoch 1's records are all written, its checkpoint fails
    ("genotype.json", 1),  # after the last checkpoint
    ("summary.json", 1),
])
def test_a_search_stopped_by_a_full_disk_continues_to_the_same_result(name: str, nth: int, uninterrupted,
                                                                     tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        no_space(patch, name, nth)
        assert run_cli(*SEARCH, "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"gdas: error: cannot write {out / name}: {FULL}; free space, then "), err
    assert_at_last_checkpoint(out)
    command = fix_of(err, out)
    assert run_cli(*([*command, "--no-progress", "--no-report"] if command else [*SEARCH, "--out", out])) == 0
    assert_same_run(out, uninterrupted["search"])


def test_a_training_run_keeps_the_best_weights_of_its_last_checkpoint(uninterrupted, tmp_path: Path, monkeypatch,
                                                                      capsys) -> None:
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        no_space(patch, "checkpoint.pt", 2)
        assert run_cli(*TRAIN, "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gdas: error: cannot write {out / 'checkpoint.pt'}: {FULL}; free space, then continue with " \
                  f"gdas train --resume {out}"
    assert_at_last_checkpoint(out)
    assert run_cli(*fix_of(err, out), "--no-progress", "--no-report") == 0
    assert_same_run(out, uninterrupted["train"])
    best = [RunDir(run).load_checkpoint(BEST) for run in (out, uninterrupted["train"])]
    assert best[0]["epoch"] == best[1]["epoch"]
    assert all(torch.equal(best[0]["task"]["model"][k], best[1]["task"]["model"][k]) for k in best[1]["task"]["model"])


def test_an_epoch_whose_checkpoint_fails_is_undone(tmp_path: Path, monkeypatch) -> None:
    """The records an epoch appended are cut off and the best.pt it replaced (or created) is restored (removed)."""
    run = RunDir(tmp_path)
    run.append_jsonl("metrics.jsonl", {"epoch": 0})
    run.save_checkpoint({"epoch": 0, "task": {}}, name=BEST)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    no_space(monkeypatch, "checkpoint.pt", 1)
    with pytest.raises(GdasError, match=f"cannot write {tmp_path / 'checkpoint.pt'}: {FULL}; free space, then run "
                                        "the command again"):
        with run.epoch_writes(["metrics.jsonl", "alphas.jsonl"]):
            run.append_jsonl("metrics.jsonl", {"epoch": 1})
            run.append_jsonl("alphas.jsonl", {"epoch": 1})
            run.save_checkpoint({"epoch": 1, "task": {"w": torch.ones(3)}}, name=BEST)
            run.write_json("extra.json", {"epoch": 1})
            run.save_checkpoint({"epoch": 1, "task": {}})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    with run.epoch_writes(["metrics.jsonl"]):  # a successful epoch keeps everything and leaves no backup
        run.append_jsonl("metrics.jsonl", {"epoch": 1})
        run.save_checkpoint({"epoch": 1, "task": {}}, name=BEST)
        run.save_checkpoint({"epoch": 1, "task": {}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "checkpoint.pt", "metrics.jsonl"]
    assert run.load_checkpoint(BEST)["epoch"] == 1 and len(run.read_jsonl("metrics.jsonl")) == 2


def test_an_atomic_write_that_fails_keeps_the_old_file_and_names_it(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "summary.json"
    path.write_text("old")

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, FULL)

    monkeypatch.setattr(rundir.os, "fsync", fsync)
    with pytest.raises(OSError) as info:
        rundir.atomic_write_bytes(path, b"new")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"] and path.read_text() == "old"


def test_python_callers_are_told_the_call_that_continues(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8), np.arange(64) % 2
    settings = dict(preset="smoke", epochs=2, steps_per_epoch=2, threads=1)
    full = gdas.search((x, y), out=tmp_path / "full", **settings)
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        no_space(patch, "checkpoint.pt", 2)
        with pytest.raises(GdasError) as info:
            gdas.search((x, y), out=out, **settings)
    assert str(info.value) == (f"cannot write {out / 'checkpoint.pt'}: {FULL}; free space, then continue with "
                               f"gdas.search(out={str(out)!r}, resume=True)")
    resumed = gdas.search(out=str(out), resume=True)
    assert resumed.genotype == full.genotype
    assert_same_run(out, tmp_path / "full")
