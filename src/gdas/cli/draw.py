"""`gdas draw`: genotype (registry name, JSON file, text, or run directory) -> DOT, SVG and PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from gdas.reporting.draw import draw_genotype
from gdas.errors import GdasError
from gdas.genotypes import load_genotype
from gdas.spaces import space_of


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("draw", help="draw a genotype's cells (DOT; SVG/PNG when graphviz is present)")
    parser.add_argument("genotype", help="registry name (e.g. GDAS), genotype.json, genotype text, or RUN_DIR")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: RUN_DIR/cells for a run, else ./cells-NAME)")
    parser.add_argument("--formats", nargs="+", default=["svg", "png"], choices=["svg", "png", "pdf"])
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    genotype = load_genotype(args.genotype)
    if not space_of(genotype).dot(genotype):
        raise GdasError(f"{genotype.kind} genotypes have no cells to draw; print it with gdas info, or see each "
                        "label's distribution with gdas report RUN_DIR")
    source = Path(args.genotype)
    out = args.out or (source / "cells" if source.is_dir() else Path(f"cells-{source.stem or 'genotype'}"))
    for path in draw_genotype(genotype, out, formats=tuple(args.formats)):
        print(path)
    return 0
