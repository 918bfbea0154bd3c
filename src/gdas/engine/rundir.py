"""The run directory: resolved config, JSONL metrics, TensorBoard events, atomic checkpoints, resume checks."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional, TypeVar

import torch

from gdas.configs.base import from_json
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
REPORT = "report.html"
PLOTS = "plots"
EVENTS = "tb"
T = TypeVar("T")
_TB_FLUSH_S = 2  # a live TensorBoard sees an epoch's scalars this soon (tensorboardX's default is 120 s)
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write-then-rename in the same folder: readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; run files follow the umask like any other
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
    """One run's folder. On non-zero ranks (`writer=False`) every write is a no-op."""

    def __init__(self, path: str | Path, *, writer: bool = True):
        self.path = Path(path)
        self.writer = writer
        self._events: Any = None  # a tensorboardX SummaryWriter once the first scalars come

    # -- creation and resume -------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, kind: str, config: dict[str, Any], env: dict[str, Any],
               *, writer: bool = True) -> "RunDir":
        """A new run directory; refuses one that already holds a run, so nothing is overwritten."""
        run = cls(path, writer=writer)
        if (run.path / CONFIG).exists() or (run.path / CHECKPOINT).exists():
            raise GdasError(f"{run.path} already holds a run; continue it with --resume {run.path} "
                            "or choose another --out")
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
            raise GdasError(f"cannot resume: {run.path} holds a {other or 'non-gdas'} run, not a {kind} run; "
                            f"use the matching command")
        return run, stored["config"]

    # -- files -------------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj: Any) -> None:
        if self.writer:
            atomic_write_bytes(self.file(name), (json.dumps(obj, indent=2) + "\n").encode())

    def write_text(self, name: str, text: str) -> None:
        if self.writer:
            atomic_write_bytes(self.file(name), text.encode())

    def read_json(self, name: str) -> Any:
        return read_json(self.file(name))

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        if self.writer:
            with open(self.file(name), "a") as handle:
                handle.write(json.dumps(record) + "\n")

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
        """TensorBoard scalars under <run>/tb (numbers only), written by tensorboardX.

        Its background thread writes them; they are on disk within `_TB_FLUSH_S` seconds, all of them at close.
        """
        if not self.writer:
            return
        if self._events is None:
            from tensorboardX import SummaryWriter  # imported on first use: it loads protobuf
            self._events = SummaryWriter(str(self.file(EVENTS)), flush_secs=_TB_FLUSH_S)
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                self._events.add_scalar(prefix + key, float(value), step)

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None

    # -- checkpoints -------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any], name: str = CHECKPOINT) -> None:
        if self.writer:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            atomic_write_bytes(self.file(name), buffer.getvalue())

    def load_checkpoint(self, name: str = CHECKPOINT, map_location: Optional[torch.device] = None) -> dict:
        path = self.file(name)
        if not path.exists():
            raise GdasError(f"{path} is missing: the run ended before its first checkpoint; start it again")
        try:
            state = torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for damaged files
            raise GdasError(f"{path} is corrupt or not a gdas checkpoint ({type(exc).__name__}); "
                            "start the run again or restore the file") from None
        if not isinstance(state, dict) or "epoch" not in state or "task" not in state:
            raise GdasError(f"{path} is not a gdas checkpoint (no epoch/task state); start the run again")
        return state


def stored_config(path: str | Path, kind: str, cls: type[T]) -> T:
    """The typed config of an existing run of `kind` (for --resume); refuses a run of another kind."""
    _, stored = RunDir.open_existing(path, kind)
    return from_json(cls, stored)
