"""`gdas train`: train the final CNN network of a genotype with a paper recipe and report top-1/top-5 error."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gdas import api
from gdas.cli.common import add_run_options, overrides, run_target, write_run_report
from gdas.configs import base as cfgbase
from gdas.configs.train import TRAIN_TABLE, TrainConfig
from gdas.engine import distributed as dist
from gdas.engine.progress import format_duration


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train the final network of a CNN genotype (CIFAR, ImageNet, ...)",
                            description="Train the final CNN network of a genotype and report top-1/top-5 "
                                        "test error of its last weights; --valid-portion holds out a "
                                        "validation part that picks best.pt. --genotype takes a registry "
                                        "name, a genotype.json or a search run directory.")
    add_run_options(parser, TRAIN_TABLE)
    parser.add_argument("--task", choices=("cnn", "lm"), default="cnn",
                        help="cnn: a CNN (this command); lm: a language model, the same as `gdas train-lm`")
    cfgbase.add_config_options(parser, TrainConfig)
    parser.set_defaults(func=main)


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _images(summary: dict[str, Any], split: str, name: str = "") -> str:
    """" on N test images": what an error was measured on (summaries from before the counts have none)."""
    n = summary.get(f"{split}_images")
    return f" on {n:,} {name or split} images" if n else ""


def print_summary(summary: dict[str, Any], out: Path) -> None:
    print(f"genotype: {summary['genotype']}")
    tested = _images(summary, "test")
    print(f"test top-1 error {_pct(summary['final_top1_err'])}  top-5 error {_pct(summary['final_top5_err'])}"
          f"{tested}  (last epoch's weights)")
    if "best_valid_top1_err" in summary:  # only runs with a validation part pick a best epoch
        print(f"best validation top-1 error {_pct(summary['best_valid_top1_err'])} at epoch {summary['best_epoch']}"
              f"{_images(summary, 'valid', 'validation')} (best.pt): test top-1 error "
              f"{_pct(summary['best_test_top1_err'])}  top-5 error {_pct(summary['best_test_top5_err'])}{tested}")
    print(f"{summary['params_M']:.2f}M params (without the auxiliary head), {summary['mult_adds_M']:.1f}M "
          f"multiply-adds per image, wall time {format_duration(summary['wall_time_s'])}")
    print(f"run directory: {out}  (export it: gdas export {out} --format onnx)")


def main(args: argparse.Namespace) -> int:
    out, resume = run_target(args)
    fields = overrides(args, TrainConfig)
    result = api.start_train(fields.pop("genotype", None), None, preset=args.preset, config=args.config, out=out,
                       resume=resume, progress=not args.no_progress, **fields)
    if dist.context().is_main:
        print_summary(result.summary, result.run_dir)
    write_run_report(args, [result.run_dir])
    return 0
