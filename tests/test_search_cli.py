"""End-to-end tests of `gdas search` / `gdas draw` on the smoke preset, resume, multi-seed and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_helpers import expect_error, run_cli
from gdas.genotypes import Genotype, load_genotype
from gdas.engine.rundir import RunDir

SMOKE = ["--preset", "smoke", "--no-progress", "--no-report"]


def test_smoke_search_writes_a_complete_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli("search", *SMOKE, "--out", out) == 0
    printed = capsys.readouterr().out
    assert "genotype: normal:" in printed
    for name in ("config.json", "split.json", "metrics.jsonl", "alphas.jsonl", "genotypes.jsonl",
                 "genotype.json", "checkpoint.pt", "summary.json"):
        assert (out / name).is_file(), name
    assert list((out / "tb").glob("events.out.tfevents.*"))
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "search" and config["config"]["preset"] == "smoke"
    assert config["config"]["channels_last"] is (not torch.cuda.is_available())  # auto, resolved and recorded
    assert config["env"]["torch"] == torch.__version__
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [0, 1]
    assert metrics[0]["tau"] == pytest.approx(10.0) and metrics[1]["tau"] == pytest.approx(0.1)
    alphas = [json.loads(line) for line in (out / "alphas.jsonl").read_text().splitlines()]
    assert len(alphas[-1]["normal"]) == 14 and len(alphas[-1]["normal"][0]) == 8
    assert sum(alphas[-1]["normal"][0]) == pytest.approx(1.0, abs=1e-5)
    split = json.loads((out / "split.json").read_text())
    assert not set(split["train"]) & set(split["valid"])
    assert len(split["train"]) + len(split["valid"]) == 128
    genotype = load_genotype(out)
    assert isinstance(genotype, Genotype) and not genotype.fixed_reduction
    summary = json.loads((out / "summary.json").read_text())
    assert summary["genotype"] == str(genotype) and summary["complete"]


def test_version_prints_gdas_torch_and_device(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        run_cli("--version")
    assert exc.value.code == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("gdas ") and f"torch {torch.__version__}" in printed and "device " in printed


def test_python_dash_m_runs_the_real_cli(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "gdas", "search", *SMOKE, "--out", str(out), "--epochs", "1",
                           "--frc", "--no-channels-last"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert load_genotype(out).fixed_reduction
    assert json.loads((out / "config.json").read_text())["config"]["channels_last"] is False
    draw = subprocess.run([sys.executable, "-m", "gdas", "draw", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert draw.returncode == 0, draw.stderr
    assert (out / "cells" / "normal.dot").is_file() and (out / "cells" / "reduce.dot").is_file()


def _final_state(out: Path) -> tuple[torch.Tensor, str]:
    state = RunDir(out).load_checkpoint()
    return state["task"]["model"]["arch_normal"], (out / "genotype.json").read_text()


def test_killed_run_resumes_to_the_same_result(tmp_path: Path, monkeypatch, capsys) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    args = (*SMOKE, "--epochs", "3")
    assert run_cli("search", *args, "--out", full) == 0

    saves = {"n": 0}
    original = RunDir.save_checkpoint

    def save_then_die(self, state, name="checkpoint.pt"):
        original(self, state, name)
        saves["n"] += 1
        if saves["n"] == 2:  # killed right after the second epoch's checkpoint
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", save_then_die)
    assert run_cli("search", *args, "--out", killed) == 130
    monkeypatch.setattr(RunDir, "save_checkpoint", original)
    assert not (killed / "genotype.json").exists()
    # A metrics line of a half-finished epoch must not survive the resume.
    with open(killed / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"epoch": 2, "train_loss": 99.0}) + "\n")
    assert run_cli("search", "--resume", killed, "--no-progress") == 0

    arch_full, genotype_full = _final_state(full)
    arch_killed, genotype_killed = _final_state(killed)
    assert torch.equal(arch_full, arch_killed)
    assert genotype_full == genotype_killed
    epochs = [json.loads(line)["epoch"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]


def test_run_written_before_search_spaces_resumes_and_reports(tmp_path: Path, monkeypatch, capsys) -> None:
    """A run directory of the layout before search spaces (config.json without `space` / `w_nesterov`)."""
    full, old = tmp_path / "full", tmp_path / "old"
    args = (*SMOKE, "--epochs", "2")
    assert run_cli("search", *args, "--out", full) == 0
    original = RunDir.save_checkpoint

    def save_then_die(self, state, name="checkpoint.pt"):
        original(self, state, name)
        raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", save_then_die)
    assert run_cli("search", *args, "--out", old) == 130
    monkeypatch.setattr(RunDir, "save_checkpoint", original)
    stored = json.loads((old / "config.json").read_text())
    for field in ("space", "w_nesterov"):
        del stored["config"][field]
    (old / "config.json").write_text(json.dumps(stored))
    assert run_cli("search", "--resume", old, "--no-progress", "--no-report") == 0
    assert torch.equal(_final_state(full)[0], _final_state(old)[0])
    assert run_cli("report", old) == 0 and (old / "report.html").is_file()
    assert run_cli("train", "--preset", "smoke", "--genotype", old, "--out", tmp_path / "t", "--no-progress",
                   "--no-report", "--epochs", "1") == 0


def test_multi_seed_select_by_search_keeps_the_best_validation_accuracy(tmp_path: Path, capsys) -> None:
    out = tmp_path / "seeds"
    assert run_cli("search", *SMOKE, "--epochs", "1", "--seeds", "0", "1", "--select-by", "search", "--out", out) == 0
    table = json.loads((out / "seeds.json").read_text())
    accs = {row["seed"]: row["valid_acc"] for row in table["seeds"]}
    assert set(accs) == {0, 1}
    assert accs[table["best_seed"]] == max(accs.values())
    best_dir = out / f"seed-{table['best_seed']}"
    assert (out / "genotype.json").read_text() == (best_dir / "genotype.json").read_text()
    printed = capsys.readouterr().out
    assert f"kept seed {table['best_seed']} (best final search accuracy" in printed
    assert table["select_by"] == "search" and all(row["select_valid_acc"] is None for row in table["seeds"])
    assert not (best_dir / "select").exists()  # no retrain when selecting by the search accuracy


def test_bad_options_give_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    expect_error(capsys, "search", *SMOKE, "--batch-size", "0", "--out", tmp_path / "a", contains="--batch-size")
    expect_error(capsys, "search", *SMOKE, "--frc", "--C", "12", "--out", tmp_path / "b", contains="divisible by 8")
    expect_error(capsys, "search", "--preset", "cifar10", "--data-dir", tmp_path, "--out", tmp_path / "c",
                 contains="cifar-10-batches-py")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(SystemExit) as exc:  # argparse: unknown preset
        run_cli("search", "--preset", "nope")
    assert exc.value.code == 2


def test_existing_runs_are_never_overwritten(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli("search", *SMOKE, "--epochs", "1", "--out", out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    expect_error(capsys, "search", *SMOKE, "--out", out, contains="already holds a run")
    expect_error(capsys, "search", "--resume", out, "--no-progress", contains="already complete")
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert before == after


def test_bad_resume_directories(tmp_path: Path, capsys) -> None:
    expect_error(capsys, "search", "--resume", tmp_path / "missing", contains="not a directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_error(capsys, "search", "--resume", empty, contains="config.json is missing")

    out = tmp_path / "run"
    assert run_cli("search", *SMOKE, "--epochs", "2", "--out", out) == 0
    (out / "summary.json").unlink()  # pretend it was killed after its last checkpoint
    capsys.readouterr()
    expect_error(capsys, "search", "--resume", out, "--C", "16", contains="--C")
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    expect_error(capsys, "search", "--resume", out, contains="corrupt")
    assert (out / "checkpoint.pt").read_bytes() == b"not a checkpoint"

    other = tmp_path / "other"
    assert run_cli("search", *SMOKE, "--epochs", "1", "--C", "16", "--out", other) == 0
    (out / "checkpoint.pt").write_bytes((other / "checkpoint.pt").read_bytes())
    capsys.readouterr()
    expect_error(capsys, "search", "--resume", out, contains="does not fit")


def test_draw_errors(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    expect_error(capsys, "draw", bad, contains="malformed genotype JSON")
    expect_error(capsys, "draw", "NO_SUCH_CELL", contains="no genotype named")
    forward = tmp_path / "forward.json"
    forward.write_text(json.dumps({"normal": [[["sep_conv_3x3", 0], ["sep_conv_3x3", 5]]], "reduce": "FIXED"}))
    expect_error(capsys, "draw", forward, contains="earlier node")


@pytest.mark.parametrize("command", ["search", "search-rnn"])
def test_warmup_epochs_leave_a_unchanged_then_a_learns(tmp_path: Path, command: str, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli(command, *SMOKE, "--epochs", "3", "--warmup-epochs", "2", "--out", out) == 0
    alphas = [json.loads(line) for line in (out / "alphas.jsonl").read_text().splitlines()]
    names = [k for k, v in alphas[0].items() if isinstance(v, list) and k != "ops" and v]
    assert names
    for name in names:  # W-only epochs: softmax(A) is exactly A's initial one; the first A epoch moves it
        first, warm, learned = (torch.tensor(a[name]) for a in alphas)
        assert torch.equal(first, warm) and not torch.allclose(warm, learned)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m.get("warmup", False) for m in metrics] == [True, True, False]
    assert metrics[0]["tau"] == pytest.approx(10.0) and metrics[2]["tau"] == pytest.approx(0.1)  # tau unchanged
    assert all(0 < m["valid_loss"] < 1e4 for m in metrics)  # warm-up epochs still measure D_V
    expect_error(capsys, command, *SMOKE, "--epochs", "2", "--warmup-epochs", "2", "--out", tmp_path / "bad",
                 contains="--warmup-epochs")
