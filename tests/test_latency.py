"""Tests of latency tables: each space's places against its real networks, the table's prediction and fit on a
clock that adds up exactly, the stable median, reading tables, and `gdas latency build|check`."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
import torch
from torch import nn

from cli_helpers import expect_error, run_cli
from gdas.configs.latency import LatencyConfig
from gdas.configs.search import SEARCH_PRESETS
from gdas.errors import GdasError
from gdas.export import onnx_bytes
from gdas.flops import count_mult_adds
from gdas.latency import networks, timing
from gdas.latency.build import build_table, calibrate
from gdas.latency.check import check_table, mape, ranks, spearman
from gdas.latency.networks import random_genotypes
from gdas.latency.table import load_table
from gdas.latency.timing import Settings, Timing, median_ms
from gdas.spaces import get_space
from gdas.spaces.darts.genotype import random_genotype
from gdas.spaces.darts.networks import Cell
from gdas.spaces.darts.ops import make_op
from gdas.spaces.nb201.networks import NB201Cell
from latency_helpers import modules_run, picked_modules

CELL_MODULES = {"darts": (Cell, "ops"), "nb201": (NB201Cell, "layers")}  # where each final network keeps its ops


def mult_adds_ms(module: nn.Module, input_shape, settings: Settings, to_onnx=None, **_) -> Timing:
    """A clock that adds up exactly: a module's "latency" is its multiply-adds (millions) per batch."""
    return Timing(settings.batch * count_mult_adds(module, tuple(input_shape)) / 1e6, 21, 0.0, True)


@pytest.fixture
def additive(monkeypatch):
    monkeypatch.setattr(networks, "module_ms", mult_adds_ms)


def _config(space: str, **fields) -> LatencyConfig:
    return LatencyConfig(space=space, preset="smoke" if space == "darts" else "nb201-smoke", threads=1,
                         **{"calibration": 2, **fields})


def _genotype(space: str, seed: int):
    cfg = SEARCH_PRESETS["smoke" if space == "darts" else "nb201-smoke"]
    if space == "darts":
        return random_genotype(torch.Generator().manual_seed(seed), cfg.steps)
    layout = get_space(space).layout(cfg, "synthetic", 8, 1)
    return random_genotypes(get_space(space), cfg, layout.shapes(get_space(space).ops), 1, seed)[0]


@pytest.mark.parametrize("space_name, frc, shape", [("darts", False, None), ("darts", True, (1, 28, 5)),
                                                    ("nb201", False, None), ("nb201", False, (3, 20, 4))])
def test_places_are_the_ops_the_final_network_runs(space_name, frc, shape):
    """The places a genotype's choices pick are, op module by op module and input shape by input shape, what its
    real final network runs in its cells (forward hooks); the free network runs none of them."""
    space = get_space(space_name)
    cfg = dataclasses.replace(SEARCH_PRESETS["smoke" if space_name == "darts" else "nb201-smoke"], frc=frc)
    layout = space.layout(cfg, "synthetic", 8, 2, shape=shape)
    channels, side, classes = shape or (3, 32, 10)
    assert layout.input_shape == (channels, side, side)
    for seed in range(3):
        if space_name == "darts":
            genotype = random_genotype(torch.Generator().manual_seed(seed), cfg.steps, fixed_reduction=frc)
        else:
            genotype = random_genotypes(space, cfg, layout.shapes(space.ops), 1, seed)[0]
        choices = space.choices(genotype)
        assert {name: tuple(c.shape) for name, c in choices.items()} == \
            {name: (rows, len(space.ops)) for name, rows in layout.matrices().items()}
        network = space.build_network(genotype, dataset="synthetic", C=8, N=2, num_classes=classes,
                                      in_channels=channels).eval()
        kind, attribute = CELL_MODULES[space_name]
        ops = [op for cell in network.modules() if isinstance(cell, kind) for op in getattr(cell, attribute)]
        assert modules_run(network, ops, torch.zeros(1, channels, side, side)) == \
            picked_modules(layout, choices, space.ops)
    free = layout.free_network().eval()
    with torch.no_grad():
        assert free(torch.zeros(1, channels, side, side)).shape == (1, classes)


