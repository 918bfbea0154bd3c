"""Distributed resume: a 2-process run whose rank 1 dies, resumed by hand (--resume) or by torchrun's own restart
(--max-restarts with --auto-resume), ends bit-identical on every rank to an uninterrupted run, for `gdas search`
and `gdas train`.

Run as a script under torchrun, this file is also the per-rank entry point: the real CLI, with rank 1 killed
(SIGKILL) right after the checkpoint of the epoch GDAS_TEST_DIE_AFTER names (with GDAS_TEST_DIE_ONCE only on
torchrun's first attempt), and every rank's final state dumped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from cli_helpers import expect_error, launch_two_ranks, run_cli

from gdas.engine.rundir import RunDir

# Augmentation on (the smoke presets' crop, flip and cutout): each rank's own draws must survive the resume.
SEARCH = ["search", "--preset", "smoke", "--no-progress", "--no-report", "--threads", "1", "--epochs", "4"]
TRAIN = ["train", "--preset", "smoke", "--no-progress", "--no-report", "--device", "cpu", "--threads", "1",
         "--batch-size", "8", "--synthetic-train", "32", "--synthetic-test", "8", "--valid-portion", "0.25",
         "--epochs", "4"]
COMMANDS = {"search": SEARCH, "train": TRAIN}
TIMING = {"epoch_time_s", "wall_time_s", "images_per_s", "search_cost_device_hours"}


def _launch(argv: list[Any], dumps: Path, **kwargs: Any) -> subprocess.CompletedProcess:
    return launch_two_ranks(__file__, dumps, *argv, **kwargs)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """One uninterrupted 2-process run of each command: (run directory, dumps), started on first use."""
    class Runs(dict):
        def __missing__(self, command: str) -> tuple[Path, Path]:
            root = tmp_path_factory.mktemp(f"full-{command}")
            proc = _launch([*COMMANDS[command], "--out", root / "run"], root / "dumps")
            assert proc.returncode == 0, proc.stderr[-3000:]
            self[command] = (root / "run", root / "dumps")
            return self[command]

    return Runs()


def _assert_same_run(command: str, got: tuple[Path, Path], want: tuple[Path, Path]) -> None:
    """Every rank's weights, A, BN statistics, generators and RNG, and the run's records, bit for bit."""
    for rank in (0, 1):
        a, b = (torch.load(d / f"rank{rank}.pt", weights_only=False) for d in (got[1], want[1]))
        assert a["model"].keys() == b["model"].keys()
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), (rank, key)
        assert torch.equal(a["aug_gen"], b["aug_gen"]) and torch.equal(a["torch_rng"], b["torch_rng"]), rank
        timeless = [{k: v for k, v in d["summary"].items() if k not in TIMING} for d in (a, b)]
        assert timeless[0] == timeless[1], rank
    files = ["metrics.jsonl"] + (["alphas.jsonl", "genotypes.jsonl"] if command == "search" else [])
    for name in files:
        records = [[{k: v for k, v in json.loads(line).items() if k not in TIMING}
                    for line in (run / name).read_text().splitlines()] for run in (got[0], want[0])]
        assert [r["epoch"] for r in records[0]] == [0, 1, 2, 3]
        assert records[0] == records[1], name


@pytest.mark.parametrize("command", ["search", "train"])
def test_rank_killed_then_resumed_continues_the_same_run(command: str, tmp_path: Path, uninterrupted,
                                                         capsys) -> None:
    out, dumps = tmp_path / "run", tmp_path / "dumps"
    killed = _launch([*COMMANDS[command], "--out", out], dumps, env={"GDAS_TEST_DIE_AFTER": "1"})
    assert killed.returncode != 0 and not (out / "summary.json").exists()
    state = RunDir(out).load_checkpoint()
    assert state["epoch"] == 1 and state["world_size"] == 2
    aug = [rank["task"]["data"]["aug_gen"] for rank in state["ranks"]]
    assert not torch.equal(aug[0], aug[1])  # the per-rank part really differs: losing rank 1's would show
    if command == "search":  # on another number of processes it resumes, saying it is another computation
        shutil.copytree(out, tmp_path / "one")
        assert run_cli(*SEARCH, "--resume", tmp_path / "one") == 0
        assert "checkpointed by 2 process(es) and resumes on 1" in capsys.readouterr().err
    resumed = _launch([*COMMANDS[command], "--resume", out], dumps)  # the same options: allowed on resume
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "gdas: warning" not in resumed.stderr
    _assert_same_run(command, (out, dumps), uninterrupted[command])


def test_torchrun_restart_auto_resumes_its_own_run(tmp_path: Path, uninterrupted) -> None:
    out, dumps = tmp_path / "run", tmp_path / "dumps"
    proc = _launch([*SEARCH, "--out", out, "--auto-resume"], dumps, torchrun=["--max-restarts", "1"],
                   env={"GDAS_TEST_DIE_AFTER": "1", "GDAS_TEST_DIE_ONCE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epochs 2..3" in proc.stdout  # the restarted group continued after the last checkpoint
    _assert_same_run("search", (out, dumps), uninterrupted["search"])


def test_auto_resume_refuses_another_config_and_skips_a_finished_run(capsys, uninterrupted) -> None:
    run = uninterrupted["train"][0]
    assert run_cli(*TRAIN, "--out", run, "--auto-resume") == 0
    assert "already complete" in capsys.readouterr().out
    expect_error(capsys, *TRAIN, "--out", run, "--auto-resume", "--C", "4", contains="--C")
    expect_error(capsys, *TRAIN, "--out", run, "--auto-resume", "--resume", run, contains="exclude")
    expect_error(capsys, *TRAIN, "--auto-resume", contains="needs --out")
    expect_error(capsys, *SEARCH, "--out", run, "--auto-resume", contains="not a search run")


def test_auto_resume_starts_new_and_restarts_a_run_without_checkpoint(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "run"
    original = RunDir.save_checkpoint

    def die_before_first(self, state, name="checkpoint.pt"):
        raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", die_before_first)
    assert run_cli(*SEARCH, "--epochs", "2", "--out", out, "--auto-resume") == 130
    assert (out / "config.json").exists() and not (out / "checkpoint.pt").exists()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # epoch 0 was recorded, not checkpointed
    monkeypatch.setattr(RunDir, "save_checkpoint", original)
    assert run_cli(*SEARCH, "--epochs", "2", "--out", out, "--auto-resume") == 0
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1] and (out / "summary.json").exists()
    capsys.readouterr()
    fresh = tmp_path / "fresh"
    assert run_cli(*SEARCH, "--epochs", "2", "--out", fresh) == 0
    model = [RunDir(d).load_checkpoint()["task"]["model"] for d in (out, fresh)]
    assert all(torch.equal(model[0][k], model[1][k]) for k in model[0])


def test_auto_resume_of_a_multi_seed_search(tmp_path: Path, capsys) -> None:
    out, args = tmp_path / "seeds", [*SEARCH, "--epochs", "1", "--seeds", "0", "1", "--auto-resume"]
    assert run_cli(*args, "--out", out) == 0
    assert (out / "seeds.json").exists()
    capsys.readouterr()
    assert run_cli(*args, "--out", out) == 0
    assert "already complete (seeds.json exists)" in capsys.readouterr().out
    expect_error(capsys, *args[:-4], "--seeds", "0", "--auto-resume", "--out", out, contains="--seeds")
    expect_error(capsys, *args[:-4], "--auto-resume", "--out", out, contains="multi-seed")
    expect_error(capsys, *args, "--out", out / "seed-0", contains="single search")


def _rank_main(dumps: Path, argv: list[str]) -> int:
    from gdas.cli.main import main
    from gdas.engine import distributed as dist
    from gdas.search import SearchTask
    from gdas.train import TrainTask

    die_after = int(os.environ.get("GDAS_TEST_DIE_AFTER", "-1"))
    if os.environ.get("GDAS_TEST_DIE_ONCE") and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        die_after = -1
    save = RunDir.save_checkpoint

    def save_then_die(self: RunDir, state: dict, name: str = "checkpoint.pt") -> None:
        save(self, state, name)
        if name == "checkpoint.pt" and state["epoch"] == die_after:
            ctx = dist.context()
            dist.barrier(ctx)  # rank 0 has written this checkpoint
            if ctx.rank == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    def dumping(finish):
        def finish_and_dump(self, run: RunDir, wall_time_s: float) -> dict:
            summary = finish(self, run, wall_time_s)
            dumps.mkdir(parents=True, exist_ok=True)
            torch.save({"model": {k: v.cpu() for k, v in self.model.state_dict().items()}, "summary": summary,
                        "aug_gen": self.data.aug_gen.get_state(), "torch_rng": torch.get_rng_state()},
                       dumps / f"rank{self.ctx.rank}.pt")
            return summary
        return finish_and_dump

    RunDir.save_checkpoint = save_then_die  # type: ignore[method-assign]
    SearchTask.finish = dumping(SearchTask.finish)  # type: ignore[method-assign]
    TrainTask.finish = dumping(TrainTask.finish)  # type: ignore[method-assign]
    return main(argv)


if __name__ == "__main__":
    raise SystemExit(_rank_main(Path(sys.argv[1]), sys.argv[2:]))
