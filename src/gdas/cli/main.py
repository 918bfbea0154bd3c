"""`gdas` entry point: builds the sub-command parser and turns user errors into one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from gdas.configs.runtime import version_text
from gdas.engine import tracking
from gdas.errors import GdasError

# Each module defines `register(subparsers)`, which adds its commands with `func=<handler>`.
COMMAND_MODULES = ("gdas.cli.search", "gdas.cli.train", "gdas.cli.rnn", "gdas.cli.info", "gdas.cli.draw",
                   "gdas.cli.report", "gdas.cli.export", "gdas.cli.bench", "gdas.cli.data", "gdas.cli.nb201",
                   "gdas.cli.latency")
# `gdas search --task lm ...` is `gdas search-rnn ...`; `gdas train --task lm ...` is `gdas train-lm ...`.
TASK_ROUTES = {("search", "lm"): "search-rnn", ("train", "lm"): "train-lm"}


def route_task(argv: list[str]) -> list[str]:
    """Rewrite `CMD --task T ...` to the command TASK_ROUTES names (other tasks stay with CMD)."""
    for i, arg in enumerate(argv[1:], start=1):
        if arg == "--task" and i + 1 < len(argv):
            value, end = argv[i + 1], i + 2
        elif arg.startswith("--task="):
            value, end = arg.partition("=")[2], i + 1
        else:
            continue
        target = TASK_ROUTES.get((argv[0], value))
        return [target, *argv[1:i], *argv[end:]] if target else argv
    return argv


class _Version(argparse.Action):
    """`--version`: the gdas version with the torch version and the device it would run on."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gdas", description="Neural architecture search with GDAS (Dong & Yang, CVPR 2019).")
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version, torch and device, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import importlib
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(route_task(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with tracking.session(getattr(args, "tracking", None), getattr(args, "tracking_uri", None)):
            return int(args.func(args) or 0)
    except GdasError as exc:
        print(f"gdas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gdas: interrupted; resume with --resume RUN_DIR", file=sys.stderr)
        return 130
    finally:
        from gdas.engine.distributed import shutdown
        shutdown()  # a torchrun job ends with its process group torn down


if __name__ == "__main__":
    raise SystemExit(main())
