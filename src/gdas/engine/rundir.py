"""The run directory: resolved config, JSONL metrics, TensorBoard events, atomic checkpoints, resume checks,
the command that continues a run, and write failures as one line."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Optional, TypeVar

import torch

from gdas.configs.base import from_json
from gdas.engine import distributed as dist
from gdas.errors import GdasError

# Every file name a run directory holds (README's table), defined once.
CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
ALPHAS = "alphas.jsonl"  # softmax(A) after each epoch (searches)
GENOTYPES = "genotypes.jsonl"  # the genotype derived after each epoch (searches)
GENOTYPE = "genotype.json"  # the final genotype (searches) or the trained one (training runs)
SPLIT = "split.json"  # the seeded D_T / D_V split (image searches)
CLASSES = "classes.json"  # the class names by label (image runs)
DATA = "data.json"  # the data a run read: source, sizes, per-channel mean / std of its training images (image runs)
VOCAB = "vocab.json"  # the vocabulary (language-model runs)
BEST = "best.pt"  # the weights of the best epoch (training runs)
MULTISEED = "multiseed.json"  # the seeds and config of a multi-seed search folder
SEEDS = "seeds.json"  # per-seed results and the kept seed of a multi-seed search
SELECT = "select"  # under a multi-seed search's seed-S folder: the retrain of that seed's cell
RANDOM_CELL = "random-{}"  # under a search with --random-baseline: random cell i (genotype.json, select/)
REPORT = "report.html"
PLOTS = "plots"
EVENTS = "tb"
# A run's kind (config.json) is the command that runs it: `gdas <kind> --resume RUN_DIR` continues it.
RUN_KINDS = ("search", "train", "search-rnn", "train-lm")
# Runs of a module space on a user's tensors (configs.module): continued from Python, which holds their data and loss.
PYTHON_KINDS = ("search-tensors", "train-tensors")
# What a run writes before its first checkpoint: removed when such a run starts again from its beginning.
STARTED_FILES = (METRICS, ALPHAS, GENOTYPES, GENOTYPE, SPLIT, CLASSES, DATA, VOCAB, BEST)
T = TypeVar("T")
Step = Literal["new", "resume", "complete"]
_SEED_DIR = re.compile(r"seed--?\d+")  # a multi-seed search's seed folders: seed-S
_RANDOM_DIR = re.compile(r"random-\d+")  # a search's random cells: random-i
# Errors that only a write raises (any file); permissions count as a write failure only for run files.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)})
_FIXES = {errno.ENOSPC: "free space", getattr(errno, "EDQUOT", errno.ENOSPC): "free space (or raise the quota)",
          errno.EROFS: "make the folder writable", errno.EACCES: "make the folder writable",
          errno.EPERM: "make the folder writable"}
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class RunWriteError(GdasError):
    """A run file that could not be written (a full disk, no permission): one line naming the file and the fix."""


def stored_kind(path: str | Path) -> Optional[str]:
    """The kind of the run stored in `path` (config.json), None when there is none or it is unreadable."""
    try:
        stored = json.loads((Path(path) / CONFIG).read_text())
    except (OSError, ValueError):
        return None
    return stored.get("kind") if isinstance(stored, dict) else None


def continue_command(path: str | Path) -> Optional[str]:
    """The command that continues the run in `path`: `gdas search --resume OUT` for a multi-seed search OUT, its
    seed folders and their retrains, and for the retrains and random cells of a search's --random-baseline, else
    `gdas <kind> --resume RUN_DIR`; None when no run is stored there."""
    path = Path(path)
    for top, inside in ((path, True), (path.parent, _SEED_DIR.fullmatch(path.name)),
                        (path.parent.parent, path.name == SELECT and _SEED_DIR.fullmatch(path.parent.name))):
        if inside and (top / MULTISEED).exists():
            if read_json(top / MULTISEED).get("kind") in PYTHON_KINDS:
                return f"gdas.search(the same data, space and loss, out={str(top)!r}, resume=True)"
            return f"gdas search --resume {top}"
    # a random cell (random-i, random-i/select) or a single search's own retrain (select)
    for top, inside in ((path.parent, path.name == SELECT or _RANDOM_DIR.fullmatch(path.name)),
                        (path.parent.parent, path.name == SELECT and _RANDOM_DIR.fullmatch(path.parent.name))):
        if inside and ((top / MULTISEED).exists() or stored_kind(top) == "search"):
            return f"gdas search --resume {top}"
    kind = stored_kind(path)
    if kind in PYTHON_KINDS:  # runs on a user's tensors: their data and loss live in Python
        return f"gdas.{kind.split('-')[0]}(the same data, space and loss, out={str(path)!r}, resume=True)"
    return f"gdas {kind} --resume {path}" if kind in RUN_KINDS else None


def write_error(exc: OSError, path: str | Path, run: str | Path) -> RunWriteError:
    """`exc` of a write to `path` in the run folder `run` as one line: the file, the reason and what to do next."""
    fix = _FIXES.get(exc.errno or 0, "fix that")
    command = continue_command(run)
    then = f"continue with {command}" if command else "run the command again"
    return RunWriteError(f"cannot write {path}: {exc.strerror or exc}; {fix}, then {then}")


@contextlib.contextmanager
def write_errors(out: str | Path) -> Iterator[None]:
    """A failed write under the run folder `out` that no RunDir method reported (genotype.json, tracking.json,
    a worker's files) becomes a RunWriteError."""
    try:
        yield
    except OSError as exc:
        where = Path(exc.filename) if isinstance(exc.filename, (str, os.PathLike)) else None
        inside = where is not None and Path(os.path.abspath(where)).is_relative_to(os.path.abspath(out))
        if exc.errno in _WRITE_ERRNOS or (inside and exc.errno in _FIXES):
            raise write_error(exc, where or f"a file in {out}", out) from None
        raise


def refuse_existing_run(path: str | Path) -> None:
    """A new run must not write into a folder that holds one; the refusal names the command that continues it."""
    path = Path(path)
    multi = (path / MULTISEED).exists()
    if not (multi or (path / CONFIG).exists() or (path / CHECKPOINT).exists()):
        return
    what = "multi-seed search" if multi else f"{stored_kind(path) or 'gdas'} run"
    done = SEEDS if multi else SUMMARY
    if (path / done).exists():
        raise GdasError(f"{path} already holds a run (a finished {what}: {done} exists); choose another --out")
    command = continue_command(path)
    if command is None:
        raise GdasError(f"{path} already holds a run (its {CONFIG} is missing or damaged); choose another --out")
    raise GdasError(f"{path} already holds a run (an unfinished {what}); continue it with {command} or choose "
                    "another --out")


def next_step(path: str | Path) -> Step:
    """How the run in `path` goes on: "complete" (summary.json), "resume" (from checkpoint.pt) or "new": no run
    there, or one that stopped before its first checkpoint, whose files are removed here so that it starts again
    from its beginning. Rank 0 decides (and removes), every rank gets its answer."""
    return dist.decided_by_main(lambda: local_next_step(path), dist.context())


def local_next_step(path: str | Path) -> Step:
    """`next_step` on this process alone (a caller that already runs on rank 0 only)."""
    path = Path(path)
    if (path / SUMMARY).exists():
        return "complete"
    if (path / CHECKPOINT).exists():
        return "resume"
    if (path / CONFIG).exists():
        RunDir(path).clear()
    return "new"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write-then-rename in the same folder: readers see the old file or the new one, never half. A failure
    (OSError) names `path` as its filename."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; run files follow the umask like any other
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            exc.filename = str(path)
        raise


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GdasError(f"{path} is missing; is {path.parent} a gdas run directory?") from None
    except json.JSONDecodeError as exc:
        raise GdasError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); the run directory is "
                        "damaged") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; a torn last line (a run killed mid-write) is ignored."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


