"""End-to-end tests of the collapse guards (--max-skip, --stop-on-collapse) and of --cost through `gdas search`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from cli_helpers import expect_error, run_cli
from gdas.engine.rundir import RunDir
from gdas.genotypes import load_genotype
from gdas.guards import CollapseGuard
from gdas.reporting import plots
from gdas.reporting.report import write_report
from gdas.reporting.runview import load_run
from gdas.spaces import get_space
from gdas.spaces.darts import space as darts_space
from gdas.spaces.darts.derive import derive_cell

QUIET = ["--no-progress", "--no-report", "--threads", "1"]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("preset", ["smoke", "nb201-smoke"])
def test_a_large_cost_weight_derives_a_cheaper_network(tmp_path: Path, preset: str) -> None:
    """Same data and seed: LAMBDA=100 on the expected mult-adds gives a derived network with far fewer mult-adds."""
    costs = {}
    for weight in ("0", "100"):
        out = tmp_path / f"w{weight}"
        assert run_cli("search", "--preset", preset, *QUIET, "--out", out, "--epochs", "1", "--a-lr", "0.1",
                       "--cost", "mult-adds", "--cost-weight", weight) == 0
        metrics = _jsonl(out / "metrics.jsonl")
        summary = json.loads((out / "summary.json").read_text())
        space = get_space(summary["space"])
        real = space.info(load_genotype(out), "synthetic", summary["cost_size"]["C"], summary["cost_size"]["N"])
        assert summary["derived_cost"] == pytest.approx(real["mult_adds_M"]) == metrics[-1]["derived_cost"]
        assert metrics[-1]["expected_cost"] > 0
        costs[weight] = (summary["derived_cost"], metrics[-1]["expected_cost"])
    assert "curve_cost" in plots.curve_plots(load_run(out), None)  # the report plots both costs
    assert costs["100"][0] < 0.8 * costs["0"][0], costs
    assert costs["100"][1] < costs["0"][1], costs


def _fake_derivation(monkeypatch, names: list[str]) -> list[str]:
    """The darts space derives the published cells `names`, one per epoch (the last one from then on)."""
    calls: list[str] = []

    def derive(normal, reduce, steps=4, top_t=2, max_skip=None):
        calls.append(names[min(len(calls), len(names) - 1)])
        return load_genotype(calls[-1])

    monkeypatch.setattr(darts_space, "derive_genotype", derive)
    return calls


def test_stop_on_collapse_keeps_the_last_healthy_genotype_and_cannot_be_resumed(tmp_path: Path, monkeypatch,
                                                                                 capsys) -> None:
    # DARTS_V2's normal cell has 2 parameter-free ops, GDAS's 4 (its skips): collapsed from epoch 1 on.
    _fake_derivation(monkeypatch, ["DARTS_V2", "GDAS", "DARTS_V2", "GDAS", "GDAS", "GDAS"])
    out = tmp_path / "run"
    assert run_cli("search", "--preset", "smoke", *QUIET, "--out", out, "--epochs", "8", "--steps-per-epoch", "1",
                   "--stop-on-collapse", "3", "--collapse-patience", "2") == 0
    metrics = _jsonl(out / "metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [0, 1, 2, 3, 4]  # epoch 3 and 4 collapsed: stop after 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["stopped_early"]["epoch"] == 4
    assert summary["stopped_early"]["kept_epoch"] == 2
    assert "parameter-free" in summary["stopped_early"]["reason"]
    assert load_genotype(out) == load_genotype("DARTS_V2") and summary["genotype"] == str(load_genotype("DARTS_V2"))
    assert [(e["epoch"], e["guard"]) for e in summary["guards"]] == [(4, "stop-on-collapse")]
    expect_error(capsys, "search", "--resume", out, "--no-progress", contains="already complete")
    # The report: the stop and its reason, the events' table, the stop and the kept epoch on the plot.
    run = load_run(out)
    marks = plots.guard_marks(run)
    assert marks == {"max-skip": [], "stop-on-collapse": [4], "kept": [2]}
    page = write_report([out]).read_text()
    assert "Stopped early after epoch 4" in page and "stopped early: collapse" in page
    assert "<td>stop-on-collapse</td>" in page and "kept the genotype of epoch 2" in page
    fig = plots.parameter_free_plot({"normal": ([0, 1], [0.3, 0.4])}, {"normal": ([0, 1], [0.2, 0.5])},
                                    (0.5, 0.4), {**marks, "max-skip": [1]})
    labels = [line.get_label() for ax in fig.axes for line in ax.get_lines()]
    assert {"stopped: collapse", "genotype kept", "max-skip replaced skips"} <= set(labels)


def test_a_run_killed_at_its_stop_finishes_on_resume_without_more_epochs(tmp_path: Path, monkeypatch) -> None:
    _fake_derivation(monkeypatch, ["DARTS_V2", "GDAS"])
    out = tmp_path / "run"
    original = RunDir.save_checkpoint
    saves = {"n": 0}

    def save_then_die(self, state, name="checkpoint.pt"):
        original(self, state, name)
        saves["n"] += 1
        if saves["n"] == 2:  # killed right after the checkpoint of the epoch that stopped the search
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", save_then_die)
    assert run_cli("search", "--preset", "smoke", *QUIET, "--out", out, "--epochs", "6", "--steps-per-epoch", "1",
                   "--stop-on-collapse", "3") == 130
    monkeypatch.setattr(RunDir, "save_checkpoint", original)
    assert not (out / "summary.json").exists()
    assert run_cli("search", "--resume", out, "--no-progress", "--no-report") == 0
    assert [m["epoch"] for m in _jsonl(out / "metrics.jsonl")] == [0, 1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] == {"epoch": 1, "reason": summary["stopped_early"]["reason"], "kept_epoch": 0}
    assert load_genotype(out) == load_genotype("DARTS_V2")


def test_max_skip_is_recorded_per_epoch_and_in_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_cli("search", "--preset", "smoke", *QUIET, "--out", out, "--epochs", "1", "--steps-per-epoch", "1",
                   "--max-skip", "0") == 0
    genotype = load_genotype(out)
    assert "skip_connect" not in [op for op in genotype.cell_ops()["normal"]]
    record = _jsonl(out / "genotypes.jsonl")[-1]
    alphas = _jsonl(out / "alphas.jsonl")[-1]
    plain = derive_cell(torch.tensor(alphas["normal"]))  # A's own derivation, without the limit
    skips = [op for node in plain for op, _ in node].count("skip_connect")
    assert skips > 0 and record["max_skip_replaced"] == skips
    summary = json.loads((out / "summary.json").read_text())
    assert summary["max_skip"] == 0 and summary["max_skip_replaced"] == skips
    assert [(e["epoch"], e["guard"]) for e in summary["guards"]] == [(0, "max-skip")]
    assert f"had {skips} skip_connect ops (limit 0)" in summary["guards"][0]["why"]


class _Cells:
    """A stand-in genotype with a given number of parameter-free ops."""

    def __init__(self, free: int):
        self.free = free

    def param_free_count(self) -> int:
        return self.free

    def cell_ops(self) -> dict:
        return {"normal": ["skip_connect"] * self.free}

    def to_json(self) -> dict:
        return {"free": self.free}


@pytest.mark.parametrize("counts, patience, stop, kept", [
    ([1, 2, 3, 1, 3, 3, 3], 2, 5, 3),    # a single collapsed epoch is forgiven; two in a row stop
    ([1, 3, 3, 3], 3, 3, 0),
    ([3, 3], 1, 0, None),                # never healthy: stops at once, keeps the current genotype
    ([1, 2, 2, 1], 1, None, None),       # never collapses
])
def test_collapse_guard_streaks(counts, patience, stop, kept):
    cfg = type("Cfg", (), {"stop_on_collapse": 3, "collapse_patience": patience, "max_skip": None})()
    guard = CollapseGuard(cfg, get_space("darts"))
    for epoch, count in enumerate(counts):
        guard.observe(epoch, {}, _Cells(count))
        if guard.stop:
            break
    assert (guard.stopped or {}).get("epoch") == stop
    if stop is not None:
        assert guard.stopped["kept_epoch"] == kept
        assert guard.kept()["genotype"] == {"free": counts[stop if kept is None else kept]}
        restored = CollapseGuard(cfg, get_space("darts"))
        restored.load_state_dict(guard.state_dict())
        assert restored.stop and restored.summary() == guard.summary()


def test_bad_guard_and_cost_options_give_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    base = ["search", "--preset", "smoke", *QUIET]
    expect_error(capsys, *base, "--cost", "mult-adds", "--out", tmp_path / "a", contains="--cost-weight")
    expect_error(capsys, *base, "--cost", "params", "--cost-target", "3", "--out", tmp_path / "b",
                 contains="--cost-weight")
    expect_error(capsys, *base, "--cost", "params", "--cost-weight", "-1", "--out", tmp_path / "c",
                 contains="--cost-weight must be >= 0")
    expect_error(capsys, *base, "--cost-weight", "1", "--out", tmp_path / "d", contains="need --cost")
    expect_error(capsys, *base, "--max-skip", "-1", "--out", tmp_path / "e", contains="--max-skip")
    expect_error(capsys, *base, "--stop-on-collapse", "0", "--out", tmp_path / "f", contains="--stop-on-collapse")
    expect_error(capsys, *base, "--collapse-patience", "0", "--out", tmp_path / "g", contains="--collapse-patience")
    assert not any((tmp_path / name).exists() for name in "abcdefg")


def _skip_heavy(edges: int, ops: tuple[str, ...], skip: float = 0.9) -> torch.Tensor:
    """softmax(A) of a cell whose every edge leads with skip_connect; the rest spread unevenly (no ties)."""
    rest = torch.arange(1, len(ops) + 1, dtype=torch.float32).repeat(edges, 1) + torch.arange(edges)[:, None] / 10
    rest[:, ops.index("skip_connect")] = 0
    probs = (1 - skip) * rest / rest.sum(1, keepdim=True)
    probs[:, ops.index("skip_connect")] = skip
    return probs


@pytest.mark.parametrize("space_name", ["darts", "nb201"])
def test_the_max_skip_record_counts_the_limited_cell_alone(space_name: str) -> None:
    """darts: normal and reduce cells both all skips (8 + 8 kept edges) with --max-skip 2: the normal cell had 8,
    6 were replaced; the reduction cell is neither limited nor counted. nb201: its one cell of 6 edges."""
    from gdas.configs.search import SEARCH_PRESETS

    space = get_space(space_name)
    preset = SEARCH_PRESETS["smoke" if space_name == "darts" else "nb201-smoke"]
    cfg = dataclasses.replace(preset, max_skip=2, stop_on_collapse=20)
    edges = {"darts": 14, "nb201": 6}[space_name]
    probs = {name: _skip_heavy(edges, space.ops) for name in (("normal", "reduce") if space_name == "darts"
                                                                 else ("cell",))}
    raw = space.derive(probs, dataclasses.replace(cfg, max_skip=None))
    first, *others = raw.cell_ops().values()
    skips = first.count("skip_connect")
    assert skips == (8 if space_name == "darts" else 6)
    assert all(ops.count("skip_connect") == len(ops) for ops in others)  # darts: the reduction cell's 8 too
    guard = CollapseGuard(cfg, space)
    record = guard.observe(0, probs, space.derive(probs, cfg))
    assert record == {"max_skip_replaced": skips - 2}
    assert guard.current["raw_skips"] == skips
    cell = "normal cell" if space_name == "darts" else "cell"
    assert f"the derived {cell} had {skips} skip_connect ops (limit 2); the {skips - 2} least" in \
        guard.events[0]["why"]
    summary = guard.summary()
    assert summary["max_skip_replaced"] == skips - 2
    assert [e["why"] for e in summary["guards"]] == [guard.events[0]["why"]]
