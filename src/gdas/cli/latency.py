"""`gdas latency build|check`: a latency table of this device for a space's final network, and how far to trust it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gdas.cli.common import overrides
from gdas.configs import base as cfgbase
from gdas.configs.latency import LATENCY_PRESET_HELP, LatencyConfig
from gdas.configs.search import SEARCH_TABLE
from gdas.engine.progress import summary_table
from gdas.latency.build import build_table
from gdas.latency.check import check_table
from gdas.latency.table import load_table


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("latency", help="measure a latency table of this device; check its predictions",
                            description="Latency tables for --cost latency (docs/latency.md): every candidate op "
                                        "timed at every place of a final network on this device, and checked "
                                        "against whole networks.")
    latency_sub = parser.add_subparsers(dest="latency_command", metavar="WHAT", required=True)

    build = latency_sub.add_parser("build", help="measure every candidate op at every place of a final network",
                                   description="Time each candidate op of a space at each place it runs in the "
                                               "final network (input shape, stride, channels), the network "
                                               "without its searched ops (the fixed part), and a few whole random "
                                               "networks (the overhead term), on this device; write the table.")
    build.add_argument("--out", type=Path, required=True, metavar="FILE", help="the table to write (JSON)")
    build.add_argument("--preset", default="demo", choices=SEARCH_TABLE.names(), metavar="PRESET",
                       help=f"{LATENCY_PRESET_HELP} ({', '.join(SEARCH_TABLE.names())}; default: demo)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    cfgbase.add_config_options(build, LatencyConfig)
    build.set_defaults(func=_build)

    check = latency_sub.add_parser("check", help="predicted vs measured latency of random networks",
                                   description="Build random networks of the table's space at its size, time each "
                                               "end to end under the table's settings and compare with the "
                                               "table's prediction: mean absolute percentage error and Spearman's "
                                               "rank correlation.")
    check.add_argument("table", metavar="TABLE", help="a table from gdas latency build")
    check.add_argument("--samples", type=int, default=20, metavar="N", help="random networks (default: 20)")
    check.add_argument("--seed", type=int, default=1, help="seed of the networks (default: 1)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--no-progress", action="store_true", help="no progress bar")
    check.set_defaults(func=_check)


def _build(args: argparse.Namespace) -> int:
    cfg = cfgbase.apply_overrides(LatencyConfig(preset=args.preset), overrides(args, LatencyConfig))
    table = build_table(cfg, str(args.out), progress=not args.no_progress)
    table.save(args.out)
    print(f"{args.out}: {table.describe()}")
    print(f"  fixed part {table.fixed_ms:.3f} ms, {len(table.places)} places; fit {table.calibration['fit']} on "
          f"{len(table.calibration['networks'])} whole networks: ops x {table.ops_scale:.3f}, overhead "
          f"{table.overhead_ms:+.3f} ms")
    print(f"  check it: gdas latency check {args.out} --samples 20")
    return 0


def _check(args: argparse.Namespace) -> int:
    table = load_table(args.table, option="TABLE")
    result = check_table(table, args.samples, args.seed, progress=not args.no_progress and not args.json)
    if args.json:
        print(json.dumps(result))
        return 0
    rows = [{"network": i + 1, "measured_ms": r["measured_ms"], "predicted_ms": r["predicted_ms"],
             "plain_ms": r["plain_ms"]} for i, r in enumerate(result["networks"])]
    print(summary_table(rows, ["network", "measured_ms", "predicted_ms", "plain_ms"]))
    rho = "n/a" if result["spearman"] is None else f"{result['spearman']:.3f}"
    print(f"MAPE {result['mape_percent']:.1f} %  Spearman {rho}  (plain sum of the fixed part and the ops, without "
          f"the fit: MAPE {result['plain_mape_percent']:.1f} %) over {result['samples']} networks; load "
          f"{result['machine']['load_avg_1m']} -> {result['machine']['load_avg_1m_after']}")
    return 0
