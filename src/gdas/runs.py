"""Starting, resuming or completing a run folder: the one dispatch of `gdas search` / `gdas train` / the LM
commands and of the Python API (new run, --resume RUN_DIR, --auto-resume with --out)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional, TypeVar, Union

from gdas.configs import base as cfgbase
from gdas.configs.files import read_config_file
from gdas.engine import distributed as dist
from gdas.engine import rundir as files
from gdas.engine.rundir import CONFIG, SUMMARY, read_json, stored_config
from gdas.errors import GdasError

C = TypeVar("C")
Resume = Union[bool, Literal["auto"]]  # False: a new run; True: continue RUN_DIR; "auto": start or continue out
Runner = Callable[..., dict[str, Any]]
Prepare = Optional[Callable[[], None]]  # runs right before a new run starts (e.g. writes its data file)

# Fields that may change when a run is resumed (they do not change the result on one device; the benchmark
# is only read once the search has ended).
RESUME_MUTABLE = frozenset({"device", "threads", "data_dir", "benchmark"})
# Fields whose default (None: `auto`, the first seed's split) is resolved when a run starts and stored
# resolved: None matches whatever is stored.
RESOLVED_AT_START = frozenset({"channels_last", "split_seed"})


def default_out(command: str, preset: str) -> Path:
    return Path("runs") / f"{command}-{preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def resumed_config(stored: C, changes: Mapping[str, Any]) -> C:
    """The stored config of a run, with only resume-safe `changes`; any other change is an error."""
    names = {f for f in cfgbase.to_json(stored)} - {"preset"}
    changes = {k: v for k, v in changes.items() if k in names}
    differing = sorted(k for k, v in changes.items()
                       if k not in RESUME_MUTABLE and getattr(stored, k) != (tuple(v) if isinstance(v, list) else v))
    if differing:
        opts = ", ".join(cfgbase.option_name(k) for k in differing)
        raise GdasError(f"cannot resume with a different config ({opts} differ from the stored run); "
                        "drop those options or start a new run with --out")
    return cfgbase.apply_overrides(stored, {k: v for k, v in changes.items() if k in RESUME_MUTABLE})


def config_differences(stored: Any, cfg: Any) -> list[str]:
    """The options whose values differ between two configs, besides those a resume may change and the preset
    values the stored run fitted to its data when it started (named in its `adjusted`: e.g. the A lr fitted to
    its A steps), which a new command that does not set them fits alike."""
    old, new = cfgbase.to_json(stored), cfgbase.to_json(cfg)
    fitted = {note.split(" ", 1)[0] for note in old.get("adjusted", ())} - set(new.get("given", ()))
    return [cfgbase.option_name(k) for k in sorted(set(old) | set(new))
            if k not in RESUME_MUTABLE and k not in cfgbase.RECORD_FIELDS and old.get(k) != new.get(k)
            and not (k in RESOLVED_AT_START and new.get(k) is None) and k not in fitted]


def continued_config(stored: C, cfg: Any) -> C:
    """The config --auto-resume continues a run with: its stored one (what it recorded included, e.g. what its
    --cost-target counts), with the new command's resume-safe fields."""
    given = cfgbase.to_json(cfg)
    return cfgbase.apply_overrides(stored, {k: given[k] for k in RESUME_MUTABLE if k in given})


def auto_resume_decision(out: Path, kind: str, cfg: Any) -> str:
    """What --auto-resume does with `out`: "new" (no run there, or one that stopped before its first checkpoint:
    started again), "resume" (an unfinished run of this config) or "complete"; a run of another config is
    refused. Call it on rank 0 only (it may reset `out`)."""
    if not (out / CONFIG).exists():
        return "new"
    differing = config_differences(stored_config(out, kind, type(cfg)), cfg)
    if differing:
        raise GdasError(f"{out} holds a run of another config ({', '.join(differing)} differ); give the options "
                        "it was started with, or choose another --out")
    return files.local_next_step(out)


def already_complete(out: Path, marker: str = SUMMARY) -> dict[str, Any]:
    """The stored results (`marker`) of a finished run that --auto-resume found; nothing is run again."""
    if dist.context().is_main:
        print(f"{out} is already complete ({marker} exists); nothing to run")
    return read_json(out / marker)


def resume_changes(cls: type, kind: str, config: Optional[str | Path], overrides: Optional[Mapping[str, Any]],
                   where: str) -> dict[str, Any]:
    """The fields a resumed run is given (a config file's, then the options'): only resume-safe ones may differ."""
    changes = {} if config is None else cfgbase.check_fields(cls, read_config_file(config, kind),
                                                             f"in {Path(config).name}")
    changes.update(cfgbase.check_fields(cls, dict(overrides or {}), where or "given"))
    changes.pop("preset", None)
    return changes


def need_out(out: Optional[Path], resume: Resume) -> Path:
    if out is None:
        raise GdasError("resuming needs the run folder: --resume RUN_DIR (out=RUN_DIR in Python)" if resume is True
                        else "--auto-resume needs --out DIR (out=DIR in Python): the run folder to start or continue")
    return Path(out)


