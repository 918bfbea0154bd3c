"""An interpolated Kneser-Ney bigram model of a word corpus: the count baseline a neural language model must beat.

The corpus is read by gdas's own reader (`gdas.lm.corpus.load_corpus`): the vocabulary of train.txt, `<eos>` at
every line end, words outside the vocabulary as `<unk>`, the splits as one token stream each, exactly as
`gdas train-lm` reads them. The bigram counts come from the training stream. Interpolated Kneser-Ney, with the
lowest order interpolated with the uniform distribution over the vocabulary (so that no word has probability 0):

    P(w | v) = max(c(v, w) - D2, 0) / c(v) + D2 * N1+(v .) / c(v) * P1(w)        (P1(w) when c(v) = 0)
    P1(w)    = max(N1+(. w) - D1, 0) / N1+(. .) + D1 * |{w: N1+(. w) > 0}| / N1+(. .) / |V|

c(v, w): bigram counts, c(v) = sum_w c(v, w); N1+(v .): distinct words after v; N1+(. w): distinct words before
w; N1+(. .): distinct bigrams. The discounts D2 (bigrams) and D1 (continuation unigrams) are Ney's estimate
n1 / (n1 + 2 n2) from the training counts, and tuned on the validation split by a grid (never on test).

A split is scored as `gdas train-lm` scores it with `--batch-size B` (its `--test-batch-size`): the stream is cut
into B columns (the remainder dropped) and every token of a column but its first is predicted from the token
before it. B = 1 predicts every token of the stream but the first.

    python scripts/kn_bigram.py --data-dir data/shakespeare [--batch-size 1] [--json]
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from gdas.errors import GdasError
from gdas.lm.corpus import batchify, load_corpus


@dataclass
class BigramCounts:
    """The training counts a Kneser-Ney bigram needs."""

    vocab_size: int
    pairs: np.ndarray  # sorted distinct bigram ids v * V + w
    pair_counts: np.ndarray  # c(v, w) of each distinct bigram
    context_counts: np.ndarray  # c(v), (V,)
    followers: np.ndarray  # N1+(v .), (V,)
    continuation: np.ndarray  # N1+(. w), (V,)

    @property
    def bigram_types(self) -> int:  # N1+(. .)
        return len(self.pairs)

    def ney_discounts(self) -> tuple[float, float]:
        """(D1, D2) = n1 / (n1 + 2 n2) of the continuation counts and of the bigram counts."""
        def ney(counts: np.ndarray) -> float:
            n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
            return n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.5
        return ney(self.continuation[self.continuation > 0]), ney(self.pair_counts)


def count_bigrams(tokens: np.ndarray, vocab_size: int) -> BigramCounts:
    """Counts of the consecutive pairs of a token stream."""
    ids = tokens[:-1].astype(np.int64) * vocab_size + tokens[1:]
    pairs, pair_counts = np.unique(ids, return_counts=True)
    prev, nxt = pairs // vocab_size, pairs % vocab_size
    return BigramCounts(vocab_size, pairs, pair_counts,
                        np.bincount(prev, weights=pair_counts, minlength=vocab_size),
                        np.bincount(prev, minlength=vocab_size), np.bincount(nxt, minlength=vocab_size))


def eval_pairs(tokens: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(previous, next) word ids of the tokens `gdas train-lm` predicts in a split batchified into `batch_size`."""
    columns = batchify(torch.from_numpy(tokens), batch_size).t().numpy()  # (B, T)
    return columns[:, :-1].ravel(), columns[:, 1:].ravel()


