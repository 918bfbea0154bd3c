"""Options and helpers shared by the commands: run options (--preset, --config, --out, --resume, ...), the run
a command's options ask for, the end-of-run report."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from gdas.configs.base import Presets
from gdas.configs.files import resolve_config
from gdas.configs.runtime import TRACKING_BACKENDS
from gdas.engine import distributed as dist
from gdas.engine import tracking
from gdas.errors import GdasError
from gdas.runs import Resume, Runner, resume_changes, start_or_resume


def add_run_options(parser: argparse.ArgumentParser, presets: Presets) -> None:
    aliases = ", ".join(f"{alias} = {name}" for alias, name in presets.aliases.items())
    parser.add_argument("--preset", default=None, choices=presets.names(), metavar="PRESET",
                        help=f"named configuration: {', '.join(presets.configs)}"
                             f"{f' (also: {aliases})' if aliases else ''}; default: the --config file's preset, "
                             f"else {presets.default}")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="JSON or YAML file of config fields (may name a preset; a run's config.json repeats "
                             "that run); options given here override it")
    parser.add_argument("--out", type=Path, default=None, help="run directory to create (default: runs/...)")
    parser.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                        help="continue a killed run from its last checkpoint")
    parser.add_argument("--auto-resume", action="store_true",
                        help="with --out: start the run, or continue it if --out holds an unfinished run of the "
                             "same config (the same command again, e.g. torchrun --max-restarts)")
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


def run_target(args: argparse.Namespace) -> tuple[Optional[Path], Resume]:
    """(run folder, resume mode) that --out, --resume and --auto-resume ask for."""
    if args.auto_resume:
        if args.resume is not None:
            raise GdasError("--auto-resume and --resume exclude each other; use --auto-resume with --out DIR")
        if args.out is None:
            raise GdasError("--auto-resume needs --out DIR: the run folder to start or to continue")
        return args.out, "auto"
    if args.resume is not None:
        return args.resume, True
    return args.out, False


def run_command(args: argparse.Namespace, kind: str, cls: type, presets: Presets, runner: Runner) -> dict[str, Any]:
    """Start or resume the run of `kind` the options ask for; its summary comes back with `out` added."""
    out, resume = run_target(args)
    fields = overrides(args, cls)
    show = not args.no_progress
    if resume is True:
        changes = resume_changes(cls, kind, args.config, fields, "")
        out, summary = start_or_resume(kind, cls, runner, None, out=out, resume=True, changes=changes,
                                       show_progress=show)
    else:
        cfg = resolve_config(cls, presets, kind=kind, preset=args.preset, config=args.config, overrides=fields)
        out, summary = start_or_resume(kind, cls, runner, cfg, out=out, resume=resume, show_progress=show)
    return summary | {"out": out}
