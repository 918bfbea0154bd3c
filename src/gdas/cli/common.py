"""Options and helpers shared by the commands: run folders, presets, resume checks."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, TypeVar

from gdas.configs.runtime import TRACKING_BACKENDS
from gdas.engine import distributed as dist
from gdas.engine import tracking
from gdas.configs import base as cfgbase
from gdas.errors import GdasError
from gdas.engine.rundir import stored_config

C = TypeVar("C")

# Fields that may change when a run is resumed (they do not change the result on one device).
RESUME_MUTABLE = frozenset({"device", "threads", "data_dir"})


def default_out(command: str, preset: str) -> Path:
    return Path("runs") / f"{command}-{preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def add_run_options(parser: argparse.ArgumentParser, presets: Mapping[str, Any], default_preset: str) -> None:
    parser.add_argument("--preset", default=default_preset, choices=list(presets),
                        help=f"named configuration (default: {default_preset})")
    parser.add_argument("--out", type=Path, default=None, help="run directory to create (default: runs/...)")
    parser.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                        help="continue a killed run from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-report", action="store_true",
                        help="do not write RUN_DIR/report.html (plots, cells, curves) at the end of the run")
    parser.add_argument("--tracking", default=None, metavar="|".join(TRACKING_BACKENDS),
                        help="also log config, per-epoch metrics and results to an experiment tracker")
    parser.add_argument("--tracking-uri", default=None, metavar="URI",
                        help=f"its tracking store: a server URL or a local folder (default: {tracking.DEFAULT_URI})")


def write_run_report(args: argparse.Namespace, run_dirs: Sequence[Path]) -> Optional[Path]:
    """The end-of-run HTML report (unless --no-report); a failure is a one-line warning, never a failed run."""
    if getattr(args, "no_report", False) or not dist.context().is_main:
        return None
    try:
        from gdas.reporting.report import write_report
        path = write_report(list(run_dirs))
    except GdasError as exc:
        print(f"gdas: warning: no report written: {exc}", file=sys.stderr)
        return None
    except Exception as exc:  # the run's results are on disk already; the report can be redone
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        print(f"gdas: warning: no report written ({type(exc).__name__}: {first}); "
              f"retry with gdas report {run_dirs[0]}", file=sys.stderr)
        return None
    print(f"report: {path}")
    tracking.current().report_written(Path(run_dirs[0]), path)
    return path


def overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The config fields the user set on the command line."""
    names = {f.name for f in dataclasses.fields(cls)} - {"preset"}
    return {k: v for k, v in vars(args).items() if k in names}


def resumed_config(stored: C, args: argparse.Namespace) -> C:
    """The stored config of a run, with only resume-safe overrides; any other change is an error."""
    changes = overrides(args, type(stored))
    differing = sorted(k for k, v in changes.items()
                       if k not in RESUME_MUTABLE and getattr(stored, k) != (tuple(v) if isinstance(v, list) else v))
    if differing:
        opts = ", ".join(cfgbase.option_name(k) for k in differing)
        raise GdasError(f"cannot resume with a different config ({opts} differ from the stored run); "
                        "drop those options or start a new run with --out")
    return cfgbase.apply_overrides(stored, {k: v for k, v in changes.items() if k in RESUME_MUTABLE})


def start_or_resume(args: argparse.Namespace, kind: str, cls: type, presets: Mapping[str, Any],
                    runner: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Start a new run of `kind` from a preset and overrides, or resume one with its stored config.

    `runner(cfg, out, resume_run=..., show_progress=...)` runs it; its summary comes back with `out` added.
    """
    show = not args.no_progress
    if args.resume is not None:
        out: Path = args.resume
        cfg = resumed_config(stored_config(out, kind, cls), args)
        if (out / "summary.json").exists():
            raise GdasError(f"{out} is already complete (summary.json exists); nothing to resume")
        return runner(cfg, out, resume_run=True, show_progress=show) | {"out": out}
    cfg = cfgbase.resolve(presets, args.preset, overrides(args, cls))
    cfg.validate()
    out = args.out or default_out(kind, args.preset)
    return runner(cfg, out, show_progress=show) | {"out": out}
