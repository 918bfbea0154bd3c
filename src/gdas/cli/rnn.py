"""`gdas search-rnn` and `gdas train-lm`: search a recurrent cell, train the language model of a genotype."""

from __future__ import annotations

import argparse
from gdas.cli.common import add_run_options, run_command, write_run_report
from gdas.configs import base as cfgbase
from gdas.configs.rnn import LM_TRAIN_TABLE, RNN_SEARCH_TABLE, RNN_SEARCH_UNSUPPORTED, LMTrainConfig, RNNSearchConfig
from gdas.engine.progress import format_duration
from gdas.lm import search as rnn_search
from gdas.search import run_search
from gdas.lm import train as rnn_train


def register(sub: argparse._SubParsersAction) -> None:
    search = sub.add_parser("search-rnn", help="search a recurrent cell with GDAS (language model)",
                            description="Search a recurrent cell (DARTS space) with GDAS on a word corpus; "
                                        "the same as `gdas search --task lm`.")
    add_run_options(search, RNN_SEARCH_TABLE)
    cfgbase.add_config_options(search, RNNSearchConfig, skip=RNN_SEARCH_UNSUPPORTED)
    search.set_defaults(func=search_main)
    train = sub.add_parser("train-lm", help="train the language model of a recurrent genotype (NT-ASGD)",
                           description="Train the language model of a recurrent genotype and report validation "
                                       "and test perplexity; the same as `gdas train --task lm`.")
    add_run_options(train, LM_TRAIN_TABLE)
    cfgbase.add_config_options(train, LMTrainConfig)
    train.set_defaults(func=train_main)


def search_main(args: argparse.Namespace) -> int:
    summary = run_command(args, rnn_search.KIND, RNNSearchConfig, RNN_SEARCH_TABLE, run_search)
    print(f"genotype: {summary['genotype']}")
    print(f"final valid ppl {summary['final_valid_ppl']:.2f} (sampled cells), derived cell "
          f"{summary['final_derived_valid_ppl']:.2f}  wall time {format_duration(summary['wall_time_s'])}")
    print(f"run directory: {summary['out']}  (train it: gdas train-lm --genotype {summary['out']})")
    write_run_report(args, [summary["out"]])
    return 0


def train_main(args: argparse.Namespace) -> int:
    summary = run_command(args, rnn_train.KIND, LMTrainConfig, LM_TRAIN_TABLE, rnn_train.run_train_lm)
    print(f"valid ppl {summary['valid_ppl']:.2f}  test ppl {summary['test_ppl']:.2f}  (best epoch "
          f"{summary['best_epoch']}, {summary['params_M']}M params, wall time "
          f"{format_duration(summary['wall_time_s'])})")
    print(f"run directory: {summary['out']}")
    write_run_report(args, [summary["out"]])
    return 0
