"""Searched cells against random cells of the same space, from the run folders (docs/quality.md's tables).

    # a random cell: darts, the space's own rule (per node two distinct earlier inputs, a uniform op but
    # `none`); nb201, a uniform op on every edge, `none` included
    python scripts/search_vs_random.py draw darts SEED random-SEED.json
    # what each search's A learnt: mean top-op probability of softmax(A), the derived cell's parameter-free ops
    python scripts/search_vs_random.py searches runs/search-*
    # the searched cells' ranks among the random cells of `gdas search --random-baseline K`
    python scripts/search_vs_random.py ranks runs/search-*
    # test errors of trained cells, by group, with a Welch t-test of searched against random
    python scripts/search_vs_random.py compare --searched runs/train-demo-* --random runs/train-random-*

`compare` reads each training run's summary.json (`final_top1_err`, `params_M`, `mult_adds_M`) and its
config.json's `genotype`: when that is a search folder, the search's A is read too.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from gdas.configs.search import SEARCH_PRESETS
from gdas.genotypes import load_genotype, save_genotype
from gdas.spaces import get_space

PRESET = {"darts": "demo", "nb201": "nb201-demo"}  # the search whose random cells are drawn


def draw(space: str, seed: int, out: Path) -> None:
    """Random cell `seed` of the space, drawn by the space's own rule as `gdas search --random-baseline` draws its
    cell `seed` (darts: per node two distinct earlier inputs, a uniform op but `none`; nb201: a uniform op on
    every edge, `none` included)."""
    genotype = get_space(space).random_genotype(torch.Generator().manual_seed(seed), SEARCH_PRESETS[PRESET[space]])
    save_genotype(genotype, out)
    print(genotype)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def top_op(search: Path) -> tuple[float, int]:
    """The mean over the searched edges of softmax(A)'s largest probability after the last epoch, and the
    number of edges (darts: normal and reduction cell, 28; nb201: 6)."""
    lines = (search / "alphas.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    edges = [max(row) for key, rows in last.items() if key not in ("epoch", "tau", "ops") and rows
             for row in rows]
    return sum(edges) / len(edges), len(edges)


def search_row(search: Path) -> dict[str, Any]:
    summary = _read_json(search / "summary.json")
    config = _read_json(search / "config.json")["config"]
    p, edges = top_op(search)
    return {"run": search.name, "seed": config["seed"], "a_lr": config["a_lr"],
            "warmup": config["warmup_epochs"], "epochs": config["epochs"], "top_op": p, "edges": edges,
            "param_free": summary["param_free_ops"], "valid_acc": summary.get("final_valid_acc"),
            "wall_s": summary.get("wall_time_s"), "genotype": summary["genotype"]}


def train_row(run: Path, group: str) -> dict[str, Any]:
    summary = _read_json(run / "summary.json")
    spec = _read_json(run / "config.json")["config"]["genotype"]
    genotype = load_genotype(spec)
    search = Path(spec)
    row = {"group": group, "run": run.name, "cell": Path(spec).name, "param_free": genotype.param_free_count(),
           "err": 100 * summary["final_top1_err"] if summary["final_top1_err"] <= 1 else summary["final_top1_err"],
           "params_M": summary.get("params_M"), "mult_adds_M": summary.get("mult_adds_M"), "top_op": None}
    if search.is_dir() and (search / "alphas.jsonl").exists():
        row["top_op"] = top_op(search)[0]
    return row


def student_t_sf2(t: float, df: float) -> float:
    """Two-sided p-value of Student's t with `df` degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2)."""
    return _betainc(df / 2, 0.5, df / (df + t * t))


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the continued fraction converges fast on this side only
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * f / a


