"""`gdas` entry point: builds the sub-command parser and turns user errors into one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from gdas import __version__
from gdas.errors import GdasError

# Each module defines `register(subparsers)`, which adds its commands with `func=<handler>`.
COMMAND_MODULES = ("gdas.cli.search", "gdas.cli.draw", "gdas.cli.bench", "gdas.cli.report",
                   "gdas.cli.train", "gdas.cli.info", "gdas.cli.export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gdas", description="Neural architecture search with GDAS (Dong & Yang, CVPR 2019).")
    parser.add_argument("--version", action="version", version=f"gdas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import importlib
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GdasError as exc:
        print(f"gdas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gdas: interrupted; resume with --resume RUN_DIR", file=sys.stderr)
        return 130
    finally:
        from gdas.distributed import shutdown
        shutdown()  # a torchrun job ends with its process group torn down


if __name__ == "__main__":
    raise SystemExit(main())
