"""Multi-seed search as in the paper: one shared split, each seed's cell retrained on D_T and measured on D_V,
seeds side by side (--parallel) with the same result as one after another."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from cli_helpers import expect_error, run_cli

# One thread per process: the sequential and the parallel runs are then bit for bit comparable.
SMOKE = ["--preset", "smoke", "--no-progress", "--no-report", "--epochs", "1", "--threads", "1"]


def _read(path: Path):
    return json.loads(path.read_text())


def _arch(seed_dir: Path) -> list[torch.Tensor]:
    model = torch.load(seed_dir / "checkpoint.pt", map_location="cpu", weights_only=False)["task"]["model"]
    return [model[k] for k in sorted(model) if k.startswith("arch")]


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sel") / "seq"
    assert run_cli("search", *SMOKE, "--seeds", "0", "1", "--out", out) == 0
    return out


def test_seeds_share_one_split_and_a_single_run_keeps_its_own(sequential: Path, tmp_path: Path) -> None:
    splits = [_read(sequential / f"seed-{s}" / "split.json") for s in (0, 1)]
    assert splits[0] == splits[1] and splits[0]["seed"] == 0  # the first seed's split, for both
    configs = [_read(sequential / f"seed-{s}" / "config.json")["config"] for s in (0, 1)]
    assert [c["seed"] for c in configs] == [0, 1] and [c["split_seed"] for c in configs] == [0, 0]
    assert run_cli("search", *SMOKE, "--seed", "1", "--out", tmp_path / "one") == 0
    one = _read(tmp_path / "one" / "split.json")
    assert one["seed"] == 1 and one["train"] != splits[0]["train"]  # --seed 1 alone: its own split, as before
    assert run_cli("search", *SMOKE, "--seeds", "2", "3", "--split-seed", "1", "--select-by", "search",
                   "--out", tmp_path / "shared") == 0
    assert _read(tmp_path / "shared" / "seed-3" / "split.json")["train"] == one["train"]


def test_retrain_selection_trains_on_d_t_and_measures_on_d_v(sequential: Path) -> None:
    table = _read(sequential / "seeds.json")
    assert table["select_by"] == "retrain" and table["split_seed"] == 0 and table["select_epochs"] == 1
    for row in table["seeds"]:
        seed_dir = sequential / f"seed-{row['seed']}"
        select = seed_dir / "select"
        summary = _read(select / "summary.json")
        assert row["select_valid_acc"] == pytest.approx(1.0 - summary["final_valid_top1_err"])
        search_split = _read(seed_dir / "split.json")
        # each accuracy names the D_V images it was measured on: the retrain all of D_V, the search whole batches
        assert row["select_valid_images"] == summary["valid_images"] == len(search_split["valid"])
        assert row["valid_images"] == _read(seed_dir / "summary.json")["valid_images"] > 0
        assert _read(select / "split.json")["train"] == search_split["train"]  # trained on D_T
        assert _read(select / "split.json")["valid"] == search_split["valid"]  # measured on D_V
        assert _read(select / "genotype.json") == _read(seed_dir / "genotype.json")
        metrics = [json.loads(line) for line in (select / "metrics.jsonl").read_text().splitlines()]
        assert len(metrics) == 1 and not {"top1_err", "test_loss"} & set(metrics[0])  # never the test set
        assert summary["final_top1_err"] is None
        cfg = _read(select / "config.json")["config"]
        assert (cfg["C"], cfg["N"], cfg["epochs"], cfg["auxiliary"]) == (8, 1, 1, False)
        assert cfg["channels_last"] is True  # the search's `auto`, resolved as gdas train resolves it on the CPU
    accs = {row["seed"]: row["select_valid_acc"] for row in table["seeds"]}
    assert accs[table["best_seed"]] == max(accs.values())
    assert [row["kept"] for row in table["seeds"]] == [row["seed"] == table["best_seed"] for row in table["seeds"]]
    best_dir = sequential / f"seed-{table['best_seed']}"
    assert (sequential / "genotype.json").read_text() == (best_dir / "genotype.json").read_text()


def test_parallel_seeds_equal_sequential_ones(sequential: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "par"
    assert run_cli("search", *SMOKE, "--seeds", "0", "1", "--parallel", "2", "--out", out) == 0
    assert "kept seed" in capsys.readouterr().out
    for seed in (0, 1):
        a, b = sequential / f"seed-{seed}", out / f"seed-{seed}"
        assert _read(a / "genotype.json") == _read(b / "genotype.json")
        assert all(torch.equal(x, y) for x, y in zip(_arch(a), _arch(b)))
        assert _read(a / "split.json") == _read(b / "split.json")
    strip = ("dir", "wall_time_s", "select_wall_time_s")
    rows = [[{k: v for k, v in r.items() if k not in strip} for r in _read(d / "seeds.json")["seeds"]]
            for d in (sequential, out)]
    assert rows[0] == rows[1]


def test_an_interrupted_selection_resumes_to_the_same_result(sequential: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(sequential, out)
    (out / "seeds.json").unlink()
    (out / "seed-1" / "select" / "summary.json").unlink()  # killed after its last checkpoint
    shutil.rmtree(out / "seed-0" / "select")  # killed before its retrain started
    assert run_cli("search", "--resume", out, "--no-progress", "--no-report") == 0
    strip = ("dir", "wall_time_s", "select_wall_time_s")
    rows = [[{k: v for k, v in r.items() if k not in strip} for r in _read(d / "seeds.json")["seeds"]]
            for d in (sequential, out)]
    assert rows[0] == rows[1]


def test_report_shows_the_seed_selection(sequential: Path) -> None:
    assert run_cli("report", sequential) == 0
    html = (sequential / "report.html").read_text()
    part = html[html.index('id="seed-selection"'):html.index('id="run0"')]
    table = _read(sequential / "seeds.json")
    assert "best retrain on D_V (1 epochs" in part
    for row in table["seeds"]:
        assert f"{row['select_valid_acc']:.4g}" in part


def test_bad_selection_options(tmp_path: Path, capsys) -> None:
    expect_error(capsys, "search", *SMOKE, "--seeds", "0", "1", "--select-epochs", "0", "--out", tmp_path / "a",
                 contains="--select-epochs")
    expect_error(capsys, "search", *SMOKE, "--seeds", "0", "1", "--parallel", "3", "--out", tmp_path / "b",
                 contains="--parallel 3 is larger than the number of seeds (2)")
    expect_error(capsys, "search", *SMOKE, "--parallel", "2", "--out", tmp_path / "c", contains="--parallel")
    assert not any((tmp_path / n).exists() for n in "abc")