class RunDir:
    """One run's folder. On non-zero ranks (`writer=False`) every write is a no-op. A write that fails raises a
    RunWriteError (one line: the file and the command that continues the run)."""

    def __init__(self, path: str | Path, *, writer: bool = True):
        self.path = Path(path)
        self.writer = writer
        self._events: Any = None  # a tensorboardX EventsWriter once the first scalars come
        self._replaced: Optional[dict[str, Optional[Path]]] = None  # inside `epoch_writes`: file -> its backup

    # -- creation and resume -------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, kind: str, config: dict[str, Any], env: dict[str, Any],
               *, writer: bool = True) -> "RunDir":
        """A new run directory; refuses one that already holds a run, so nothing is overwritten."""
        run = cls(path, writer=writer)
        refuse_existing_run(run.path)
        run.write_json(CONFIG, {"kind": kind, "config": config, "env": env})
        return run

    @classmethod
    def open_existing(cls, path: str | Path, kind: str, *, writer: bool = True) -> tuple["RunDir", dict]:
        """An existing run of `kind` and its stored config (for --resume)."""
        run = cls(path, writer=writer)
        if not run.path.is_dir():
            raise GdasError(f"cannot resume: {run.path} is not a directory; pass the --out folder of the run")
        stored = read_json(run.path / CONFIG)
        if not isinstance(stored, dict) or stored.get("kind") != kind:
            other = stored.get("kind") if isinstance(stored, dict) else None
            command = continue_command(run.path)
            raise GdasError(f"cannot resume: {run.path} holds a {other or 'non-gdas'} run, not a {kind} run; "
                            + (f"continue it with {command}" if command else "use the matching command"))
        return run, stored["config"]

    def clear(self) -> None:
        """Remove the files of a run that stopped before its first checkpoint, so that it starts again from its
        beginning; files a run did not write (e.g. the data.npz of in-memory data) stay."""
        if not self.writer:
            return
        for name in STARTED_FILES:
            self.file(name).unlink(missing_ok=True)
        shutil.rmtree(self.file(EVENTS), ignore_errors=True)
        self.file(CONFIG).unlink(missing_ok=True)  # last: a clear that is cut short still reads as a started run

    # -- files -------------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    def _write(self, name: str, data: bytes) -> None:
        if not self.writer:
            return
        self._keep_previous(name)
        try:
            atomic_write_bytes(self.file(name), data)
        except OSError as exc:
            raise write_error(exc, self.file(name), self.path) from None

    def write_json(self, name: str, obj: Any) -> None:
        self._write(name, (json.dumps(obj, indent=2) + "\n").encode())

    def write_text(self, name: str, text: str) -> None:
        self._write(name, text.encode())

    def read_json(self, name: str) -> Any:
        return read_json(self.file(name))

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        if self.writer:
            try:
                with open(self.file(name), "a") as handle:
                    handle.write(json.dumps(record) + "\n")
            except OSError as exc:
                raise write_error(exc, self.file(name), self.path) from None

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.file(name))

    def truncate_jsonl(self, names: Iterable[str], before_epoch: int) -> None:
        """Drop records of epochs >= `before_epoch` (written by a killed run after its last checkpoint)."""
        if not self.writer:
            return
        for name in names:
            if self.file(name).exists():
                kept = [r for r in self.read_jsonl(name) if r.get("epoch", -1) < before_epoch]
                self.write_text(name, "".join(json.dumps(r) + "\n" for r in kept))

    def log_scalars(self, step: int, values: dict[str, Any], prefix: str = "") -> None:
        """TensorBoard scalars under <run>/tb (numbers only), written through tensorboardX and on disk when this
        returns (written here, not by a background thread, so that a failure is reported like any other)."""
        if not self.writer:
            return
        from tensorboardX.event_file_writer import EventsWriter  # imported on first use: they load protobuf
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        now = time.time()
        try:
            if self._events is None:
                self.file(EVENTS).mkdir(parents=True, exist_ok=True)
                self._events = EventsWriter(str(self.file(EVENTS) / "events"))
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                    self._events.write_event(Event(summary=scalar(prefix + key, float(value)), wall_time=now,
                                                   step=int(step)))
            self._events.flush()
        except OSError as exc:
            raise write_error(exc, self.file(EVENTS), self.path) from None

    def close(self, *, quiet: bool = False) -> None:
        """Close the events file; `quiet`: after another error, whose report a failure here must not replace."""
        events, self._events = self._events, None
        if events is not None:
            try:
                events.close()
            except OSError as exc:
                if not quiet:
                    raise write_error(exc, self.file(EVENTS), self.path) from None

    # -- an epoch's writes -------------------------------------------------------------------------
    @contextlib.contextmanager
    def epoch_writes(self, records: Iterable[str]) -> Iterator[None]:
        """One epoch's writes, its checkpoint last. When one fails (e.g. a full disk), what the epoch appended to
        the JSONL files `records` is cut off again and the files it replaced (best.pt) are restored: the folder
        stays at its last checkpoint, and no reader sees an epoch that no checkpoint holds."""
        if not self.writer:
            yield
            return
        sizes = {name: self.file(name).stat().st_size if self.file(name).exists() else None for name in records}
        self._replaced = {}
        try:
            yield
        except Exception:  # not KeyboardInterrupt: it may come after the checkpoint was written
            self._roll_back(sizes)
            raise
        finally:
            for backup in (self._replaced or {}).values():
                if backup is not None:
                    backup.unlink(missing_ok=True)
            self._replaced = None

    def _keep_previous(self, name: str) -> None:
        """Inside `epoch_writes`: keep the file `name` is about to replace (a hard link: no space needed)."""
        if self._replaced is None or name == CHECKPOINT or name in self._replaced:
            return
        path, backup = self.file(name), self.file(f".{name}.previous")
        if not path.exists():
            self._replaced[name] = None  # a new file: removed on a roll-back
            return
        with contextlib.suppress(OSError):
            backup.unlink(missing_ok=True)
            os.link(path, backup)
            self._replaced[name] = backup

    def _roll_back(self, sizes: dict[str, Optional[int]]) -> None:
        """Undo an epoch's writes (truncating and renaming only: it works on a full disk)."""
        for name, size in sizes.items():
            with contextlib.suppress(OSError):
                if size is None:
                    self.file(name).unlink(missing_ok=True)
                else:
                    os.truncate(self.file(name), size)
        for name, backup in (self._replaced or {}).items():
            with contextlib.suppress(OSError):
                if backup is None:
                    self.file(name).unlink(missing_ok=True)
                else:
                    os.replace(backup, self.file(name))
        self._replaced = {}

    # -- checkpoints -------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any], name: str = CHECKPOINT) -> None:
        if self.writer:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            self._write(name, buffer.getvalue())

    def load_checkpoint(self, name: str = CHECKPOINT, map_location: Optional[torch.device] = None) -> dict:
        path = self.file(name)
        command = continue_command(self.path) if name == CHECKPOINT else None
        again = f"continue with {command} (it starts again from its first epoch)" if command else "run it again"
        if not path.exists():
            raise GdasError(f"{path} is missing: the run ended before its first checkpoint; {again}")
        try:
            state = torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for damaged files
            raise GdasError(f"{path} is corrupt or not a gdas checkpoint ({type(exc).__name__}); restore the "
                            f"file, or remove it and {again}") from None
        if not isinstance(state, dict) or "epoch" not in state or "task" not in state:
            raise GdasError(f"{path} is not a gdas checkpoint (no epoch/task state); restore the file, or remove "
                            f"it and {again}")
        return state


def stored_config(path: str | Path, kind: str, cls: type[T]) -> T:
    """The typed config of an existing run of `kind` (for --resume); refuses a run of another kind."""
    _, stored = RunDir.open_existing(path, kind)
    return from_json(cls, stored)