@pytest.mark.parametrize("space_name", ["darts", "nb201"])
def test_a_latency_that_adds_up_is_predicted_exactly(additive, space_name):
    """On a clock that adds up (mult-adds), the table's entries and fixed part are the space's own mult-add
    counts, the fit finds nothing to correct, and every random network is predicted exactly."""
    space = get_space(space_name)
    table = build_table(_config(space_name), "t.json", log=lambda _: None, progress=False)
    cfg = SEARCH_PRESETS["smoke" if space_name == "darts" else "nb201-smoke"]
    assert table.size == (8, 1) and table.shape == (3, 32, 10)
    bias_adds = 10 / 1e6 if space_name == "nb201" else 0.0  # NB201 counts its classifier's 10 bias additions too
    assert table.fixed_ms == pytest.approx(space.fixed_cost(cfg, "synthetic", 8, 1, "mult-adds") - bias_adds,
                                           rel=1e-6)
    counted = space.op_costs(cfg, "synthetic", 8, 1, "mult-adds")
    assert set(table.costs()) == set(counted)
    for name, cost in table.costs().items():
        assert torch.allclose(cost, counted[name], rtol=1e-5, atol=1e-9)
    assert table.ops_scale == pytest.approx(1.0) and table.overhead_ms == 0.0
    result = check_table(table, 4, seed=5, log=lambda _: None, progress=False)
    assert result["samples"] == 4 and result["mape_percent"] == pytest.approx(0.0, abs=1e-6)
    assert result["spearman"] == pytest.approx(1.0)
    calibrated = {n["genotype"] for n in table.calibration["networks"]}
    assert len(calibrated) == 2 and not calibrated & {n["genotype"] for n in result["networks"]}


@pytest.mark.parametrize("fit, overhead, scale", [("scale", 0.0, 1.25), ("overhead", None, 1.0), ("none", 0.0, 1.0)])
def test_the_fit_corrects_what_ops_timed_alone_miss(monkeypatch, fit, overhead, scale):
    """Ops that run 1.25x slower inside a network than alone: the plain sum misses it, `scale` (fitted on the
    calibration networks) recovers 1.25 and predicts other networks exactly, `overhead` adds a constant."""
    def slower_inside(module, input_shape, settings, to_onnx=None, **_):
        ms = mult_adds_ms(module, input_shape, settings).ms
        with torch.no_grad():
            whole = module.eval()(torch.zeros(1, *input_shape)).dim() == 2  # a network gives logits
        return Timing(ms if whole else ms / 1.25, 21, 0.0, True)

    monkeypatch.setattr(networks, "module_ms", slower_inside)
    space = get_space("darts")
    table = build_table(_config("darts", calibration=0), "t.json", log=lambda _: None, progress=False)
    table = calibrate(table, space, SEARCH_PRESETS["smoke"], 3, seed=0, fit=fit, log=lambda _: None)
    assert table.ops_scale == pytest.approx(scale) and table.calibration["fit"] == fit
    result = check_table(table, 3, seed=9, log=lambda _: None, progress=False)
    assert result["plain_mape_percent"] > 5
    if fit == "scale":
        assert table.overhead_ms == 0.0 and result["mape_percent"] == pytest.approx(0.0, abs=1e-6)
    elif fit == "overhead":
        residuals = [n["measured_ms"] - n["fixed_ms"] - n["ops_ms"] for n in table.calibration["networks"]]
        assert table.overhead_ms == pytest.approx(sorted(residuals)[1]) and table.overhead_ms > 0
        assert result["mape_percent"] < result["plain_mape_percent"]
    else:
        assert table.overhead_ms == overhead and result["mape_percent"] == result["plain_mape_percent"]


