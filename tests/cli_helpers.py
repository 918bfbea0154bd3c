"""Helpers the CLI tests share: run `gdas` in-process, expect a one-line user error, kill a run, fill the disk under
a run, launch two ranks."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import gdas
from gdas import genotypes
from gdas.cli.main import main
from gdas.engine import rundir
from gdas.engine.rundir import CHECKPOINT, RunDir

FULL = os.strerror(errno.ENOSPC)


def run_cli(*argv: object) -> int:
    return main([str(a) for a in argv])


def expect_error(capsys, *argv: object, contains: str) -> str:
    """The command fails with exit 2 and a single 'gdas: error:' line naming `contains`, no traceback."""
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert err.startswith("gdas: error:") and len(err.splitlines()) == 1, err
    assert contains in err, err
    return err


def kill_after_checkpoints(monkeypatch, n: int) -> Callable[[], None]:
    """Ctrl-C right after the n-th checkpoint write (a run killed there); returns what restores normal saving."""
    original, saves = RunDir.save_checkpoint, [0]

    def save_then_die(self, state, name=CHECKPOINT):
        original(self, state, name)
        saves[0] += 1
        if saves[0] == n:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", save_then_die)
    return lambda: monkeypatch.setattr(RunDir, "save_checkpoint", original)


def die_before_checkpoint(monkeypatch, n: int) -> None:
    """Ctrl-C instead of the n-th checkpoint.pt write (best.pt writes do not count): a run killed in that epoch."""
    original, saves = RunDir.save_checkpoint, [0]

    def save_or_die(self, state, name=CHECKPOINT):
        if name == CHECKPOINT:
            saves[0] += 1
            if saves[0] == n:
                raise KeyboardInterrupt
        original(self, state, name)

    monkeypatch.setattr(RunDir, "save_checkpoint", save_or_die)


def no_space(monkeypatch, name: str, nth: int) -> None:
    """The nth write of the run file `name` fails for want of space: an append after writing half its line, an
    atomic write (JSON, checkpoint) before replacing the file, the events ("tb") at their flush."""
    count = [0]

    def hit(path: Any) -> bool:
        if Path(path).name != name:
            return False
        count[0] += 1
        return count[0] == nth

    def full(path: Any = None) -> OSError:
        return OSError(errno.ENOSPC, FULL, *([str(path)] if path is not None else []))

    atomic = rundir.atomic_write_bytes

    def atomic_or_full(path: Path, data: bytes) -> None:
        if hit(path):
            raise full(path)  # named, as atomic_write_bytes names the file its failures are about
        atomic(path, data)

    class HalfWritten:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.handle.close()

        def write(self, text: str) -> None:
            self.handle.write(text[: len(text) // 2])
            self.handle.flush()
            raise full()

    def open_or_full(path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        return HalfWritten(handle) if "a" in mode and hit(path) else handle

    from tensorboardX.event_file_writer import EventsWriter
    flush = EventsWriter.flush

    def flush_or_full(self) -> bool:
        if hit("tb"):
            raise full()
        return flush(self)

    monkeypatch.setattr(rundir, "atomic_write_bytes", atomic_or_full)
    monkeypatch.setattr(genotypes, "atomic_write_bytes", atomic_or_full)
    monkeypatch.setattr(rundir, "open", open_or_full, raising=False)
    monkeypatch.setattr(EventsWriter, "flush", flush_or_full)


def launch_two_ranks(entry: str, *argv: object, torchrun: Sequence[str] = (),
                     env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 [torchrun...] entry argv...` on CPU over gloo, one thread per rank, gdas
    importable; `env` adds variables."""
    src = str(Path(gdas.__file__).resolve().parents[1])
    env = dict(os.environ, GDAS_DIST_BACKEND="gloo", OMP_NUM_THREADS="1", **(env or {}),
               PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *torchrun,
           entry, *(str(a) for a in argv)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
