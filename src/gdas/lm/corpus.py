"""Word-level corpora in the PTB/WikiText layout: vocabulary, token tensors, batchify and BPTT windows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

import torch

from gdas.errors import GdasError

UNK, EOS = "<unk>", "<eos>"
SPLITS: tuple[str, ...] = ("train", "valid", "test")
VOCAB_SIZES: dict[str, int] = {"ptb": 10000, "wt2": 33278}
MAX_SEQ_LEN_DELTA = 20  # AWD-LSTM: a randomised window is at most bptt + 20 long


class Vocabulary:
    """Word <-> id, with `<unk>` and `<eos>` always present; unknown words encode to `<unk>`."""

    def __init__(self, words: Iterable[str] = ()):
        self.idx2word: list[str] = []
        self.word2idx: dict[str, int] = {}
        for word in words:
            self.add(word)
        for special in (UNK, EOS):
            self.add(special)

    @classmethod
    def build(cls, lines: Iterable[str]) -> "Vocabulary":
        """Words in order of first appearance (as AWD-LSTM), one `<eos>` per line."""
        seen: dict[str, None] = {}
        for line in lines:
            seen.update(dict.fromkeys(line.split()))
            seen.setdefault(EOS)
        return cls(seen)

    def add(self, word: str) -> int:
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    @property
    def unk(self) -> int:
        return self.word2idx[UNK]

    @property
    def eos(self) -> int:
        return self.word2idx[EOS]

    def __len__(self) -> int:
        return len(self.idx2word)

    def __contains__(self, word: object) -> bool:
        return word in self.word2idx

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.idx2word == other.idx2word

    def encode_line(self, line: str) -> list[int]:
        """Ids of a line's whitespace tokens followed by `<eos>`; unknown words become `<unk>`."""
        get, unk = self.word2idx.get, self.unk
        return [get(word, unk) for word in line.split()] + [self.eos]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.idx2word[int(i)] for i in ids]

    def to_json(self) -> dict[str, Any]:
        return {"words": list(self.idx2word)}

    @classmethod
    def from_json(cls, data: Any) -> "Vocabulary":
        words = data.get("words") if isinstance(data, dict) else None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words) \
                or len(set(words)) != len(words):
            raise GdasError("malformed vocabulary JSON: expected {\"words\": [distinct strings]}; "
                            "rebuild it from the corpus")
        return cls(words)


@dataclass
class Corpus:
    """A tokenised corpus: 1-D LongTensors of word ids (with `<eos>` at every line end)."""

    vocab: Vocabulary
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    def split(self, name: str) -> torch.Tensor:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise GdasError(f"{path} is not UTF-8 text; convert the corpus to UTF-8") from None


def load_corpus(data_dir: Union[str, Path], vocab: Optional[Vocabulary] = None) -> Corpus:
    """Read train.txt / valid.txt / test.txt (one sentence a line) from `data_dir`.

    The vocabulary is built from the training split unless `vocab` is given (e.g. the one saved with
    a run); words outside it map to `<unk>`.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise GdasError(f"corpus directory {root} does not exist; pass --data-dir with train.txt, "
                        "valid.txt and test.txt")
    lines = {}
    for name in SPLITS:
        path = root / f"{name}.txt"
        if not path.is_file():
            raise GdasError(f"missing {path.name} in {root}; a corpus directory needs train.txt, valid.txt "
                            "and test.txt (one sentence a line)")
        lines[name] = _read_lines(path)
        if not any(line.split() for line in lines[name]):
            raise GdasError(f"{path} has no words; the {name} split of a corpus must not be empty")
    if vocab is None:
        vocab = Vocabulary.build(lines["train"])
    tensors = {}
    for name in SPLITS:
        ids: list[int] = []
        for line in lines[name]:
            ids.extend(vocab.encode_line(line))
        tensors[name] = torch.tensor(ids, dtype=torch.long)
    return Corpus(vocab, tensors["train"], tensors["valid"], tensors["test"])


def batchify(data: torch.Tensor, batch_size: int, device: Union[str, torch.device, None] = None
             ) -> torch.Tensor:
    """Cut a 1-D token stream into `batch_size` columns: (T, B), dropping the remainder."""
    n_steps = data.numel() // batch_size
    if n_steps < 2:
        raise GdasError(f"a split of {data.numel()} tokens is too short for batch size {batch_size}; "
                        "lower the batch size or use a larger corpus")
    return data[:n_steps * batch_size].view(batch_size, n_steps).t().contiguous().to(device)


def get_batch(source: torch.Tensor, i: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs source[i:i+L] and next-word targets source[i+1:i+1+L], both (L, B); L capped to the data."""
    seq_len = min(seq_len, source.size(0) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len]


def bptt_windows(n_steps: int, bptt: int, generator: Optional[torch.Generator] = None,
                 randomise: bool = False) -> Iterator[tuple[int, int]]:
    """(start, seq_len) windows covering a (n_steps, B) batchified split.

    Fixed windows of `bptt` (search, evaluation), or AWD-LSTM's randomised lengths (training): base
    bptt with probability 0.95 else bptt/2, then N(base, 5), at least 5, at most bptt + 20, capped to
    the data. Draws come from `generator` so a seeded run repeats its windows.
    """
    i = 0
    while i < n_steps - 1:
        if randomise:
            base = bptt if torch.rand((), generator=generator).item() < 0.95 else bptt / 2
            seq_len = int(base + 5.0 * torch.randn((), generator=generator).item())
            seq_len = min(max(5, seq_len), bptt + MAX_SEQ_LEN_DELTA)
        else:
            seq_len = bptt
        seq_len = min(seq_len, n_steps - 1 - i)
        yield i, seq_len
        i += seq_len