def start_or_resume(kind: str, cls: type, runner: Runner, cfg: Any, *, out: Optional[str | Path] = None,
                    resume: Resume = False, changes: Optional[Mapping[str, Any]] = None,
                    show_progress: bool = True, prepare: Prepare = None) -> tuple[Path, dict[str, Any]]:
    """(run folder, summary) of a run of `kind`: a new one of `cfg` (from `resolve_config`), the one in `out`
    resumed from its stored config with resume-safe `changes` (resume=True, `cfg` unused), or with
    resume="auto" whichever fits `out`. A run that stopped before its first checkpoint starts again from its
    beginning. `runner(cfg, out, resume_run=..., show_progress=...)` runs it."""
    if resume is True:
        out = need_out(out, resume)
        cfg = resumed_config(stored_config(out, kind, cls), changes or {})
        step = files.next_step(out)
        if step == "complete":
            raise GdasError(f"{out} is already complete ({SUMMARY} exists); nothing to resume")
        prepare = None  # its data is in place
    elif resume == "auto":
        out = need_out(out, resume)
        step = dist.decided_by_main(lambda: auto_resume_decision(out, kind, cfg), dist.context())
        if step == "complete":
            return out, already_complete(out)
        if step == "resume":
            cfg = continued_config(stored_config(out, kind, cls), cfg)
    else:
        out, step = Path(out) if out is not None else default_out(kind, cfg.preset), "new"
    return out, _run(runner, cfg, out, step == "resume", show_progress, prepare)


def _run(runner: Runner, cfg: Any, out: Path, resume_run: bool, show_progress: bool, prepare: Prepare,
         **options: Any) -> dict[str, Any]:
    """The one call of a runner: a new run is prepared first; a failed write of a run file is one line."""
    with files.write_errors(out):
        if not resume_run and prepare is not None:
            prepare()
        return runner(cfg, out, resume_run=resume_run, show_progress=show_progress, **options)


# -- image searches: one seed or several ------------------------------------------------------------------
def _search(cfg: Any, out: Path, *, resume_run: bool, show_progress: bool, seeds: Optional[list[int]],
            parallel: int) -> dict[str, Any]:
    from gdas.baseline import for_seeds, search_with_baseline
    from gdas.search import run_search
    from gdas.selection import check_parallel, multi_seed_search

    check_parallel(parallel, seeds, cfg.random_baseline)
    if seeds:
        baseline = for_seeds(parallel, show_progress=show_progress) if cfg.random_baseline else None
        return multi_seed_search(cfg, out, seeds, resume_run=resume_run, parallel=parallel,
                                 show_progress=show_progress, baseline=baseline)
    if cfg.random_baseline:
        return search_with_baseline(cfg, out, resume_run=resume_run, parallel=parallel, show_progress=show_progress)
    return run_search(cfg, out, resume_run=resume_run, show_progress=show_progress)


def _auto_search_mode(cfg: Any, out: Path, seeds: Optional[list[int]]) -> str:
    """--auto-resume of one search or of a multi-seed folder (see auto_resume_decision); rank 0 decides."""
    from gdas.search import stored_search_config

    def decide() -> str:
        if not (out / files.MULTISEED).exists():
            if seeds and (out / CONFIG).exists():
                raise GdasError(f"{out} holds a single search, not a multi-seed one; drop --seeds or choose "
                                "another --out")
            return "new" if seeds else auto_resume_decision(out, getattr(cfg, "KIND", "search"), cfg)
        stored, stored_seeds = stored_search_config(out)
        differing = config_differences(stored, cfg) + (["--seeds"] if stored_seeds != seeds else [])
        if differing:
            raise GdasError(f"{out} holds a multi-seed search of another config ({', '.join(differing)} "
                            "differ); give the options it was started with, or choose another --out")
        return "complete" if (out / files.SEEDS).exists() else "resume"
    return dist.decided_by_main(decide, dist.context())


def search_or_resume(cfg: Any, *, out: Optional[str | Path] = None, resume: Resume = False,
                     changes: Optional[Mapping[str, Any]] = None, seeds: Optional[list[int]] = None,
                     parallel: int = 1, show_progress: bool = True, prepare: Prepare = None
                     ) -> tuple[Path, dict[str, Any], Optional[list[int]]]:
    """(run folder, result, seeds) of an image search: `start_or_resume` for one seed or a multi-seed folder
    (the result is then `multi_seed_search`'s, or seeds.json when --auto-resume found it complete)."""
    from gdas.configs.module import TensorSearchConfig
    from gdas.configs.search import SearchConfig
    from gdas.search import stored_search_config

    if resume is True:
        out = need_out(out, resume)
        stored, seeds = stored_search_config(out)
        if not isinstance(stored, (SearchConfig, TensorSearchConfig)):
            raise GdasError(f"{out} holds a recurrent search; resume it with gdas search-rnn --resume {out}")
        cfg = resumed_config(stored, changes or {})
        step = "resume" if seeds else files.next_step(out)  # a multi-seed folder: each seed goes on as it can
        prepare = None  # its data is in place
    elif resume == "auto":
        out = need_out(out, resume)
        step = _auto_search_mode(cfg, out, seeds)
        if step == "complete":
            return out, already_complete(out, files.SEEDS if seeds else SUMMARY), seeds
        if step == "resume":
            cfg = continued_config(stored_search_config(out)[0], cfg)
    else:
        out, step = Path(out) if out is not None else default_out("search", cfg.preset), "new"
    result = _run(_search, cfg, out, step == "resume", show_progress, prepare, seeds=seeds, parallel=parallel)
    return out, result, seeds
