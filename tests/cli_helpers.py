"""Helpers the CLI tests share: run `gdas` in-process, expect a one-line user error, kill a run, launch two ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import gdas
from gdas.cli.main import main
from gdas.engine.rundir import CHECKPOINT, RunDir


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
