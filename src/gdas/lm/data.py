"""The corpus a language-model config names (a folder or the built-in synthetic one) and a run's vocab.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from gdas.configs import base as cfgbase
from gdas.configs.runtime import environment
from gdas.engine import distributed as dist
from gdas.engine.rundir import VOCAB, RunDir
from gdas.errors import GdasError
from gdas.lm.corpus import Corpus, Vocabulary, load_corpus

SYNTHETIC_SEED = 1234
_SYNTHETIC_LINES = {"train": 400, "valid": 80, "test": 80}
# A toy grammar: [adjective] subject verb [adjective] object [adverb]; enough structure to learn.
_WORDS = {
    "adj": ["big", "small", "red", "old", "quiet"],
    "subj": ["the cat", "a dog", "the king", "my friend", "a bird", "the queen"],
    "verb": ["sees", "likes", "finds", "follows", "hears"],
    "obj": ["the house", "a tree", "the river", "some bread", "the moon", "a song"],
    "adv": ["today", "again", "slowly", "at night"],
}


def default_data_dir(corpus: str) -> Path:
    return Path("data") / corpus


def synthetic_lines(split: str, seed: int = SYNTHETIC_SEED) -> list[str]:
    """Deterministic sentences of the toy grammar (the `synthetic` corpus: offline, no files)."""
    gen = torch.Generator().manual_seed(seed + ("train", "valid", "test").index(split))

    def pick(kind: str) -> str:
        words = _WORDS[kind]
        return words[int(torch.randint(len(words), (1,), generator=gen))]

    def maybe(kind: str) -> list[str]:
        return [pick(kind)] if torch.rand((), generator=gen).item() < 0.4 else []

    lines = []
    for _ in range(_SYNTHETIC_LINES[split]):
        subj, obj = pick("subj").split(), pick("obj").split()
        words = subj[:-1] + maybe("adj") + subj[-1:] + [pick("verb")] + obj[:-1] + maybe("adj") + obj[-1:]
        lines.append(" ".join(words + maybe("adv")))
    return lines


def synthetic_corpus(vocab: Optional[Vocabulary] = None) -> Corpus:
    lines = {split: synthetic_lines(split) for split in ("train", "valid", "test")}
    vocab = vocab or Vocabulary.build(lines["train"])
    ids = {split: torch.tensor([i for line in text for i in vocab.encode_line(line)], dtype=torch.long)
           for split, text in lines.items()}
    return Corpus(vocab, ids["train"], ids["valid"], ids["test"])


def load_lm_corpus(corpus: str, data_dir: Optional[str], train_tokens: Optional[int] = None,
                   valid_tokens: Optional[int] = None) -> Corpus:
    """The named corpus from `data_dir` (default data/<corpus>), its splits optionally cut short.

    The vocabulary always comes from the whole training split, so cutting does not change it.
    """
    if corpus == "synthetic" and data_dir is None:
        loaded = synthetic_corpus()
    else:
        root = Path(data_dir) if data_dir is not None else default_data_dir(corpus)
        if corpus == "shakespeare" and not root.is_dir():
            raise GdasError(f"corpus directory {root} does not exist; build it with "
                            f"`gdas data prepare shakespeare --out {root}` or pass --data-dir")
        loaded = load_corpus(root)
    if train_tokens is not None:
        loaded.train = loaded.train[:train_tokens]
    if valid_tokens is not None:
        loaded.valid = loaded.valid[:valid_tokens]
    return loaded


def save_vocab(run: RunDir, vocab: Vocabulary) -> None:
    run.write_json(VOCAB, vocab.to_json())


def check_run_vocab(run: RunDir, vocab: Vocabulary) -> None:
    """On resume: the corpus must give the vocabulary the run was started with."""
    stored = Vocabulary.from_json(run.read_json(VOCAB))
    if stored != vocab:
        raise GdasError(f"the corpus has a different vocabulary ({len(vocab)} words) than the run in {run.path} "
                        f"({len(stored)} words in {VOCAB}); resume with the run's original --data-dir")


def lm_corpus(cfg: Any, kind: str) -> Corpus:
    """The corpus of an LM run (search or training), which runs on one device."""
    if dist.context().world_size > 1:
        raise GdasError(f"{kind} runs on one device; launch it without torchrun")
    return load_lm_corpus(cfg.corpus, cfg.data_dir, cfg.train_tokens, cfg.valid_tokens)


def lm_run_dir(out: Path, kind: str, cfg: Any, device: torch.device, vocab: Vocabulary, resume_run: bool
               ) -> RunDir:
    """The run directory, new (with vocab.json) or existing (whose vocabulary the corpus must reproduce)."""
    if resume_run:
        run, _ = RunDir.open_existing(out, kind)
        check_run_vocab(run, vocab)
        return run
    run = RunDir.create(out, kind, cfgbase.to_json(cfg), environment(device))
    save_vocab(run, vocab)
    return run