class PairTable:
    """The counts of the pairs to score, looked up once, so that each pair of discounts costs a few array ops."""

    def __init__(self, counts: BigramCounts, prev: np.ndarray, nxt: np.ndarray):
        self.counts = counts
        ids = prev.astype(np.int64) * counts.vocab_size + nxt
        at = np.searchsorted(counts.pairs, ids).clip(max=len(counts.pairs) - 1)
        self.pair = np.where(counts.pairs[at] == ids, counts.pair_counts[at], 0).astype(np.float64)
        self.context = counts.context_counts[prev]
        self.followers = counts.followers[prev].astype(np.float64)
        self.continuation = counts.continuation[nxt].astype(np.float64)

    def log_probs(self, d1: float, d2: float) -> np.ndarray:
        c = self.counts
        types = float(c.bigram_types)
        seen = float((c.continuation > 0).sum())
        p1 = np.maximum(self.continuation - d1, 0.0) / types + d1 * seen / types / c.vocab_size
        has_context = self.context > 0
        context = np.where(has_context, self.context, 1.0)
        p2 = np.maximum(self.pair - d2, 0.0) / context + d2 * self.followers / context * p1
        return np.log(np.where(has_context, p2, p1))

    def perplexity(self, d1: float, d2: float) -> float:
        return math.exp(-float(self.log_probs(d1, d2).mean()))


def tune(valid: PairTable, grid: np.ndarray) -> tuple[float, float]:
    """The (D1, D2) of the grid with the lowest validation perplexity."""
    best = min((valid.perplexity(d1, d2), d1, d2) for d1 in grid for d2 in grid)
    return float(best[1]), float(best[2])


def run(data_dir: str, batch_size: int = 1, grid_step: float = 0.01, discounts: Optional[tuple[float, float]] = None
        ) -> dict:
    corpus = load_corpus(data_dir)
    vocab = len(corpus.vocab)
    split = {name: corpus.split(name).numpy() for name in ("train", "valid", "test")}
    counts = count_bigrams(split["train"], vocab)
    tables = {name: PairTable(counts, *eval_pairs(split[name], batch_size)) for name in ("valid", "test")}
    grid = np.round(np.arange(grid_step, 1.0 + 1e-9, grid_step), 6)
    chosen = {"ney": counts.ney_discounts(), "tuned_on_valid": tune(tables["valid"], grid)}
    if discounts is not None:
        chosen["given"] = discounts
    result = {"data_dir": data_dir, "vocab": vocab, "train_tokens": len(split["train"]), "batch_size": batch_size,
              "valid_predicted": len(tables["valid"].pair), "test_predicted": len(tables["test"].pair)}
    for name, (d1, d2) in chosen.items():
        result[name] = {"d1": round(d1, 4), "d2": round(d2, 4),
                        "valid_ppl": round(tables["valid"].perplexity(d1, d2), 2),
                        "test_ppl": round(tables["test"].perplexity(d1, d2), 2)}
    return result


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="data/shakespeare", help="folder with train.txt, valid.txt, test.txt")
    p.add_argument("--batch-size", type=int, default=1, help="score the tokens train-lm scores at this eval batch")
    p.add_argument("--grid-step", type=float, default=0.01, help="step of the discount grid tuned on valid")
    p.add_argument("--discounts", type=float, nargs=2, metavar=("D1", "D2"), help="also score these discounts")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        r = run(args.data_dir, args.batch_size, args.grid_step, tuple(args.discounts) if args.discounts else None)
    except GdasError as error:  # a missing corpus, a split too short for the batch: one line, as gdas says it
        raise SystemExit(f"kn_bigram: error: {error}") from None
    if args.json:
        print(json.dumps(r))
        return
    print(f"{r['data_dir']}: {r['vocab']} words, {r['train_tokens']} training tokens; scored at batch "
          f"{r['batch_size']}: {r['valid_predicted']} valid / {r['test_predicted']} test tokens")
    for name in ("ney", "tuned_on_valid", "given"):
        if name in r:
            e = r[name]
            print(f"{name:>15}: D1 {e['d1']:.4f} D2 {e['d2']:.4f}  valid ppl {e['valid_ppl']:.2f}  "
                  f"test ppl {e['test_ppl']:.2f}")


if __name__ == "__main__":
    main()
