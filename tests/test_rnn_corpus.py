"""Corpus reading, vocabulary, batchify and BPTT windows on a tiny corpus in the PTB layout."""

from pathlib import Path

import pytest
import torch

from gdas.errors import GdasError
from gdas.lm.corpus import (EOS, UNK, VOCAB_SIZES, Vocabulary, batchify, bptt_windows, get_batch,
                             load_corpus)


def write_corpus(root: Path, train: str = "the cat sat\nthe dog\n", valid: str = "the zebra sat\n",
                 test: str = "dog\n\ncat\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (root / f"{name}.txt").write_text(text)
    return root


def test_load_corpus_builds_vocab_from_train_and_maps_unknown_words(tmp_path):
    corpus = load_corpus(write_corpus(tmp_path / "c"))
    v = corpus.vocab
    # Order of first appearance, <eos> after each line, <unk> always present.
    assert v.idx2word == ["the", "cat", "sat", EOS, "dog", UNK]
    assert v.decode(corpus.train) == ["the", "cat", "sat", EOS, "the", "dog", EOS]
    assert v.decode(corpus.valid) == ["the", UNK, "sat", EOS]  # "zebra" is not in train
    assert v.decode(corpus.test) == ["dog", EOS, EOS, "cat", EOS]  # a blank line still ends with <eos>
    assert corpus.train.dtype == torch.long


def test_vocabulary_json_round_trip_and_reuse(tmp_path):
    corpus = load_corpus(write_corpus(tmp_path / "c"))
    restored = Vocabulary.from_json(corpus.vocab.to_json())
    assert restored == corpus.vocab and len(restored) == 6
    # A saved vocabulary is used as is: words outside it become <unk>.
    small = Vocabulary(["the", "sat"])
    again = load_corpus(tmp_path / "c", vocab=small)
    assert small.decode(again.train) == ["the", UNK, "sat", EOS, "the", UNK, EOS]
    assert small.encode_line("never seen") == [small.unk, small.unk, small.eos]


@pytest.mark.parametrize("bad", [["a", "a"], {"words": [1, 2]}, {"nope": []}])
def test_malformed_vocabulary_json(bad):
    with pytest.raises(GdasError, match="malformed vocabulary"):
        Vocabulary.from_json(bad)


def test_missing_split_file(tmp_path):
    root = write_corpus(tmp_path / "c")
    (root / "valid.txt").unlink()
    with pytest.raises(GdasError, match="missing valid.txt") as err:
        load_corpus(root)
    assert "\n" not in str(err.value)


def test_missing_directory(tmp_path):
    with pytest.raises(GdasError, match="does not exist"):
        load_corpus(tmp_path / "nowhere")


@pytest.mark.parametrize("split", ["train", "test"])
def test_empty_split(tmp_path, split):
    root = write_corpus(tmp_path / "c", **{split: "\n  \n"})
    with pytest.raises(GdasError, match=f"{split}.txt has no words"):
        load_corpus(root)


def test_non_utf8_file(tmp_path):
    root = write_corpus(tmp_path / "c")
    (root / "train.txt").write_bytes(b"caf\xe9 ok\n")
    with pytest.raises(GdasError, match="not UTF-8"):
        load_corpus(root)


def test_batchify_makes_contiguous_columns():
    data = torch.arange(11)
    out = batchify(data, 3)
    assert out.shape == (3, 3)  # 11 // 3 steps, remainder dropped
    assert out[:, 0].tolist() == [0, 1, 2] and out[:, 1].tolist() == [3, 4, 5] and out[:, 2].tolist() == [6, 7, 8]
    with pytest.raises(GdasError, match="too short for batch size"):
        batchify(torch.arange(5), 4)


def test_get_batch_shifts_targets_and_caps_at_end():
    source = batchify(torch.arange(20), 2)  # (10, 2)
    x, y = get_batch(source, 0, 4)
    assert x[:, 0].tolist() == [0, 1, 2, 3] and y[:, 0].tolist() == [1, 2, 3, 4]
    x, y = get_batch(source, 7, 5)
    assert x.shape == (2, 2) and y[:, 1].tolist() == [18, 19]


def test_fixed_bptt_windows_cover_the_split():
    assert list(bptt_windows(10, 4)) == [(0, 4), (4, 4), (8, 1)]


def test_randomised_bptt_windows_are_seeded_bounded_and_contiguous():
    def draw(seed):
        return list(bptt_windows(2000, 35, torch.Generator().manual_seed(seed), randomise=True))

    a, b, c = draw(0), draw(0), draw(1)
    assert a == b and a != c
    starts, lengths = [s for s, _ in a], [n for _, n in a]
    assert starts[0] == 0 and all(s + n == s2 for (s, n), s2 in zip(a, starts[1:]))
    assert starts[-1] + lengths[-1] == 1999  # every input has a next-word target
    assert all(5 <= n <= 55 for n in lengths[:-1])
    assert len(set(lengths)) > 5  # lengths vary
    assert min(lengths[:-1]) < 25  # the bptt/2 branch shows up over ~60 windows


def test_vocab_sizes():
    assert VOCAB_SIZES == {"ptb": 10000, "wt2": 33278}