def test_a_table_round_trips_and_predicts_from_its_entries(additive, tmp_path):
    """Written and read back, a table predicts the same; the prediction is its constant plus the scaled
    entries a genotype's edges pick, summed here by hand from the JSON places."""
    table = build_table(_config("darts"), str(tmp_path / "t.json"), log=lambda _: None, progress=False)
    table = dataclasses.replace(table, ops_scale=1.5, overhead_ms=0.25)
    table.save(tmp_path / "t.json")
    again = load_table(tmp_path / "t.json")
    genotype = _genotype("darts", 4)
    data = json.loads((tmp_path / "t.json").read_text())
    ops = data["ops"]
    by_hand = 0.0
    for place in data["places"]:
        nodes = genotype.normal if place["matrix"] == "normal" else genotype.reduce
        for i, node in enumerate(nodes):
            start = sum(2 + k for k in range(i))
            by_hand += sum(place["ms"][ops.index(op)] for op, src in node if start + src == place["row"])
    expected = data["fixed_ms"] + 0.25 + 1.5 * by_hand
    choices = get_space("darts").choices(genotype)
    assert again.predict_ms(choices) == pytest.approx(expected) == pytest.approx(table.predict_ms(choices))
    assert again.describe() == table.describe() and again.settings == table.settings


def _fake_clock(monkeypatch, durations):
    """The "cpu" clock advanced by each call's duration (ms) from `durations`; returns the call."""
    now = [0.0]
    monkeypatch.setitem(timing.CLOCKS, "cpu", lambda: now[0])
    it = iter(durations)

    def call():
        now[0] += next(it) / 1000

    return call


def test_the_median_settles_or_says_it_did_not(monkeypatch):
    """Constant 2 ms calls: one call per sample, stable after the minimum; 0.1 ms calls: blocks of 10 calls
    divided by 10; a call that keeps slowing down never settles and stops at the sample cap."""
    call = _fake_clock(monkeypatch, iter(lambda: 2.0, None))
    result = median_ms(call, clock="cpu", min_samples=21, warmup_s=0)
    assert (result.ms, result.samples, result.stable) == (pytest.approx(2.0), 21, True)
    call = _fake_clock(monkeypatch, iter(lambda: 0.1, None))
    assert median_ms(call, clock="cpu", min_samples=5, warmup_s=0).ms == pytest.approx(0.1)
    slowing = (1.0 * 1.05 ** n for n in range(10_000))
    result = median_ms(_fake_clock(monkeypatch, slowing), clock="cpu", min_samples=5, max_samples=30, warmup_s=0)
    assert result.samples == 30 and not result.stable


