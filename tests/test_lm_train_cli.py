"""End-to-end tests of `gdas train-lm` (and `gdas train --task lm`): run directory, NT-ASGD, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_rnn_model import awd_lstm_switch_epoch
from test_rnn_search_cli import SMOKE, _kill_after_second_checkpoint, records, write_corpus
from cli_helpers import expect_error, run_cli

from gdas.configs.files import resolve_config
from gdas.configs.rnn import LM_TRAIN_TABLE, LMTrainConfig
from gdas.genotypes import REGISTRY, load_genotype
from gdas.errors import GdasError
from gdas.spaces.rnn.model import perplexity
from gdas.lm.train import paper_lm_size
from gdas.engine.rundir import RunDir


def test_smoke_training_reports_validation_and_test_perplexity(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli("train-lm", *SMOKE, "--out", out) == 0
    printed = capsys.readouterr().out
    assert "valid ppl" in printed and "test ppl" in printed
    for name in ("config.json", "vocab.json", "genotype.json", "metrics.jsonl", "checkpoint.pt", "best.pt",
                 "summary.json"):
        assert (out / name).is_file(), name
    assert load_genotype(out) == REGISTRY["GDAS_RNN"]
    metrics = records(out / "metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [0, 1, 2]
    best = min(metrics, key=lambda m: m["valid_loss"])
    assert metrics[-1]["best_valid_ppl"] == pytest.approx(best["valid_ppl"])
    # NT-ASGD: averaging starts the epoch after the switch and stays on.
    flags = [m["asgd"] for m in metrics]
    switches = [m["epoch"] for m in metrics if m["switched_to_asgd"]]
    assert flags == sorted(flags) and len(switches) <= 1
    assert not switches or flags[switches[0] + 1:] == [True] * (len(flags) - switches[0] - 1)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_epoch"] == best["epoch"] and summary["asgd_from_epoch"] == (switches or [None])[0]
    assert summary["valid_ppl"] == pytest.approx(best["valid_ppl"], rel=1e-4)  # the best weights were reloaded
    assert 1.0 < summary["test_ppl"] < 1e4 and summary["params"] > 0
    assert RunDir(out).load_checkpoint("best.pt")["epoch"] == best["epoch"]


@pytest.mark.parametrize("nonmono", [1, 5])
def test_nt_asgd_switch_follows_the_non_monotonic_rule(tmp_path: Path, nonmono: int, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli("train-lm", *SMOKE, "--nonmono", nonmono, "--epochs", "6", "--out", out) == 0
    metrics = records(out / "metrics.jsonl")
    expected = awd_lstm_switch_epoch([m["valid_loss"] for m in metrics], nonmono)
    assert [m["switched_to_asgd"] for m in metrics] == [m["epoch"] == expected for m in metrics]
    assert [m["asgd"] for m in metrics] == [expected is not None and m["epoch"] > expected for m in metrics]
    # This run's validation rises at epoch 4: a switch with nonmono=1; with 5, too few losses to judge it yet.
    assert (expected is not None) == (nonmono == 1)


@pytest.mark.parametrize("nonmono,asgd_epoch", [(5, 2), (1, 6)])
def test_asgd_epoch_starts_averaging_at_the_latest_there(tmp_path: Path, nonmono: int, asgd_epoch: int,
                                                         capsys) -> None:
    out = tmp_path / "run"
    assert run_cli("train-lm", *SMOKE, "--nonmono", nonmono, "--asgd-epoch", asgd_epoch, "--epochs", "6",
                   "--out", out) == 0
    metrics = records(out / "metrics.jsonl")
    rule = awd_lstm_switch_epoch([m["valid_loss"] for m in metrics], nonmono)
    switch = asgd_epoch - 1 if rule is None else min(rule, asgd_epoch - 1)  # whichever comes first
    assert [m["switched_to_asgd"] for m in metrics] == [m["epoch"] == switch for m in metrics]
    assert [m["asgd"] for m in metrics] == [m["epoch"] >= switch + 1 for m in metrics]
    assert switch == (1 if nonmono == 5 else 4)  # the forced epoch; the rule's earlier switch (see above)


def test_diverged_training_stops_with_one_line_and_keeps_the_good_checkpoint(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"  # lr 100 without clipping: finite in epoch 0, NaN in epoch 1
    expect_error(capsys, "train-lm", *SMOKE, "--lr", "100", "--grad-clip", "0", "--out", out,
                 contains="diverged in epoch 1")
    assert RunDir(out).load_checkpoint()["epoch"] == 0
    assert [m["epoch"] for m in records(out / "metrics.jsonl")] == [0]


def test_train_task_lm_trains_a_searched_genotype(tmp_path: Path, capsys) -> None:
    search = tmp_path / "search"
    assert run_cli("search-rnn", *SMOKE, "--epochs", "1", "--out", search) == 0
    out = tmp_path / "lm"
    assert run_cli("train", "--task", "lm", *SMOKE, "--epochs", "1", "--genotype", search, "--out", out) == 0
    assert json.loads((out / "config.json").read_text())["kind"] == "train-lm"
    assert load_genotype(out) == load_genotype(search)


def test_killed_training_resumes_to_the_same_result(tmp_path: Path, monkeypatch, capsys) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    args = ("train-lm", *SMOKE, "--epochs", "3")
    assert run_cli(*args, "--out", full) == 0
    with monkeypatch.context() as patch:
        _kill_after_second_checkpoint(patch)
        assert run_cli(*args, "--out", killed) == 130
    assert run_cli("train-lm", "--resume", killed, "--no-progress", "--no-report") == 0
    states = {run: RunDir(run).load_checkpoint()["task"]["model"] for run in (full, killed)}
    assert all(torch.equal(states[full][k], states[killed][k]) for k in states[full])
    summaries = [json.loads((run / "summary.json").read_text()) for run in (full, killed)]
    assert summaries[0]["test_ppl"] == summaries[1]["test_ppl"]


def test_bad_genotypes_give_one_line_and_create_nothing(tmp_path: Path, capsys) -> None:
    expect_error(capsys, "train-lm", *SMOKE, "--genotype", "GDAS", "--out", tmp_path / "a", contains="recurrent")
    forward = tmp_path / "forward.json"
    forward.write_text(json.dumps({"recurrent": [[["relu", 0]], [["tanh", 2]]]}))
    expect_error(capsys, "train-lm", *SMOKE, "--genotype", forward, "--out", tmp_path / "b", contains="earlier node")
    out_of_range = tmp_path / "range.json"
    out_of_range.write_text(json.dumps({"recurrent": [[["relu", 0]], [["tanh", -1]]]}))
    expect_error(capsys, "train-lm", *SMOKE, "--genotype", out_of_range, "--out", tmp_path / "c",
                 contains="earlier node")
    expect_error(capsys, "train-lm", *SMOKE, "--genotype", "recurrent: swish@0", "--out", tmp_path / "d",
                 contains="unknown op")
    expect_error(capsys, "train-lm", *SMOKE, "--corpus", "ptb", "--data-dir", tmp_path / "nope",
                 "--out", tmp_path / "e", contains="does not exist")
    assert not any((tmp_path / name).exists() for name in "abcde")


def test_resume_refuses_other_checkpoints_and_vocabularies(tmp_path: Path, capsys) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    out, other = tmp_path / "run", tmp_path / "other"
    base = ("train-lm", *SMOKE, "--epochs", "1", "--corpus", "ptb", "--data-dir", corpus)
    assert run_cli(*base, "--out", out) == 0
    assert run_cli(*base, "--nhid", "8", "--emsize", "8", "--out", other) == 0
    (out / "summary.json").unlink()
    capsys.readouterr()
    expect_error(capsys, "train-lm", "--resume", out, "--genotype", "DARTS_V2_RNN", contains="--genotype")
    write_corpus(tmp_path / "changed", train="p q r s\n" * 40)
    expect_error(capsys, "train-lm", "--resume", out, "--data-dir", tmp_path / "changed",
                 contains="different vocabulary")
    (out / "checkpoint.pt").write_bytes((other / "checkpoint.pt").read_bytes())
    expect_error(capsys, "train-lm", "--resume", out, contains="does not fit")
    assert (out / "checkpoint.pt").read_bytes() == (other / "checkpoint.pt").read_bytes()


def test_perplexity_of_the_evaluation_is_exp_mean_nll(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli("train-lm", *SMOKE, "--epochs", "1", "--out", out) == 0
    metric = records(out / "metrics.jsonl")[0]
    assert metric["valid_ppl"] == pytest.approx(perplexity(metric["valid_loss"], 1), rel=1e-6)


def test_paper_sizes_of_the_published_cells() -> None:
    ptb = paper_lm_size(REGISTRY["GDAS_RNN"], "ptb")
    assert (ptb["vocab"], ptb["nhid"], ptb["params_M"]) == (10000, 850, 22.96)  # paper: 23M
    wt2 = paper_lm_size(REGISTRY["DARTS_V2_RNN"], "wt2")
    assert (wt2["vocab"], wt2["nhid"], round(wt2["params_M"])) == (33278, 700, 33)  # paper: 33M
    with pytest.raises(GdasError, match="ptb, wt2"):
        paper_lm_size(REGISTRY["GDAS_RNN"], "enwik8")


def test_info_prints_the_language_model_size(capsys) -> None:
    assert run_cli("info", "GDAS_RNN", "--task", "ptb", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params_M"] == pytest.approx(22.96) and info["vocab"] == 10000 and info["nhid"] == 850
    assert run_cli("info", "GDAS_RNN", "--task", "wt2") == 0
    assert "33278 words" in capsys.readouterr().out


def test_the_demo_presets_averaging_keeps_its_share_of_the_epochs() -> None:
    def resolved(**fields):
        return resolve_config(LMTrainConfig, LM_TRAIN_TABLE, kind="train-lm", preset="shakespeare", overrides=fields)

    preset = resolved()
    assert (preset.asgd_epoch, preset.epochs) == (4, 6) and preset.adjusted == ()
    longer = resolved(epochs=12)
    assert longer.asgd_epoch == 8 and longer.adjusted == ("asgd_epoch 4 -> 8 (the preset averages from epoch 4 of 6, "
                                                          "scaled to --epochs 12)",)
    assert resolved(epochs=1).asgd_epoch == 1
    assert resolved(epochs=12, asgd_epoch=2).asgd_epoch == 2  # the user's own value is kept
    assert resolved(epochs=12, asgd_epoch=None).asgd_epoch is None
