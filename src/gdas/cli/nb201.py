"""`gdas nb201 query`: an NB201 architecture's true accuracies from the NATS-Bench topology benchmark."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gdas.genotypes import load_genotype_of
from gdas.spaces.nb201.benchmark import BENCH_DATASETS, NATS_FILE, query
from gdas.spaces.nb201.genotype import NB201_REGISTRY, NB201Genotype


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("nb201", help="NAS-Bench-201 tools (benchmark look-ups)",
                            description="Tools for the NAS-Bench-201 search space.")
    actions = parser.add_subparsers(dest="nb201_command", metavar="ACTION", required=True)
    query = actions.add_parser(
        "query", help="true accuracies of an architecture from NATS-Bench",
        description="Validation and test accuracy (%%, mean over the benchmark's seeds, 200 epochs) of an NB201 "
                    f"architecture, read from the NATS-Bench topology benchmark ({NATS_FILE}).")
    query.add_argument("arch", help=f"NB201 string (|op~0|+|op~0|op~1|+...), a name ({', '.join(NB201_REGISTRY)}), "
                                    "a genotype.json holding {\"type\": \"nb201\", \"arch\": ...}, or the "
                                    "RUN_DIR of an nb201 search")
    query.add_argument("--benchmark", required=True, metavar="PATH",
                       help=f"the extracted {NATS_FILE} folder (or a NATS-tss .pickle.pbz2 file)")
    query.add_argument("--dataset", choices=list(BENCH_DATASETS), default=None,
                       help="one dataset (default: all three)")
    query.add_argument("--json", action="store_true", help="print one JSON object")
    query.set_defaults(func=query_main)


def load_arch(text: str) -> NB201Genotype:
    """An NB201 genotype from a string, a registry name, a genotype.json or a search run directory."""
    return load_genotype_of(text, "nb201", "NATS-Bench holds NB201 cells: pass an NB201 string, name, "
                                           "genotype.json or the run directory of an nb201 search")


def _text(info: dict[str, Any]) -> str:
    lines = [f"{info['arch']}  (NATS-Bench index {info['index']}, {info['epochs']} epochs, mean over seeds)"]
    for name, acc in info["results"].items():
        cells = [f"{split} {'n/a' if acc[split] is None else format(acc[split], '.2f') + '%'}"
                 for split in ("valid", "test")]
        lines.append(f"  {name:15s} " + "  ".join(cells))
    return "\n".join(lines)


def query_main(args: argparse.Namespace) -> int:
    info = query(load_arch(args.arch), args.benchmark, args.dataset)
    print(json.dumps(info) if args.json else _text(info))
    return 0