def test_rank_correlation_and_percentage_error_by_hand():
    assert ranks([3.0, 1.0, 2.0, 2.0]) == [4.0, 1.0, 2.5, 2.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = rank differences (0, 0, 1, -1): 1 - 6 * 2 / (4 * 15)
    assert spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert mape([11, 9], [10, 10]) == pytest.approx(10.0)


@pytest.mark.parametrize("content, why", [(None, "no such file"), ("{not json", "not JSON"),
                                          ('{"format": "other"}', 'no "format"'),
                                          ("negative", "one latency >= 0 per op"),
                                          ("version", "this gdas reads up to 1")])
def test_a_missing_or_damaged_table_is_one_line(additive, tmp_path, content, why):
    path = tmp_path / "t.json"
    if content in ("negative", "version"):
        build_table(_config("nb201", calibration=0), str(path), log=lambda _: None, progress=False).save(path)
        data = json.loads(path.read_text())
        if content == "negative":
            data["places"][3]["ms"][2] = -1.0
        else:
            data["version"] = 99
        content = json.dumps(data)
    if content is not None:
        path.write_text(content)
    with pytest.raises(GdasError, match=why) as error:
        load_table(path)
    assert "\n" not in str(error.value)


def test_build_and_check_from_the_command_line(additive, tmp_path, capsys):
    out = tmp_path / "nb201.json"
    assert run_cli("latency", "build", "--space", "nb201", "--preset", "demo", "--threads", "1", "--calibration",
                   "2", "--no-progress", "--out", out) == 0
    printed = capsys.readouterr()
    assert "nb201 C=8 N=1 on 1x28x28 images, 10 classes" in printed.out and "places" in printed.err
    table = json.loads(out.read_text())
    assert table["network"] == {"C": 8, "N": 1, "channels": 1, "input_size": 28, "num_classes": 10,
                                "dataset": "fashion-mnist", "preset": "nb201-demo"}
    settings = table["settings"]
    assert (settings["runtime"], settings["device"], settings["threads"], settings["batch"], settings["dtype"]) == \
        ("torch", "cpu", 1, 1, "float32")
    assert settings["memory_format"] == "channels_last (NHWC)" and table["machine"]["cpu_model"]
    assert table["machine"]["torch"] == torch.__version__
    assert run_cli("latency", "check", out, "--samples", "3", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mape_percent"] == pytest.approx(0, abs=1e-6) and result["spearman"] == pytest.approx(1.0)
    assert result["samples"] == 3 and result["device_warning"] is None

    data = json.loads(out.read_text())
    data["machine"]["cpu_model"] = "Another CPU 9000"
    out.write_text(json.dumps(data))
    assert run_cli("latency", "check", out, "--samples", "2", "--json") == 0
    err = capsys.readouterr().err.strip().splitlines()
    warnings = [line for line in err if "warning" in line]
    assert len(warnings) == 1 and "Another CPU 9000" in warnings[0]


def test_bad_build_options_are_one_line_and_write_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "t.json"
    base = ["latency", "build", "--threads", "1", "--no-progress", "--out", out]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    expect_error(capsys, *base, "--runtime", "onnxruntime", contains="pip install 'gdas-nas[latency]'")
    expect_error(capsys, *base, "--clock", "cpu", "--threads", "2", contains="--clock cpu")
    expect_error(capsys, *base, "--N", "0", contains="--N must be at least 1")
    expect_error(capsys, *base, "--batch", "0", contains="--batch must be at least 1")
    expect_error(capsys, *base, "--device", "cuda:0", contains="torch.cuda.is_available() is False")
    expect_error(capsys, *base, "--space", "nb201", "--image-size", "30", contains="multiple of 4")
    assert not out.exists()
    expect_error(capsys, "latency", "check", tmp_path / "missing.json", contains="no such file")
    for command in (["bench", "network", tmp_path], ["export", tmp_path]):  # 0 threads is not torch's default
        expect_error(capsys, *command, "--threads", "0", contains="--threads must be at least 1")


def test_onnx_runtime_runs_each_candidate_as_exported():
    """The ONNX Runtime timing runs the exported op itself: its output is the eager module's."""
    pytest.importorskip("onnxruntime")
    settings = Settings(runtime="onnxruntime", threads=1, channels_last=False)
    shape = (8, 12, 12)
    for op, stride in (("sep_conv_3x3", 2), ("skip_connect", 1), ("skip_connect", 2), ("max_pool_3x3", 1)):
        module = make_op(op, 8, stride, search=False).eval()
        x = timing.example(shape, settings)
        call = timing.ort_call(onnx_bytes(module, x), shape, settings)
        with torch.no_grad():
            expected = module(x)
        assert torch.allclose(torch.from_numpy(call()[0]), expected, atol=1e-5), op
    assert networks.measure(module, shape, settings).ms > 0


def test_a_table_of_another_version_is_refused_by_check(additive, tmp_path, capsys):
    path = tmp_path / "t.json"
    build_table(_config("nb201", calibration=0), str(path), log=lambda _: None, progress=False).save(path)
    data = json.loads(path.read_text())
    data["config"]["a_field_of_a_later_version"] = 1
    path.write_text(json.dumps(data))
    expect_error(capsys, "latency", "check", path, "--samples", "2", contains="built by another gdas version")


def test_onnx_runtime_entries_leave_out_the_cost_of_a_session_run(monkeypatch):
    """Each op timed in its own ONNX Runtime session pays a session run (here 0.01 ms) that ops inside a network's
    one session do not: the entries leave it out (measured on a model that returns its input), so that on a
    clock that otherwise adds up the plain sum predicts whole networks exactly."""
    pytest.importorskip("onnxruntime")

    def per_session(module, input_shape, settings, to_onnx=None, **_):
        assert settings.runtime == "onnxruntime"
        return Timing(mult_adds_ms(module, input_shape, settings).ms + 0.01, 21, 0.0, True)

    monkeypatch.setattr(networks, "module_ms", per_session)
    table = build_table(_config("nb201", runtime="onnxruntime", fit="none"), "t.json", log=lambda _: None,
                        progress=False)
    assert set(table.extra["call_overhead_ms"].values()) == {0.01}
    assert table.settings.memory_format == "NCHW (ONNX Runtime)"
    result = check_table(table, 3, seed=2, log=lambda _: None, progress=False)
    assert result["plain_mape_percent"] == pytest.approx(0.0, abs=1e-6)
