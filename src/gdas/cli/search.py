"""`gdas search`: Algorithm 1 in a registered search space, one seed or several (keeping the best cell)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gdas import api
from gdas.cli.common import add_run_options, overrides, run_target, write_run_report
from gdas.configs import base as cfgbase
from gdas.configs.search import SEARCH_TABLE, SearchConfig
from gdas.engine import distributed as dist
from gdas.engine.progress import format_duration, summary_table


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("search", help="search a cell with GDAS (Algorithm 1) in a registered space",
                            description="Search a cell with GDAS and derive its genotype; --space darts (the "
                                        "paper's CNN space) or nb201 (NAS-Bench-201), or a preset that names one.")
    add_run_options(parser, SEARCH_TABLE)
    parser.add_argument("--task", choices=("cnn", "lm"), default="cnn",
                        help="cnn: an image cell (this command); lm: a recurrent cell, the same as `gdas search-rnn`")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                        help="independent searches, one per seed, on one shared D_T/D_V split (--split-seed); keeps "
                             "the cell of the best --select-by on D_V")
    parser.add_argument("--parallel", type=int, default=1, metavar="K",
                        help="run up to K seeds (and --random-baseline retrains) at once as separate processes on "
                             "this device, threads divided (the same result as one after another)")
    cfgbase.add_config_options(parser, SearchConfig)
    parser.set_defaults(func=main)


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    print(f"genotype: {summary['genotype']}")
    measured = f" on {summary['valid_images']:,} D_V images" if summary.get("valid_images") else ""
    print(f"final valid acc {summary['final_valid_acc']:.4f}{measured}  wall time {format_duration(summary['wall_time_s'])}"
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


def _print_baseline(record: dict[str, Any]) -> None:
    """Every cell of --random-baseline by D_V error, the searched ones with their rank, and the random cells'
    mean and spread."""
    several = len(record["searched"]) > 1
    cells = [{**row, "cell": f"seed {row['seed']}{' (kept)' if row.get('kept') else ''}" if several else "searched",
              "rank": f"{row['rank']}/{record['cells'] + 1}"} for row in record["searched"]]
    cells += [{**row, "cell": row["dir"]} for row in record["random"]]
    cells.sort(key=lambda row: (row["valid_err"], "rank" not in row))
    print(f"random baseline: {record['cells']} random cells, each retrained like the searched ones "
          f"(--select-epochs {record['select_epochs']} on D_T, error on {record['valid_images']:,} D_V images; "
          f"sizes at C={record['size']['C']}, N={record['size']['N']})")
    print(summary_table([{**row, "valid_err": f"{row['valid_err']:.4f}"} for row in cells],
                        ["cell", "valid_err", "rank", "params_M", "mult_adds_M"]))
    std = record["valid_err_std"]
    spread = f" ± {std:.4f} (sd)" if std is not None else ""
    print(f"random cells: D_V error {record['valid_err_mean']:.4f}{spread}, {record['valid_err_min']:.4f} to "
          f"{record['valid_err_max']:.4f}; {record['params_M_mean']:.3f} M params, "
          f"{record['mult_adds_M_mean']:.1f} M mult-adds on average (rank 1 = best)")


def main(args: argparse.Namespace) -> int:
    out, resume = run_target(args)
    result = api.start_search(None, preset=args.preset, config=args.config, out=out, resume=resume, seeds=args.seeds,
                        parallel=args.parallel, progress=not args.no_progress, **overrides(args, SearchConfig))
    if dist.context().is_main:
        if result.seeds is not None:
            if "genotype" in result.summary:  # not when --auto-resume found the multi-seed search complete
                _print_seeds(result.summary, result.run_dir)
        else:
            _print_summary(result.summary, result.run_dir)
        if "random_baseline" in result.summary:
            _print_baseline(result.summary["random_baseline"])
    write_run_report(args, [result.run_dir])
    return 0
