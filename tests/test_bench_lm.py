"""`gdas bench lm`: the JSON it prints (tiny sizes, nothing timed is asserted) and its option checks."""

from __future__ import annotations

import json

import pytest

from cli_helpers import expect_error, run_cli

from gdas.bench.lm import LSTMLanguageModel
from gdas.spaces.rnn import cells
from gdas.spaces.rnn.fused import run_cell
from gdas.configs.rnn import LM_TRAIN_PRESETS, RNN_SEARCH_PRESETS

TINY = ("--vocab", "30", "--samples", "2", "--warmup", "0")


def _bench(capsys, *argv: str) -> dict:
    assert run_cli("bench", "lm", *TINY, *argv, "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_bench_lm_json_has_both_steps_against_lstm(capsys):
    r = _bench(capsys, "--nhid", "8", "--batch", "3", "--bptt", "4")
    for step in ("train", "search"):
        part = r[step]
        assert part["nhid"] == part["emsize"] == 8 and part["batch_size"] == 3 and part["bptt"] == 4
        assert part["tokens"] == 12 and part["vocab"] == 30
        assert len(part["samples_ms"]) == len(part["lstm_samples_ms"]) == 2
        # slowdown_vs_lstm: nn.LSTM's tokens/s over ours (the same tokens per step, so ours ms over its ms)
        assert part["slowdown_vs_lstm"] == pytest.approx(part["lstm_tokens_per_s"] / part["tokens_per_s"], rel=1e-2)
        assert part["slowdown_vs_lstm"] == pytest.approx(part["step_ms"] / part["lstm_step_ms"], rel=1e-2)
        assert part["slowdown_vs_lstm_cpu"] == pytest.approx(part["cpu_ms"] / part["lstm_cpu_ms"], rel=1e-2)
    assert r["machine"]["threads"] == 1 and r["config"]["threads"] == 1  # one thread unless asked


def test_bench_lm_measures_each_demo_preset_by_default(capsys):
    r = _bench(capsys, "--samples", "1")
    for step, preset in (("train", LM_TRAIN_PRESETS["shakespeare"]), ("search", RNN_SEARCH_PRESETS["shakespeare"])):
        assert (r[step]["nhid"], r[step]["batch_size"], r[step]["bptt"]) == (preset.nhid, preset.batch_size,
                                                                             preset.bptt)


@pytest.mark.parametrize("autograd", [False, True])
def test_bench_lm_autograd_times_the_reference_path(capsys, monkeypatch, autograd):
    windows = []
    monkeypatch.setattr(cells, "run_cell", lambda *a, **k: windows.append(1) or run_cell(*a, **k))
    r = _bench(capsys, "--nhid", "8", "--batch", "2", "--bptt", "3", "--samples", "1",
               *(["--autograd"] if autograd else []))
    assert r["config"]["autograd"] is autograd and r["train"]["slowdown_vs_lstm"] > 0
    assert bool(windows) is not autograd  # the fused window runs unless --autograd


def test_bench_lm_table(capsys):
    assert run_cli("bench", "lm", *TINY, "--nhid", "8", "--batch", "2", "--bptt", "3") == 0
    out = capsys.readouterr().out
    assert "train-lm step" in out and "search-rnn W step" in out and "slowdown" in out


def test_the_reference_is_a_tied_lstm_language_model():
    model = LSTMLanguageModel(20, 6)
    assert model.decoder.weight is model.encoder.weight and model.rnn.hidden_size == 6


@pytest.mark.parametrize("argv,contains", [
    (["--samples", "0"], "--samples"),
    (["--bptt", "1"], "--bptt"),
    (["--vocab", "1"], "--vocab"),
    (["--nhid", "0"], "--nhid"),
])
def test_bad_bench_lm_options(capsys, argv, contains):
    expect_error(capsys, "bench", "lm", *argv, contains=contains)
