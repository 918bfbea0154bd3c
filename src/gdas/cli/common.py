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
from gdas.engine.rundir import ALPHAS, CHECKPOINT, CONFIG, GENOTYPES, METRICS, SUMMARY, RunDir, read_json, stored_config

C = TypeVar("C")

# Fields that may change when a run is resumed (they do not change the result on one device; the benchmark
# is only read once the search has ended).
RESUME_MUTABLE = frozenset({"device", "threads", "data_dir", "benchmark"})
# Fields whose default (None: `auto`, the first seed's split) is resolved when a run starts and stored
# resolved: None matches whatever is stored.
RESOLVED_AT_START = frozenset({"channels_last", "split_seed"})


def default_out(command: str, preset: str) -> Path:
    return Path("runs") / f"{command}-{preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def add_run_options(parser: argparse.ArgumentParser, presets: Mapping[str, Any], default_preset: str) -> None:
    parser.add_argument("--preset", default=default_preset, choices=list(presets),
                        help=f"named configuration (default: {default_preset})")
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


def config_differences(stored: Any, cfg: Any) -> list[str]:
    """The options whose values differ between two configs, besides those a resume may change."""
    old, new = cfgbase.to_json(stored), cfgbase.to_json(cfg)
    return [cfgbase.option_name(k) for k in sorted(set(old) | set(new))
            if k not in RESUME_MUTABLE and old.get(k) != new.get(k)
            and not (k in RESOLVED_AT_START and new.get(k) is None)]


def auto_resume_decision(out: Path, kind: str, cfg: Any) -> str:
    """What --auto-resume does with `out`: "new" (no run there), "resume" (an unfinished run of this config)
    or "complete"; a run of another config is refused. Call it on rank 0 only (it may reset `out`)."""
    if not (out / CONFIG).exists():
        return "new"
    differing = config_differences(stored_config(out, kind, type(cfg)), cfg)
    if differing:
        raise GdasError(f"{out} holds a run of another config ({', '.join(differing)} differ); give the options "
                        "it was started with, or choose another --out")
    if (out / SUMMARY).exists():
        return "complete"
    if not (out / CHECKPOINT).exists():  # stopped before its first checkpoint: start it again in place
        RunDir(out).truncate_jsonl((METRICS, ALPHAS, GENOTYPES), 0)
        (out / CONFIG).unlink()
        return "new"
    return "resume"


def auto_resume_out(args: argparse.Namespace) -> Path:
    """The run folder of --auto-resume, which needs --out and excludes --resume."""
    if args.resume is not None:
        raise GdasError("--auto-resume and --resume exclude each other; use --auto-resume with --out DIR")
    if args.out is None:
        raise GdasError("--auto-resume needs --out DIR: the run folder to start or to continue")
    return args.out


def already_complete(out: Path, marker: str = SUMMARY) -> dict[str, Any]:
    """The stored results (`marker`) of a finished run that --auto-resume found; nothing is run again."""
    if dist.context().is_main:
        print(f"{out} is already complete ({marker} exists); nothing to run")
    return read_json(out / marker)


def start_or_resume(args: argparse.Namespace, kind: str, cls: type, presets: Mapping[str, Any],
                    runner: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Start a new run of `kind` from a preset and overrides, or resume one with its stored config.

    `runner(cfg, out, resume_run=..., show_progress=...)` runs it; its summary comes back with `out` added.
    """
    show = not args.no_progress
    if getattr(args, "auto_resume", False):
        out = auto_resume_out(args)
        cfg = cfgbase.resolve(presets, args.preset, overrides(args, cls))
        cfg.validate()
        mode = dist.decided_by_main(lambda: auto_resume_decision(out, kind, cfg), dist.context())
        if mode == "complete":
            return already_complete(out) | {"out": out}
        return runner(cfg, out, resume_run=mode == "resume", show_progress=show) | {"out": out}
    if args.resume is not None:
        out = args.resume
        cfg = resumed_config(stored_config(out, kind, cls), args)
        if (out / "summary.json").exists():
            raise GdasError(f"{out} is already complete (summary.json exists); nothing to resume")
        return runner(cfg, out, resume_run=True, show_progress=show) | {"out": out}
    cfg = cfgbase.resolve(presets, args.preset, overrides(args, cls))
    cfg.validate()
    out = args.out or default_out(kind, args.preset)
    return runner(cfg, out, show_progress=show) | {"out": out}
