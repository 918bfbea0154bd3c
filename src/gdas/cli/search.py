"""`gdas search`: Algorithm 1 in a registered search space, one seed or several (keeping the best cell)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gdas.cli.common import (add_run_options, already_complete, auto_resume_decision, auto_resume_out,
                             config_differences, default_out, overrides, resumed_config, write_run_report)
from gdas.configs import base as cfgbase
from gdas.configs.search import SEARCH_PRESETS, SearchConfig
from gdas.engine import distributed as dist
from gdas.engine import rundir as files
from gdas.engine.progress import format_duration, summary_table
from gdas.errors import GdasError
from gdas.search import run_search, stored_search_config
from gdas.selection import check_parallel, multi_seed_search


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("search", help="search a cell with GDAS (Algorithm 1) in a registered space",
                            description="Search a cell with GDAS and derive its genotype; --space darts (the "
                                        "paper's CNN space) or nb201 (NAS-Bench-201), or a preset that names one.")
    add_run_options(parser, SEARCH_PRESETS, "fashion-mnist")
    parser.add_argument("--task", choices=("cnn", "lm"), default="cnn",
                        help="cnn: an image cell (this command); lm: a recurrent cell, the same as `gdas search-rnn`")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                        help="independent searches, one per seed, on one shared D_T/D_V split (--split-seed); keeps "
                             "the cell of the best --select-by on D_V")
    parser.add_argument("--parallel", type=int, default=1, metavar="K",
                        help="run up to K seeds at once as separate processes on this device, threads divided "
                             "(the same result as one after another)")
    cfgbase.add_config_options(parser, SearchConfig)
    parser.set_defaults(func=main)


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    print(f"genotype: {summary['genotype']}")
    print(f"final valid acc {summary['final_valid_acc']:.4f}  wall time {format_duration(summary['wall_time_s'])}"
          f"  search cost {summary['search_cost_device_hours']:.3f} {summary['device']}-hours")
    if "benchmark" in summary:
        print(_benchmark_line(summary["benchmark"]))
    print(f"run directory: {out}  (train it: gdas train --genotype {out})")


def _benchmark_line(info: dict[str, Any]) -> str:
    """The derived cell's true accuracies (or why there are none) in one line."""
    if "error" in info:
        return f"{info['name']}: no look-up ({info['error']})"
    accs = "; ".join(f"{name} " + " ".join(f"{split} {'n/a' if acc is None else format(acc, '.2f') + '%'}"
                                           for split, acc in splits.items())
                     for name, splits in info["results"].items())
    return f"{info['name']} (index {info['index']}, {info['epochs']} epochs, mean over seeds): {accs}"


def _print_seeds(result: dict[str, Any], out: Path) -> None:
    rows = result["seeds"]
    retrain = result["select_by"] == "retrain"
    columns = ["seed", "valid_acc", *(["retrain_valid_acc"] if retrain else []), "train_acc", "wall_time", "kept"]
    print(summary_table([{**r, "kept": "*" if r["kept"] else "", "valid_acc": f"{r['valid_acc']:.4f}",
                          "retrain_valid_acc": f"{r['select_valid_acc'] or 0:.4f}",
                          "train_acc": f"{r['train_acc']:.4f}", "wall_time": format_duration(r["wall_time_s"])}
                         for r in rows], columns))
    how = "best retrain accuracy on D_V" if retrain else "best final search accuracy on D_V"
    print(f"kept seed {result['best_seed']} ({how}; split seed {result['split_seed']}): {result['genotype']}")
    print(f"genotype written to {out / 'genotype.json'}")


def _run(cfg: SearchConfig, out: Path, seeds: list[int] | None, *, resume: bool, show: bool, parallel: int) -> None:
    main_rank = dist.context().is_main
    check_parallel(parallel, seeds)
    if seeds:
        result = multi_seed_search(cfg, out, seeds, resume_run=resume, parallel=parallel, show_progress=show)
        if main_rank:
            _print_seeds(result, out)
    else:
        summary = run_search(cfg, out, resume_run=resume, show_progress=show)
        if main_rank:
            _print_summary(summary, out)


def _auto_mode(cfg: SearchConfig, out: Path, seeds: list[int] | None) -> str:
    """--auto-resume of one search or of a multi-seed folder (see common.auto_resume_decision); rank 0 decides."""
    def decide() -> str:
        multi = (out / files.MULTISEED).exists()
        if not multi:
            if seeds and (out / files.CONFIG).exists():
                raise GdasError(f"{out} holds a single search, not a multi-seed one; drop --seeds or choose "
                                "another --out")
            return "new" if seeds else auto_resume_decision(out, "search", cfg)
        stored, stored_seeds = stored_search_config(out)
        differing = config_differences(stored, cfg) + (["--seeds"] if stored_seeds != seeds else [])
        if differing:
            raise GdasError(f"{out} holds a multi-seed search of another config ({', '.join(differing)} "
                            "differ); give the options it was started with, or choose another --out")
        return "complete" if (out / files.SEEDS).exists() else "resume"
    return dist.decided_by_main(decide, dist.context())


def main(args: argparse.Namespace) -> int:
    show = not args.no_progress
    if args.auto_resume:
        out = auto_resume_out(args)
        cfg = cfgbase.resolve(SEARCH_PRESETS, args.preset, overrides(args, SearchConfig))
        cfg.validate()
        mode = _auto_mode(cfg, out, args.seeds)
        if mode == "complete":
            done = already_complete(out, files.SEEDS if args.seeds else files.SUMMARY)
            if args.seeds is None and dist.context().is_main:
                _print_summary(done, out)
            return 0
        _run(cfg, out, args.seeds, resume=mode == "resume", show=show, parallel=args.parallel)
    elif args.resume is not None:
        out = args.resume
        stored, seeds = stored_search_config(out)
        if not isinstance(stored, SearchConfig):
            raise GdasError(f"{out} holds a recurrent search; resume it with gdas search-rnn --resume {out}")
        _run(resumed_config(stored, args), out, seeds, resume=True, show=show, parallel=args.parallel)
    else:
        cfg = cfgbase.resolve(SEARCH_PRESETS, args.preset, overrides(args, SearchConfig))
        cfg.validate()
        out = args.out or default_out("search", args.preset)
        _run(cfg, out, args.seeds, resume=False, show=show, parallel=args.parallel)
    write_run_report(args, [out])
    return 0
