"""Tests of latency wherever a cost is used: `--cost latency` in the A step and the run's records, `gdas info
--latency-table`, the exported model's latency, `gdas bench network`, and the bad-input lines."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

import gdas
from cli_helpers import expect_error, run_cli
from gdas.budget import Budget
from gdas.configs.search import SEARCH_PRESETS
from gdas.errors import GdasError
from gdas.flops import count_mult_adds
from gdas.genotypes import load_genotype
from gdas.latency import networks
from gdas.latency.build import build_table
from gdas.latency.table import load_table
from gdas.latency.timing import Timing
from gdas.reporting import plots
from gdas.reporting.runview import load_run
from gdas.spaces import get_space
from gdas.spaces.darts.genotype import random_genotype
from test_latency import _config, mult_adds_ms

SEARCH = ["search", "--preset", "smoke", "--no-progress", "--no-report", "--threads", "1"]


@pytest.fixture
def additive(monkeypatch):
    monkeypatch.setattr(networks, "module_ms", mult_adds_ms)


@pytest.fixture
def tables(additive, tmp_path):
    """Tables of the smoke presets' final networks (darts, nb201) on the clock that adds up, the darts one with a
    fitted scale of 1.5 and its fixed part and overhead apart from the entries."""
    darts = build_table(_config("darts"), str(tmp_path / "darts.json"), log=lambda _: None, progress=False)
    dataclasses.replace(darts, ops_scale=1.5, overhead_ms=0.5).save(tmp_path / "darts.json")
    build_table(_config("nb201"), str(tmp_path / "nb201.json"), log=lambda _: None, progress=False).save(
        tmp_path / "nb201.json")
    return tmp_path / "darts.json", tmp_path / "nb201.json"


def _by_hand(path: Path, logits: dict[str, torch.Tensor]) -> float:
    """The whole network's expected latency summed from the JSON: constant + scale x sum over places of the
    place's entries weighted by what darts derivation keeps there in expectation: the op shares of
    softmax(A[matrix, row]) without `none`, renormalised, times 2 / (inputs of the row's node)."""
    data = json.loads(path.read_text())
    none = data["ops"].index("none")
    node_inputs = [2 + i for i in range(4) for _ in range(2 + i)]  # rows 0-1: node 0 (2 inputs), 2-4: node 1, ...
    total = 0.0
    for place in data["places"]:
        p = torch.softmax(logits[place["matrix"]][place["row"]].double(), -1)
        p[none] = 0
        keep = 2 / node_inputs[place["row"]]
        total += keep * (p / p.sum() * torch.tensor(place["ms"], dtype=torch.float64)).sum().item()
    return data["fixed_ms"] + data["overhead_ms"] + data["ops_scale"] * total


def test_penalty_is_the_expected_latency_of_the_tables_network(tables):
    darts, _ = tables
    cfg = dataclasses.replace(SEARCH_PRESETS["smoke"], cost="latency", latency_table=str(darts), cost_weight=2.0)
    space = get_space("darts")
    model = space.build_supernet(cfg, 10, 3)
    with torch.no_grad():
        for logits in model.arch_logits().values():
            logits.normal_(0, 1, generator=torch.Generator().manual_seed(0))
    budget = Budget(cfg, space, model, torch.device("cpu"))
    assert (budget.C, budget.N) == (8, 1) != cfg.final_size  # the network the table was built for
    whole = _by_hand(darts, {k: v.detach() for k, v in model.arch_logits().items()})
    assert budget.expected_network().item() == pytest.approx(whole, rel=1e-5)
    assert budget.penalty().item() == pytest.approx(2.0 * whole, rel=1e-5)
    model.zero_grad()
    budget.penalty().backward()
    expected_grads = {name: logits.grad.clone() for name, logits in model.arch_logits().items()}
    # With a target, the hinge is the derived network's predicted latency; the gradient is the expected one's.
    derived = load_table(darts).predict_ms(space.choices(space.derive(model.probabilities(), cfg)))
    for target in (derived + 0.5, derived - 0.5):
        budget.cfg = dataclasses.replace(cfg, cost_target=target)
        model.zero_grad()
        penalty = budget.penalty()
        assert penalty.item() == pytest.approx(2.0 * max(0.0, derived - target), rel=1e-5)
        penalty.backward()
        for name, logits in model.arch_logits().items():
            assert torch.allclose(logits.grad, expected_grads[name] * (derived > target), atol=1e-7)
    budget.cfg = cfg
    model.zero_grad()
    budget.penalty().backward()
    for name, logits in model.arch_logits().items():  # towards cheap ops; `none` is never derived: no gradient
        assert logits.grad[:, space.ops.index("sep_conv_5x5")].min() > 0
        assert logits.grad[:, space.ops.index("max_pool_3x3")].max() < 0
        assert logits.grad[:, space.ops.index("none")].abs().max() < 1e-6


def test_the_expected_latency_at_a_uniform_a_is_the_mean_over_random_derived_networks(tables):
    """darts derives two inputs per node, each with an op other than `none`: at a uniform A the expected
    latency is the mean prediction of random derived genotypes (2,000 drawn), and raising `none` everywhere
    (which derivation never keeps) does not lower it."""
    darts, _ = tables
    cfg = dataclasses.replace(SEARCH_PRESETS["smoke"], cost="latency", latency_table=str(darts), cost_weight=1.0)
    space, table = get_space("darts"), load_table(darts)
    model = space.build_supernet(cfg, 10, 3)
    with torch.no_grad():
        for logits in model.arch_logits().values():
            logits.zero_()
    budget = Budget(cfg, space, model, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    mean = sum(table.predict_ms(space.choices(random_genotype(g))) for _ in range(2000)) / 2000
    assert budget.expected_network().item() == pytest.approx(mean, rel=0.01)
    uniform = budget.expected_network().item()
    with torch.no_grad():
        for logits in model.arch_logits().values():
            logits[:, space.ops.index("none")] = 20.0
    assert budget.expected_network().item() == pytest.approx(uniform, rel=1e-5)


def test_a_latency_search_logs_its_predictions_and_measures_the_derived_network(tables, tmp_path, capsys):
    darts, _ = tables
    table = load_table(darts)
    out = tmp_path / "run"
    assert run_cli(*SEARCH, "--cost", "latency", "--latency-table", darts, "--cost-weight", "0.01", "--cost-target",
                   f"{table.constant_ms + 1:.3f}", "--out", out) == 0
    printed = capsys.readouterr().out
    space = get_space("darts")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    genotypes = [json.loads(line) for line in (out / "genotypes.jsonl").read_text().splitlines()]
    for m, g in zip(metrics, genotypes):
        predicted = table.predict_ms(space.choices(space.from_json(g["genotype"])))
        assert m["derived_cost"] == pytest.approx(predicted)
        assert m["fixed_cost"] == pytest.approx(table.constant_ms)
        assert m["expected_network_cost"] == pytest.approx(m["fixed_cost"] + m["expected_cost"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cost"] == "latency" and summary["cost_size"]["C"] == 8 and summary["cost_size"]["N"] == 1
    genotype = space.from_json(summary["genotype_json"])
    # the clock adds up: measured = fixed + entries; the table predicts 0.5 + 0.5 x entries more
    measured = table.fixed_ms + table.sum_ms(space.choices(genotype))
    assert summary["derived_measured_ms"] == pytest.approx(measured)
    assert summary["derived_cost"] == pytest.approx(measured + 0.5 + 0.5 * table.sum_ms(space.choices(genotype)))
    assert "latency: predicted" in printed and f"measured {summary['derived_measured_ms']:.3f} ms" in printed
    assert set(plots.curve_keys(load_run(out).metric_keys(), "cost")) == {"expected_network_cost", "expected_cost",
                                                                          "derived_cost"}


def test_bad_latency_inputs_are_one_line_and_leave_no_run_folder(tables, tmp_path, capsys):
    darts, nb201 = tables
    out = tmp_path / "run"
    cost = ["--cost", "latency", "--cost-weight", "1", "--out", out]
    damaged = tmp_path / "damaged.json"
    damaged.write_text('{"format": "gdas-latency-table", "version": 1')
    fixed = load_table(darts).constant_ms
    cases = [
        (["--latency-table", tmp_path / "none.json"], "no such file"),
        (["--latency-table", damaged], "not a usable latency table"),
        (["--latency-table", nb201], "built for the nb201 space, not darts"),
        (["--latency-table", darts, "--dataset", "fashion-mnist"], "built for 3x32x32 images, 10 classes"),
        (["--latency-table", darts, "--steps", "3"], "another network"),
        (["--latency-table", darts, "--frc", "--C", "8"], "another network"),
        (["--latency-table", darts, "--cost-target", "0"], "--cost-target must be a latency above 0 ms"),
        (["--latency-table", darts, "--cost-target", "-2"], "--cost-target must be a latency above 0 ms"),
        (["--latency-table", darts, "--cost-target", f"{fixed / 2:.4f}"], "below the fixed part"),
        ([], "--cost latency needs --latency-table FILE"),
    ]
    for extra, message in cases:
        expect_error(capsys, *SEARCH, *cost, *extra, contains=message)
        assert not out.exists()
    expect_error(capsys, *SEARCH, "--latency-table", darts, "--out", out, contains="add --cost latency")
    with pytest.raises(GdasError, match="latency_table=FILE"):
        gdas.search("synthetic", preset="smoke", cost="latency", cost_weight=1.0, out=out)
    assert not out.exists()


def test_info_prints_the_tables_prediction_for_its_network(tables, capsys):
    darts, nb201 = tables
    table = load_table(darts)
    assert run_cli("info", "GDAS", "--latency-table", darts, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    genotype = load_genotype("GDAS")
    assert (info["C"], info["N"], info["input_size"], info["channels"], info["num_classes"]) == (8, 1, 32, 3, 10)
    assert info["latency_ms"] == pytest.approx(table.predict_ms(get_space("darts").choices(genotype)), abs=1e-4)
    assert run_cli("info", "GDAS", "--latency-table", darts) == 0
    assert f"latency:   {info['latency_ms']:.3f} ms predicted" in capsys.readouterr().out
    expect_error(capsys, "info", "GDAS", "--latency-table", darts, "--C", "16", contains="built for --C 8, not 16")
    expect_error(capsys, "info", "GDAS", "--latency-table", darts, "--dataset", "fashion-mnist",
                 contains="not 1x28x28 images")
    expect_error(capsys, "info", "GDAS", "--latency-table", nb201, contains="built for the nb201 space, not darts")
    expect_error(capsys, "info", "GDAS_FRC", "--latency-table", darts, contains="cells")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "smoke"
    assert run_cli("train", "--preset", "smoke", "--no-progress", "--no-report", "--batch", "8",
                   "--synthetic-train", "16", "--synthetic-test", "8", "--epochs", "1", "--out", out) == 0
    return out


def test_export_records_the_exported_models_latency_in_its_runtime(trained, tmp_path, monkeypatch, capsys):
    import gdas.export as export
    calls = []
    monkeypatch.setattr(export, "median_ms", lambda call, device, clock: calls.append(call()) or
                        Timing(1.25, 21, 0.1, True))
    assert run_cli("export", trained, "--format", "torchscript", "--out", tmp_path / "m.pt", "--threads", "1") == 0
    meta = json.loads((tmp_path / "m.pt.json").read_text())["latency"]
    assert (meta["ms"], meta["runtime"], meta["threads"], meta["batch"]) == (1.25, "torchscript", 1, 1)
    assert calls[0].shape == (1, 10)  # the exported model itself ran: logits of one image
    assert "latency: 1.250 ms in torchscript" in capsys.readouterr().out

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # no ONNX Runtime: the export is written all the same
    assert run_cli("export", trained, "--format", "onnx", "--out", tmp_path / "m.onnx") == 0
    meta = json.loads((tmp_path / "m.onnx.json").read_text())["latency"]
    assert meta["runtime"] == "onnxruntime" and "pip install 'gdas-nas[latency]'" in meta["error"]
    assert (tmp_path / "m.onnx").exists() and "latency: not measured" in capsys.readouterr().out
    assert run_cli("export", trained, "--format", "torchscript", "--out", tmp_path / "n.pt", "--no-latency") == 0
    assert "latency" not in json.loads((tmp_path / "n.pt.json").read_text())
    expect_error(capsys, "export", trained, "--out", tmp_path / "x.onnx", "--clock", "cpu", "--threads", "2",
                 contains="--clock cpu")
    assert not (tmp_path / "x.onnx").exists()


def test_bench_times_a_trained_network_end_to_end(trained, additive, capsys):
    assert run_cli("bench", "network", trained, "--threads", "1", "--batch", "2", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    model = get_space("darts").build_network(load_genotype(result["network"]["genotype"]), dataset="synthetic",
                                             C=8, N=1, num_classes=10)
    assert result["ms"] == pytest.approx(2 * count_mult_adds(model, (3, 32, 32)) / 1e6, rel=1e-3)
    assert result["input"] == [2, 3, 32, 32] and result["settings"]["batch"] == 2
    assert result["images_per_s"] == pytest.approx(2 / result["ms"] * 1000, rel=1e-2)
