"""Runs stopped at every phase boundary continue to the result of an uninterrupted run: a multi-seed search killed
before the first checkpoint of a seed or of its retrain or between seeds, a run of each kind killed in its first
epoch, and the command each refusal names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from cli_helpers import FULL, die_before_checkpoint, expect_error, no_space, run_cli
from gdas.engine.rundir import RunDir

SMOKE = ["--preset", "smoke", "--no-progress", "--no-report", "--threads", "1"]
MULTI = ["search", *SMOKE, "--epochs", "1", "--seeds", "0", "1"]
TIMING = {"epoch_time_s", "wall_time_s", "images_per_s", "tokens_per_s", "search_cost_device_hours",
          "select_wall_time_s", "dir"}


def die_when_created(monkeypatch, folder: str) -> None:
    """Ctrl-C as the run folder named `folder` is about to be created (e.g. between two seeds)."""
    original = RunDir.create.__func__

    def create(cls, path, *args, **kwargs):
        if Path(path).name == folder:
            raise KeyboardInterrupt
        return original(cls, path, *args, **kwargs)

    monkeypatch.setattr(RunDir, "create", classmethod(create))


def records(path: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in path.read_text().splitlines()]


def assert_same_run(got: Path, want: Path) -> None:
    """The same final weights (A included), per-epoch records and summary, timings aside."""
    states = [RunDir(run).load_checkpoint()["task"]["model"] for run in (got, want)]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0]), got
    for name in ("metrics.jsonl", "alphas.jsonl", "genotypes.jsonl"):
        if (want / name).exists():
            assert records(got / name) == records(want / name), (got, name)
    summaries = [{k: v for k, v in json.loads((run / "summary.json").read_text()).items() if k not in TIMING}
                 for run in (got, want)]
    assert summaries[0] == summaries[1]


def assert_same_multi_seed(got: Path, want: Path) -> None:
    rows = [[{k: v for k, v in row.items() if k not in TIMING} for row in json.loads((d / "seeds.json").read_text())
             ["seeds"]] for d in (got, want)]
    assert rows[0] == rows[1]
    assert (got / "genotype.json").read_text() == (want / "genotype.json").read_text()
    for seed in (0, 1):
        for part in ("", "select"):
            assert_same_run(got / f"seed-{seed}" / part, want / f"seed-{seed}" / part)


def continue_command(err: str) -> list[str]:
    """The arguments of the `gdas ...` command a refusal names after "continue it with"."""
    command = err.split("continue it with ", 1)[1].split(" or choose", 1)[0].split()
    assert command[0] == "gdas", err
    return command[1:]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phases") / "full"
    assert run_cli(*MULTI, "--out", out) == 0
    return out


# The n-th checkpoint.pt write of MULTI each phase is killed before (the auto-resume test covers seed 1's search).
PHASES = {"seed-0 search": 1, "seed-0 retrain": 2, "between seeds": None, "seed-1 retrain": 4}


@pytest.mark.parametrize("phase", list(PHASES))
def test_a_multi_seed_search_killed_at_each_phase_continues(phase: str, uninterrupted: Path, tmp_path: Path,
                                                            monkeypatch, capsys) -> None:
    out = tmp_path / "killed"
    with monkeypatch.context() as patch:
        if PHASES[phase] is None:
            die_when_created(patch, "seed-1")
        else:
            die_before_checkpoint(patch, PHASES[phase])
        assert run_cli(*MULTI, "--out", out) == 130
    capsys.readouterr()
    seed, part = phase.split() if phase != "between seeds" else ("seed-0", "")
    stopped = out / seed / ("select" if part == "retrain" else "")
    if phase != "between seeds":  # the phase's run has its config and first records, no checkpoint
        assert (stopped / "config.json").exists() and (stopped / "metrics.jsonl").exists()
        assert not (stopped / "checkpoint.pt").exists()
    else:
        assert (out / "seed-0" / "select" / "summary.json").exists() and not (out / "seed-1").exists()
    # The same command again names the one that continues the whole search, which then completes it.
    err = expect_error(capsys, *MULTI, "--out", out, contains=f"continue it with gdas search --resume {out} ")
    # Its seed folder's own refusal names the same command.
    if phase != "between seeds":
        expect_error(capsys, "search", *SMOKE, "--out", stopped, contains=f"gdas search --resume {out} ")
    assert run_cli(*continue_command(err), "--no-progress", "--no-report") == 0
    assert_same_multi_seed(out, uninterrupted)


def test_auto_resume_restarts_a_seed_and_a_retrain_killed_in_their_first_epoch(uninterrupted: Path, tmp_path: Path,
                                                                             monkeypatch) -> None:
    out = tmp_path / "auto"
    for n in (3, 2):  # seed 1's search, then (started again) seed 1's retrain: the second checkpoint from here
        with monkeypatch.context() as patch:
            die_before_checkpoint(patch, n)
            assert run_cli(*MULTI, "--out", out, "--auto-resume") == 130
    assert not (out / "seed-1" / "select" / "checkpoint.pt").exists()
    assert (out / "seed-1" / "select" / "config.json").exists()
    assert run_cli(*MULTI, "--out", out, "--auto-resume") == 0
    assert_same_multi_seed(out, uninterrupted)


def test_a_full_disk_in_a_retrain_names_the_multi_seed_command(uninterrupted: Path, tmp_path: Path, monkeypatch,
                                                                capsys) -> None:
    out = tmp_path / "full-disk"
    with monkeypatch.context() as patch:
        no_space(patch, "checkpoint.pt", PHASES["seed-1 retrain"])
        assert run_cli(*MULTI, "--out", out) == 2
    failed = out / "seed-1" / "select" / "checkpoint.pt"
    assert capsys.readouterr().err.strip() == (f"gdas: error: cannot write {failed}: {FULL}; free space, then "
                                               f"continue with gdas search --resume {out}")
    assert not failed.exists() and not (out / "seed-1" / "select" / "metrics.jsonl").exists()
    assert run_cli("search", "--resume", out, "--no-progress", "--no-report") == 0
    assert_same_multi_seed(out, uninterrupted)


KINDS = {
    "search": [*SMOKE, "--epochs", "2"],
    "train": ["--preset", "smoke", "--no-progress", "--no-report", "--device", "cpu", "--batch", "8",
              "--synthetic-train", "16", "--synthetic-test", "8", "--valid-portion", "0.25", "--epochs", "2"],
    "search-rnn": ["--preset", "smoke", "--no-progress", "--no-report", "--epochs", "2"],
    "train-lm": ["--preset", "smoke", "--no-progress", "--no-report", "--epochs", "2"],
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_run_killed_before_its_first_checkpoint_resumes_from_its_beginning(kind: str, tmp_path: Path,
                                                                            monkeypatch, capsys) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert run_cli(kind, *KINDS[kind], "--out", full) == 0
    with monkeypatch.context() as patch:
        die_before_checkpoint(patch, 1)
        assert run_cli(kind, *KINDS[kind], "--out", killed) == 130
    capsys.readouterr()
    assert len((killed / "metrics.jsonl").read_text().splitlines()) == 1  # epoch 0's record, no checkpoint
    err = expect_error(capsys, kind, *KINDS[kind], "--out", killed,
                       contains=f"continue it with gdas {kind} --resume {killed} ")
    assert run_cli(*continue_command(err), "--no-progress", "--no-report") == 0
    assert_same_run(killed, full)
    assert len(list((killed / "tb").glob("events.out.tfevents.*"))) == 1  # the first attempt's events went too


def test_refusals_name_a_command_that_works(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = ["search", *SMOKE, "--epochs", "1"]
    assert run_cli(*args, "--out", run) == 0
    capsys.readouterr()
    expect_error(capsys, *args, "--out", run, contains="already holds a run (a finished search run: summary.json "
                                                       "exists); choose another --out")
    (run / "summary.json").unlink()  # as if killed after its last checkpoint
    # A run of another kind names its own command.
    expect_error(capsys, "train", *KINDS["train"], "--out", run, contains=f"gdas search --resume {run} ")
    expect_error(capsys, "train", "--resume", run, contains="not a train run; continue it with gdas search --resume")
    # A damaged checkpoint: removing it and continuing starts the run again.
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    err = expect_error(capsys, "search", "--resume", run, contains="remove it and continue with gdas search --resume")
    (run / "checkpoint.pt").unlink()
    command = err.split("continue with ", 1)[1].split(" (it starts again")[0].split()
    assert command == ["gdas", "search", "--resume", str(run)]
    assert run_cli(*command[1:], "--no-progress", "--no-report") == 0
    assert json.loads((run / "summary.json").read_text())["complete"]


def test_python_wording_of_the_commands_that_continue_a_run() -> None:
    from gdas.configs.base import python_wording
    from gdas.configs.search import SearchConfig

    cases = {
        "x; free space, then continue with gdas search --resume runs/x": "x; free space, then continue with "
                                                                         "gdas.search(out='runs/x', resume=True)",
        "continue it with gdas train --resume runs/t or choose another --out":
            "continue it with gdas.train(out='runs/t', resume=True) or choose another out",
        "resume it with gdas search-rnn --resume runs/r": "resume it with gdas search-rnn --resume runs/r",
        "interrupted; resume with --resume RUN_DIR": "interrupted; resume with resume=True",
    }
    for message, worded in cases.items():
        assert python_wording(message, [SearchConfig]) == worded