def welch(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Welch's t-test of mean(x) against mean(y): t, Welch-Satterthwaite df, two-sided p, and the one-sided p
    of mean(x) < mean(y)."""
    vx, vy = statistics.variance(x) / len(x), statistics.variance(y) / len(y)
    t = (statistics.fmean(x) - statistics.fmean(y)) / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    p2 = student_t_sf2(t, df)
    return {"t": t, "df": df, "p_two_sided": p2, "p_less": p2 / 2 if t < 0 else 1 - p2 / 2}


def _fmt(value: Optional[float], spec: str) -> str:
    return "" if value is None else format(value, spec)


def complete(runs: list[Path]) -> list[Path]:
    """The runs that finished (summary.json written); the others are named on stderr and left out."""
    done = [r for r in runs if (r / "summary.json").exists()]
    for r in sorted(set(runs) - set(done)):
        print(f"left out (no summary.json, not finished): {r}", file=sys.stderr)
    return done


def print_searches(runs: list[Path]) -> None:
    rows = [search_row(r) for r in complete(runs)]
    print("| run | seed | A lr | warm-up | epochs | top-op p | param-free | final valid acc | wall s | cell |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r['run']} | {r['seed']} | {r['a_lr']:g} | {r['warmup']} | {r['epochs']} | {r['top_op']:.3f} | "
              f"{r['param_free']} | {_fmt(r['valid_acc'], '.3f')} | {_fmt(r['wall_s'], '.0f')} | "
              f"`{r['genotype']}` |")
    if len(rows) > 1:
        tops, free = [r["top_op"] for r in rows], [r["param_free"] for r in rows]
        print(f"\nmean over {len(rows)} runs: top-op p {statistics.fmean(tops):.3f} (sd {statistics.stdev(tops):.3f}), "
              f"param-free {statistics.fmean(free):.2f} of the derived cell's "
              f"{'6 edges' if rows[0]['edges'] == 6 else '8 normal-cell ops'}")


def print_compare(searched: list[Path], random: list[Path]) -> None:
    rows = ([train_row(r, "searched") for r in complete(searched)] +
            [train_row(r, "random") for r in complete(random)])
    print("| cells | training run | cell | param-free | search top-op p | test error | params | mult-adds |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['group']} | {r['run']} | {r['cell']} | {r['param_free']} | {_fmt(r['top_op'], '.3f')} | "
              f"{r['err']:.2f} % | {_fmt(r['params_M'], '.3f')} M | {_fmt(r['mult_adds_M'], '.2f')} M |")
    print("\n| group | runs | mean test error | standard deviation | range |")
    print("| --- | ---: | ---: | ---: | --- |")
    errors = {}
    for group in ("searched", "random"):
        errs = [r["err"] for r in rows if r["group"] == group]
        errors[group] = errs
        sd = statistics.stdev(errs) if len(errs) > 1 else float("nan")
        print(f"| {group} | {len(errs)} | {statistics.fmean(errs):.2f} % | {sd:.2f} | "
              f"{min(errs):.2f}-{max(errs):.2f} % |")
    if min(len(e) for e in errors.values()) < 2:
        return
    w = welch(errors["searched"], errors["random"])
    diff = statistics.fmean(errors["searched"]) - statistics.fmean(errors["random"])
    print(f"\nWelch t-test, searched - random: {diff:+.2f} points, t = {w['t']:.2f}, df = {w['df']:.1f}, "
          f"two-sided p = {w['p_two_sided']:.3f}, one-sided p (searched better) = {w['p_less']:.3f}")


def print_ranks(runs: list[Path]) -> None:
    """Each search's `--random-baseline` ranking (summary.json's random_baseline): the searched cell's D_V error
    and rank among the K random cells retrained with the same selection protocol."""
    print("| search | searched cell D_V error | rank (of K + 1) | random cells: mean | sd | range | searched params | "
          "random params (mean) |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    ranks, cells = [], 0
    for run in complete(runs):
        rb = _read_json(run / "summary.json").get("random_baseline")
        if rb is None:
            print(f"left out (no random_baseline in summary.json): {run}", file=sys.stderr)
            continue
        cells = rb["cells"]
        for cell in rb["searched"]:
            ranks.append(cell["rank"])
            print(f"| {run.name} | {100 * cell['valid_err']:.2f} % | {cell['rank']} of {rb['cells'] + 1} | "
                  f"{100 * rb['valid_err_mean']:.2f} % | {100 * (rb['valid_err_std'] or 0):.2f} | "
                  f"{100 * rb['valid_err_min']:.2f}-{100 * rb['valid_err_max']:.2f} % | {cell['params_M']:.3f} M | "
                  f"{rb['params_M_mean']:.3f} M |")
    if ranks:
        print(f"\nmean rank {statistics.fmean(ranks):.1f} over {len(ranks)} searches (1 is best; a cell drawn at random "
              f"has mean rank {(cells + 2) / 2:.1f})")


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("draw", help="write a random cell of a space as genotype JSON")
    d.add_argument("space", choices=("darts", "nb201"))
    d.add_argument("seed", type=int)
    d.add_argument("out", type=Path)
    s = sub.add_parser("searches", help="what each search's A learnt")
    s.add_argument("runs", nargs="+", type=Path)
    r = sub.add_parser("ranks", help="the searched cells' --random-baseline ranks")
    r.add_argument("runs", nargs="+", type=Path)
    c = sub.add_parser("compare", help="trained searched cells against trained random cells")
    c.add_argument("--searched", nargs="+", type=Path, required=True)
    c.add_argument("--random", nargs="+", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "draw":
        draw(args.space, args.seed, args.out)
    elif args.command == "searches":
        print_searches(sorted(args.runs))
    elif args.command == "ranks":
        print_ranks(sorted(args.runs))
    else:
        print_compare(sorted(args.searched), sorted(args.random))


if __name__ == "__main__":
    sys.exit(main())
