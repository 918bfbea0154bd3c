"""`gdas search`: Algorithm 1 on a CNN search space, one seed or several (keeping the best cell)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from gdas.engine import distributed as dist
from gdas.cli.common import add_run_options, default_out, overrides, resumed_config, write_run_report
from gdas.configs import base as cfgbase
from gdas.configs.search import SEARCH_PRESETS, SearchConfig
from gdas.errors import GdasError
from gdas.engine.progress import format_duration, summary_table
from gdas.engine.rundir import RunDir, read_json, stored_config
from gdas.search import KIND, run_search, with_seed

MULTISEED = "multiseed.json"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("search", help="search a CNN cell with GDAS (Algorithm 1)",
                            description="Search a CNN cell with GDAS and derive its genotype.")
    add_run_options(parser, SEARCH_PRESETS, "fashion-mnist")
    parser.add_argument("--task", choices=("cnn", "lm"), default="cnn",
                        help="cnn: a CNN cell (this command); lm: a recurrent cell, the same as `gdas search-rnn`")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                        help="independent searches, one per seed; keeps the best final validation accuracy")
    cfgbase.add_config_options(parser, SearchConfig)
    parser.set_defaults(func=main)


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    print(f"genotype: {summary['genotype']}")
    print(f"final valid acc {summary['final_valid_acc']:.4f}  wall time {format_duration(summary['wall_time_s'])}"
          f"  search cost {summary['search_cost_device_hours']:.3f} {summary['device']}-hours")
    print(f"run directory: {out}  (train it: gdas train --genotype {out})")


def main(args: argparse.Namespace) -> int:
    show = not args.no_progress
    if args.resume is not None:
        return _resume(args, show)
    cfg = cfgbase.resolve(SEARCH_PRESETS, args.preset, overrides(args, SearchConfig))
    cfg.validate()
    out = args.out or default_out("search", args.preset)
    if args.seeds:
        _multi_seed(cfg, out, args.seeds, show, resume=False)
        write_run_report(args, [out])
        return 0
    summary = run_search(cfg, out, show_progress=show)
    if dist.context().is_main:
        _print_summary(summary, out)
    write_run_report(args, [out])
    return 0


def _resume(args: argparse.Namespace, show: bool) -> int:
    out: Path = args.resume
    if (out / MULTISEED).exists():
        meta = read_json(out / MULTISEED)
        cfg = resumed_config(cfgbase.from_json(SearchConfig, meta["config"]), args)
        _multi_seed(cfg, out, meta["seeds"], show, resume=True)
        write_run_report(args, [out])
        return 0
    cfg = resumed_config(stored_config(out, KIND, SearchConfig), args)
    if (out / "summary.json").exists():
        raise GdasError(f"{out} is already complete (summary.json exists); nothing to resume")
    summary = run_search(cfg, out, resume_run=True, show_progress=show)
    if dist.context().is_main:
        _print_summary(summary, out)
    write_run_report(args, [out])
    return 0


def _multi_seed(cfg: SearchConfig, out: Path, seeds: list[int], show: bool, *, resume: bool) -> int:
    """One run per seed under out/seed-S; the best final validation accuracy is kept (paper's protocol)."""
    if len(set(seeds)) != len(seeds):
        raise GdasError(f"--seeds has repeated values {seeds}; give distinct seeds")
    ctx = dist.context()
    parent = RunDir(out, writer=ctx.is_main)
    if not resume:
        def start() -> None:  # on rank 0 only: other ranks would see the file it has just written
            if (out / MULTISEED).exists():
                raise GdasError(f"{out} already holds a multi-seed search; continue it with --resume {out}")
            parent.write_json(MULTISEED, {"seeds": seeds, "config": cfgbase.to_json(cfg)})
        dist.main_first(start, ctx, lambda: None)
    rows = []
    for seed in seeds:
        seed_dir = out / f"seed-{seed}"
        if (seed_dir / "summary.json").exists():
            summary = read_json(seed_dir / "summary.json")
        else:
            started = (seed_dir / "checkpoint.pt").exists()
            summary = run_search(with_seed(cfg, seed), seed_dir, resume_run=started, show_progress=show)
        rows.append({"seed": seed, "valid_acc": summary["final_valid_acc"], "train_acc": summary["final_train_acc"],
                     "wall_time_s": summary["wall_time_s"], "genotype": summary["genotype"], "dir": str(seed_dir)})
    best = max(rows, key=lambda r: (r["valid_acc"], -r["seed"]))
    for row in rows:
        row["kept"] = row is best
    parent.write_json("seeds.json", {"best_seed": best["seed"], "seeds": rows})
    if ctx.is_main:
        shutil.copyfile(Path(best["dir"]) / "genotype.json", out / "genotype.json")
        print(summary_table([{**r, "kept": "*" if r["kept"] else "", "valid_acc": f"{r['valid_acc']:.4f}",
                              "train_acc": f"{r['train_acc']:.4f}",
                              "wall_time": format_duration(r["wall_time_s"])} for r in rows],
                            ["seed", "valid_acc", "train_acc", "wall_time", "kept"]))
        print(f"kept seed {best['seed']}: {best['genotype']}")
        print(f"genotype written to {out / 'genotype.json'}")
    return 0
