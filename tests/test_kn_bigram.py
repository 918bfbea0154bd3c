"""scripts/kn_bigram.py: the interpolated Kneser-Ney bigram on a tiny corpus against probabilities worked out by hand."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gdas.lm.corpus import load_corpus

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "kn_bigram.py"
spec = importlib.util.spec_from_file_location("kn_bigram", SCRIPT)
kn = importlib.util.module_from_spec(spec)
sys.modules["kn_bigram"] = kn
spec.loader.exec_module(kn)


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    # train stream: a b <eos> a c <eos> b a <eos>; vocabulary a, b, <eos>, c, <unk> (5 words)
    (tmp_path / "train.txt").write_text("a b\na c\nb a\n")
    (tmp_path / "valid.txt").write_text("b c\n")  # scored pairs: (b, c), (c, <eos>)
    (tmp_path / "test.txt").write_text("c zzz\n")  # zzz is <unk>: (c, <unk>), (<unk>, <eos>)
    return tmp_path


def _ids(corpus_dir: Path) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    corpus = load_corpus(corpus_dir)
    return corpus.vocab.word2idx, {s: corpus.split(s).numpy() for s in ("train", "valid", "test")}


# By hand, from the 8 training bigrams (a,b) (b,<eos>) (<eos>,a) (a,c) (c,<eos>) (<eos>,b) (b,a) (a,<eos>), all seen
# once: N1+(. .) = 8; words before a: 2, b: 2, <eos>: 3, c: 1, <unk>: 0 (4 words seen after something); contexts
# c(a) = 3 with 3 followers, c(b) = 2 / 2, c(<eos>) = 2 / 2, c(c) = 1 / 1, c(<unk>) = 0.
# With D1 = 0.5, D2 = 0.75: P1(w) = max(N1+(. w) - 0.5, 0) / 8 + 0.5 * 4 / 8 / 5, so
# P1(a) = P1(b) = 1.5/8 + 0.05 = 0.2375, P1(<eos>) = 2.5/8 + 0.05 = 0.3625, P1(c) = 0.5/8 + 0.05 = 0.1125,
# P1(<unk>) = 0.05 (they sum to 1).
P1 = {"a": 0.2375, "b": 0.2375, "<eos>": 0.3625, "c": 0.1125, "<unk>": 0.05}
HAND = {
    ("a", "b"): (1 - 0.75) / 3 + 0.75 * 3 / 3 * P1["b"],  # 0.2614583...
    ("b", "c"): 0 + 0.75 * 2 / 2 * P1["c"],  # 0.084375: unseen after b
    ("c", "<eos>"): (1 - 0.75) / 1 + 0.75 * 1 / 1 * P1["<eos>"],  # 0.521875
    ("c", "<unk>"): 0.75 * P1["<unk>"],  # 0.0375
    ("<unk>", "<eos>"): P1["<eos>"],  # an unseen context backs off to P1 entirely
}


def test_probabilities_match_the_hand_computation(corpus_dir):
    word, split = _ids(corpus_dir)
    counts = kn.count_bigrams(split["train"], len(word))
    assert counts.bigram_types == 8
    prev = np.array([word[v] for v, _ in HAND])
    nxt = np.array([word[w] for _, w in HAND])
    got = np.exp(kn.PairTable(counts, prev, nxt).log_probs(0.5, 0.75))
    np.testing.assert_allclose(got, list(HAND.values()), rtol=1e-12)


def test_each_context_is_a_distribution(corpus_dir):
    word, split = _ids(corpus_dir)
    counts = kn.count_bigrams(split["train"], len(word))
    for v in word.values():
        table = kn.PairTable(counts, np.full(len(word), v), np.arange(len(word)))
        assert np.exp(table.log_probs(0.3, 0.9)).sum() == pytest.approx(1.0, abs=1e-12)


def test_ney_discounts_by_hand(corpus_dir):
    word, split = _ids(corpus_dir)
    d1, d2 = kn.count_bigrams(split["train"], len(word)).ney_discounts()
    assert d2 == 1.0  # eight bigrams seen once, none twice: 8 / (8 + 0)
    assert d1 == pytest.approx(1 / (1 + 2 * 2))  # continuation counts 2, 2, 3, 1: n1 = 1, n2 = 2


def test_perplexities_of_the_splits(corpus_dir):
    r = kn.run(str(corpus_dir), discounts=(0.5, 0.75), grid_step=0.25)
    valid = math.exp(-(math.log(HAND["b", "c"]) + math.log(HAND["c", "<eos>"])) / 2)
    test = math.exp(-(math.log(HAND["c", "<unk>"]) + math.log(HAND["<unk>", "<eos>"])) / 2)
    assert r["given"]["valid_ppl"] == pytest.approx(valid, abs=0.005)
    assert r["given"]["test_ppl"] == pytest.approx(test, abs=0.005)
    assert r["vocab"] == 5 and r["valid_predicted"] == 2 and r["test_predicted"] == 2
    word, split = _ids(corpus_dir)
    valid_table = kn.PairTable(kn.count_bigrams(split["train"], len(word)), *kn.eval_pairs(split["valid"], 1))
    grid = [0.25, 0.5, 0.75, 1.0]  # tuned: the grid's best on valid, never looking at test
    best = min(valid_table.perplexity(a, b) for a in grid for b in grid)
    assert r["tuned_on_valid"]["valid_ppl"] == pytest.approx(best, abs=0.005)


def test_batched_scoring_drops_what_train_lm_drops():
    tokens = np.arange(11)
    prev, nxt = kn.eval_pairs(tokens, 3)  # 3 columns of 3 tokens (0-2, 3-5, 6-8), 9 and 10 dropped
    assert prev.tolist() == [0, 1, 3, 4, 6, 7] and nxt.tolist() == [1, 2, 4, 5, 7, 8]


def test_script_runs(corpus_dir):
    out = subprocess.run([sys.executable, str(SCRIPT), "--data-dir", str(corpus_dir), "--grid-step", "0.5"],
                         capture_output=True, text=True, check=True).stdout
    assert "tuned_on_valid" in out and "test ppl" in out
