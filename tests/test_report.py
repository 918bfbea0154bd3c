"""The HTML report and its plots: sections on a real smoke search, multi-seed, incomplete, training and bad input."""

from __future__ import annotations

import argparse
import base64
import json
import math
import re
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import expect_error

from gdas.reporting import plots, report
from gdas.cli.common import write_run_report
from gdas.cli.main import build_parser, main
from gdas.reporting.draw import dot_available
from gdas.errors import GdasError
from gdas.genotypes import REGISTRY, RNN_PRIMITIVES
from gdas.spaces.darts.ops import PRIMITIVES
from gdas.reporting.runview import edge_labels, load_run, load_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("results", "cells", "heatmaps", "trajectory", "entropy", "curves", "cost", "config", "environment")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `gdas search --preset smoke` run; the command writes its report at the end."""
    out = tmp_path_factory.mktemp("report") / "smoke"
    assert main(["search", "--preset", "smoke", "--no-progress", "--out", str(out)]) == 0
    return out


@pytest.fixture
def fast_render(monkeypatch: pytest.MonkeyPatch) -> None:
    """Figures are still built, only PNG encoding is skipped: for tests about the page's structure."""
    png = PNG_MAGIC + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 4, 3) + b"\x08\x02\x00\x00\x00"

    def render(fig, path=None):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
        return png
    monkeypatch.setattr(plots, "render", render)


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoint.pt", "tb", "plots", "report.html"))
    return dst


