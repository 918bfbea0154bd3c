"""`gdas report`: one self-contained HTML report of run directories (a multi-seed folder stands for its seeds)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gdas.reporting.report import write_report


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="write an HTML report of runs (plots and cells inlined, opens offline)",
                            description="Write one self-contained HTML report of one or several run directories; "
                                        "several runs (e.g. the seeds of a multi-seed search) are compared.")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run directory, or the folder of a multi-seed search (stands for its seed runs)")
    parser.add_argument("--out", type=Path, default=None, help="HTML file to write (default: FIRST_RUN/report.html)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    print(f"report: {write_report(args.runs, args.out)}")
    return 0