def images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# -- a real search run -----------------------------------------------------------------------------
def test_search_writes_a_self_contained_report(smoke_run: Path) -> None:
    html = (smoke_run / "report.html").read_text()
    for section in SECTIONS:
        assert f'id="run0-{section}"' in html, section
    summary = json.loads((smoke_run / "summary.json").read_text())
    config = json.loads((smoke_run / "config.json").read_text())
    assert summary["genotype"] in html and config["env"]["torch"] in html
    assert "INCOMPLETE" not in html and 'id="comparison"' not in html
    # Inlined PNGs, the same bytes as the files under plots/; nothing fetched from anywhere.
    inlined = images(html)
    saved = {p.name: p.read_bytes() for p in (smoke_run / "plots").glob("*.png")}
    assert {"heatmap_normal.png", "heatmap_reduce.png", "trajectory_normal.png", "entropy.png",
            "parameter_free.png", "curve_tau.png", "curve_loss.png", "curve_accuracy.png"} <= set(saved)
    assert sorted(inlined) == sorted(saved.values())
    assert all(min(png_size(data)) > 100 for data in inlined)
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<script" not in html and "url(" not in html
    if dot_available():
        assert html.count("<svg") == 2 and "normal cell" in html and "reduce cell" in html
    # The cost table: wall time from the summary, throughput averaged over the epochs.
    assert "images/s (mean over epochs)" in html and summary["device"] in html


def test_report_command_writes_where_asked(smoke_run: Path, tmp_path: Path, capsys, fast_render) -> None:
    out = tmp_path / "sub" / "r.html"
    assert main(["report", str(smoke_run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out}"
    assert 'id="run0-heatmaps"' in out.read_text()


# -- numbers behind the plots ---------------------------------------------------------------------
def test_entropy_and_parameter_free_share() -> None:
    uniform = np.full((3, 14, 8), 1 / 8)
    assert np.allclose(plots.entropy(uniform), math.log(8))
    collapsed = np.zeros((1, 14, 8))
    collapsed[..., PRIMITIVES.index("skip_connect")] = 1.0
    assert np.allclose(plots.entropy(collapsed), 0.0)
    assert plots.parameter_free_mass(collapsed, PRIMITIVES).tolist() == [1.0]
    assert plots.parameter_free_mass(uniform, PRIMITIVES) == pytest.approx([0.5] * 3)
    rnn = np.full((1, 36, 5), 0.2)
    assert plots.parameter_free_mass(rnn, RNN_PRIMITIVES) == pytest.approx([0.4])  # none + identity
    # GDAS_FRC's normal cell: 5 of its 8 ops are skip-connects; its reduction cell is fixed (not counted).
    assert plots.genotype_parameter_free_share(REGISTRY["GDAS_FRC"].to_json()) == {"normal": 5 / 8}
    assert plots.genotype_parameter_free_share(REGISTRY["GDAS_RNN"].to_json()) == {"recurrent": 3 / 8}


def test_edge_labels_follow_the_rows_of_a() -> None:
    cnn = edge_labels(14, recurrent=False)
    assert cnn[:3] == ["0→2", "1→2", "0→3"] and cnn[-1] == "4→5"
    rnn = edge_labels(36, recurrent=True)
    assert rnn[:3] == ["0→1", "0→2", "1→2"] and rnn[-1] == "7→8"
    assert edge_labels(4, recurrent=False) == ["0", "1", "2", "3"]  # no cell has 4 edges


# -- several runs ----------------------------------------------------------------------------------
def make_multiseed(smoke_run: Path, parent: Path, *, finished: bool = True) -> Path:
    for seed in (0, 1):
        copy_run(smoke_run, parent / f"seed-{seed}")
    summary_1 = json.loads((parent / "seed-1" / "summary.json").read_text())
    summary_1["final_valid_acc"] = 0.875
    (parent / "seed-1" / "summary.json").write_text(json.dumps(summary_1))
    config = json.loads((smoke_run / "config.json").read_text())["config"]
    (parent / "multiseed.json").write_text(json.dumps({"seeds": [0, 1, 2], "config": config}))
    if finished:
        rows = [{"seed": s, "valid_acc": v, "dir": f"/elsewhere/seed-{s}", "kept": s == 1}
                for s, v in ((0, 0.1), (1, 0.875))]
        (parent / "seeds.json").write_text(json.dumps({"best_seed": 1, "seeds": rows}))
    return parent


def test_multiseed_parent_compares_its_seeds(smoke_run: Path, tmp_path: Path, fast_render) -> None:
    parent = make_multiseed(smoke_run, tmp_path / "seeds")
    out = report.write_report([parent])
    assert out == parent / "report.html"
    html = out.read_text()
    table = html[html.index('id="comparison"'):html.index('id="seed-selection"')]
    rows = re.findall(r"<tr[ >].*?</tr>", table)
    assert len(rows) == 3  # header + 2 seeds
    assert "seeds/seed-1" in rows[2] and "class=kept" in rows[2] and "★ kept" in rows[2]
    assert "class=kept" not in rows[1] and "0.875" in rows[2] and "final_valid_acc" in rows[0]
    selection = re.findall(r"<tr[ >].*?</tr>", html[html.index('id="seed-selection"'):html.index('id="run0"')])
    assert len(selection) == 3 and "retrain valid acc" in selection[0]  # seeds.json rows: search accuracy only
    assert "class=kept" in selection[2] and "<td>1</td>" in selection[2] and "0.875" in selection[2]
    assert "best final search accuracy" in html
    assert "seed 2 has not started" in html  # listed in multiseed.json, never started
    assert html.count('class="badge kept"') == 1
    assert (parent / "plots" / "compare_valid_acc.png").exists()
    assert (parent / "seed-0" / "plots" / "heatmap_normal.png").exists()


def test_unfinished_multiseed_keeps_no_seed(smoke_run: Path, tmp_path: Path) -> None:
    parent = make_multiseed(smoke_run, tmp_path / "seeds", finished=False)
    runs, notes = load_runs([parent, parent / "seed-1"])  # a seed also named on its own is reported once
    assert [run.name for run in runs] == ["seeds/seed-0", "seeds/seed-1"]
    assert [run.kept for run in runs] == [None, None]
    assert any("no seed is kept yet" in note for note in notes)
    assert any("seed 2 has not started" in note for note in notes)


def test_killed_run_is_reported_as_incomplete(smoke_run: Path, tmp_path: Path, capsys, fast_render) -> None:
    run = copy_run(smoke_run, tmp_path / "killed")
    (run / "summary.json").unlink()
    (run / "genotype.json").unlink()
    metrics = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(metrics[: len(metrics.splitlines()[0]) + 30])  # torn second line
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    alert = html[html.index('id="incomplete"'):]
    assert "INCOMPLETE" in alert and "no summary.json" in alert and "metrics.jsonl ends in a torn line" in alert
    assert "INCOMPLETE (1/2 epochs)" in html and 'class="badge incomplete"' in html
    assert "derived after epoch 1" in html  # the cell of the last recorded epoch is drawn
    assert 'id="run0-heatmaps"' in html and 'id="run0-curves"' in html


def test_run_killed_before_its_first_epoch(smoke_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "early"
    run.mkdir()
    shutil.copy(smoke_run / "config.json", run / "config.json")
    html = report.write_report([run]).read_text()
    assert "INCOMPLETE (0/2 epochs)" in html and "No genotype recorded yet" in html
    assert "metrics.jsonl is empty" in html and not images(html)


# -- other kinds of run (hand-written in the formats those tasks write) ------------------------------
def write_run(path: Path, kind: str, config: dict, metrics: list[dict], summary: dict | None = None,
              alphas: list[dict] = ()) -> Path:
    path.mkdir(parents=True)
    env = {"torch": "2.x", "device": "cpu"}
    (path / "config.json").write_text(json.dumps({"kind": kind, "config": config, "env": env}))
    (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if alphas:
        (path / "alphas.jsonl").write_text("".join(json.dumps(a) + "\n" for a in alphas))
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary))
    return path


# A run from before validation parts (best picked on test), and one with a validation part.
_OLD_BEST = {"best_top1_err": 38.0}
_VALID_BEST = {"best_epoch": 1, "best_valid_top1_err": 35.0, "best_test_top1_err": 38.0}


@pytest.mark.parametrize("best", [_OLD_BEST, _VALID_BEST], ids=["old-summary", "valid-summary"])
def test_training_run_shows_error_params_and_mult_adds(tmp_path: Path, fast_render, best) -> None:
    metrics = [{"epoch": e, "train_loss": 2 - e / 2, "train_acc": 0.3 + e / 10, "test_loss": 2.1 - e / 3,
                "top1_err": 60 - 10 * e, "top5_err": 20 - 5 * e, "lr": 0.025, "epoch_time_s": 1.0,
                "wall_time_s": 1.0 + e} for e in range(3)]
    summary = {"kind": "train", "params_M": 3.31, "mult_adds_M": 519.0, **best,
               "final_top1_err": 40.0, "wall_time_s": 3.0, "device": "cpu", "complete": True}
    run = write_run(tmp_path / "train", "train", {"genotype": "GDAS", "epochs": 3}, metrics, summary)
    html = report.write_report([run]).read_text()
    results = html[html.index('id="run0-results"'):html.index('id="run0-cells"')]
    for text in ("params_M", "3.31", "mult_adds_M", "519", "final_top1_err", "complete (3/3 epochs)", *best):
        assert text in results, text
    assert all(results.index("final_top1_err") < results.index(key) for key in best)  # the test headline first
    assert str(REGISTRY["GDAS"]) in html and "from the config: GDAS" in html
    assert 'id="run0-heatmaps"' not in html and ">Cost<" in html
    names = {p.name for p in (run / "plots").glob("*.png")}
    assert {"curve_error.png", "curve_loss.png", "curve_accuracy.png", "curve_lr.png"} <= names


def test_recurrent_search_run_gets_its_cell_plots(tmp_path: Path, fast_render) -> None:
    rng = np.random.default_rng(0)
    alphas = []
    for epoch in range(2):
        probs = rng.dirichlet(np.ones(5), size=36)
        alphas.append({"epoch": epoch, "tau": 10.0, "ops": list(RNN_PRIMITIVES), "recurrent": probs.tolist()})
    metrics = [{"epoch": e, "tau": 10.0, "train_ppl": 900.0, "valid_ppl": 800.0 - e, "tokens_per_s": 10.0}
               for e in range(2)]
    summary = {"kind": "search-rnn", "genotype_json": REGISTRY["GDAS_RNN"].to_json(), "final_valid_ppl": 799.0,
               "wall_time_s": 2.0, "device": "cpu", "complete": True}
    run = write_run(tmp_path / "rnn", "search-rnn", {"epochs": 2}, metrics, summary, alphas)
    assert load_run(run).ops() == RNN_PRIMITIVES
    html = report.write_report([run]).read_text()
    assert str(REGISTRY["GDAS_RNN"]) in html and "tokens/s (mean over epochs)" in html
    names = {p.name for p in (run / "plots").glob("*.png")}
    assert {"heatmap_recurrent.png", "edges_recurrent.png", "parameter_free.png", "curve_perplexity.png"} <= names


def test_cells_fall_back_to_text_without_graphviz(smoke_run: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "")
    html = report._cells("run0", REGISTRY["GDAS"], "")
    assert "<svg" not in html and 'id="run0-cells-fallback"' in html and "apt-get install graphviz" in html
    assert str(REGISTRY["GDAS"]) in html and html.count("digraph") == 2


# -- bad input --------------------------------------------------------------------------------------
def test_bad_directories_give_one_line(smoke_run: Path, tmp_path: Path, capsys) -> None:
    expect_error(capsys, "report", tmp_path, contains="is not a gdas run directory")
    expect_error(capsys, "report", tmp_path / "nowhere", contains="does not exist")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{not json")
    expect_error(capsys, "report", damaged, contains="not valid JSON")
    other = copy_run(smoke_run, tmp_path / "other")
    stored = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**stored, "kind": "train"}))
    expect_error(capsys, "report", smoke_run, other, contains="cannot report runs of different kinds together")


def test_missing_matplotlib_is_a_one_line_error_and_a_warning_after_a_run(smoke_run: Path, tmp_path: Path,
                                                                          monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(GdasError, match=r"pip install matplotlib"):
        report.write_report([smoke_run], tmp_path / "r.html")
    args = argparse.Namespace(no_report=False)
    assert write_run_report(args, [smoke_run]) is None
    err = capsys.readouterr().err.strip()
    assert err.startswith("gdas: warning: no report written") and len(err.splitlines()) == 1


def test_no_report_option(tmp_path: Path) -> None:
    args = build_parser().parse_args(["search", "--preset", "smoke", "--no-report"])
    assert args.no_report
    assert write_run_report(args, [tmp_path]) is None and not (tmp_path / "report.html").exists()


def test_report_out_may_be_a_folder_but_not_unwritable(smoke_run: Path, tmp_path: Path, capsys,
                                                        fast_render) -> None:
    assert report.write_report([smoke_run], tmp_path) == tmp_path / "report.html"
    blocker = tmp_path / "file"
    blocker.write_text("")
    expect_error(capsys, "report", smoke_run, "--out", blocker / "r.html", contains="cannot write the report")
