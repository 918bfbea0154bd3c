"""The one epoch-loop skeleton every task runs on: resume, RNG states, metrics, checkpoints, summary."""

from __future__ import annotations

import contextlib
import random
import sys
import time
from typing import Any, Callable, Iterator, Optional, Protocol

import torch

from gdas.engine import distributed as dist
from gdas.engine import tracking
from gdas.errors import GdasError
from gdas.engine.rundir import METRICS, RunDir

Log = Callable[[str], None]


class Task(Protocol):
    """What `fit` needs from a search or training task."""

    epochs: int
    epoch_files: tuple[str, ...]  # JSONL files with one record per epoch, besides metrics.jsonl

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    # Only for tasks that run under torchrun: what differs per rank, saved for every rank.
    def rank_state_dict(self) -> dict[str, Any]: ...

    def load_rank_state_dict(self, state: dict[str, Any]) -> None: ...

    def run_epoch(self, epoch: int) -> dict[str, Any]: ...

    def after_epoch(self, epoch: int, metrics: dict[str, Any], run: RunDir) -> None: ...

    def finish(self, run: RunDir, wall_time_s: float) -> dict[str, Any]: ...


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter],
                   grad_clip: float, ctx: dist.Context, after_backward: Optional[Callable[[], None]] = None) -> None:
    """The one weight update after a forward pass: backward, average over ranks, clip the norm (0: no), step.

    `after_backward` may drop gradients (set them to None) before they are averaged and used."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if after_backward is not None:
        after_backward()
    dist.all_reduce_grads(params, ctx)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
    optimizer.step()


@contextlib.contextmanager
def frozen(params: list[torch.nn.Parameter]) -> Iterator[None]:
    """Treat `params` as constants while a forward pass is recorded (the A step's W).

    `backward(inputs=A)` alone already skips the weight gradients; freezing W also keeps autograd from
    recording the weights' branches of the graph at all, which makes the A step ~8% faster on CPU.
    """
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def rng_state() -> dict[str, Any]:
    """The global RNGs (the tasks keep their own generators in their state dicts)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def resume(task: Task, run: RunDir, map_location: Optional[torch.device] = None) -> tuple[int, float]:
    """Load the last checkpoint into `task`, each rank its own per-rank state; returns (next epoch, wall time
    spent so far)."""
    state = run.load_checkpoint(map_location=map_location)
    ctx = dist.context()
    ranks = state.get("ranks")  # per-rank states: only checkpoints of torchrun runs have them
    mine = ranks[ctx.rank] if ranks is not None and ctx.rank < len(ranks) else None
    try:
        task.load_state_dict(state["task"])
        if mine is not None:
            task.load_rank_state_dict(mine["task"])
    except (KeyError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GdasError(f"checkpoint in {run.path} does not fit this run's model ({first[:160]}); "
                        "it was written by another config or gdas version") from None
    set_rng_state(state["rng"] if mine is None else mine["rng"])
    start = int(state["epoch"]) + 1
    saved = state.get("world_size")  # None: written before per-rank states were kept
    if saved is not None and saved != ctx.world_size and ctx.is_main:
        # Allowed (e.g. fewer GPUs left), but the batch split and the per-rank draws change from here on.
        print(f"gdas: warning: {run.path} was checkpointed by {saved} process(es) and resumes on "
              f"{ctx.world_size}: from epoch {start} on it is a different computation; resume with {saved} "
              "to continue the same one", file=sys.stderr)
    run.truncate_jsonl((METRICS,) + tuple(task.epoch_files), start)
    return start, float(state.get("wall_time_s", 0.0))


def fit(task: Task, run: RunDir, *, start_epoch: int = 0, wall_time_s: float = 0.0,
        log: Log = print) -> dict[str, Any]:
    """Run epochs [start_epoch, task.epochs): metrics, per-epoch files and a checkpoint after each.

    The command's tracker (`tracking.current()`, a no-op unless --tracking) sees the run start, each epoch's
    record and the finished run. Under torchrun the checkpoint also holds every rank's own state (RNGs,
    augmentation draws, batch-norm statistics), so that a resume on as many processes continues the same
    computation on every rank.
    """
    ctx = dist.context()
    tracker = tracking.current()
    tracker.run_started(run)
    try:
        for epoch in range(start_epoch, task.epochs):
            if getattr(task, "stop_early", False):  # a task's guard ended the run (its checkpoint says so on resume)
                break
            began = time.perf_counter()
            metrics = task.run_epoch(epoch)
            elapsed = time.perf_counter() - began
            wall_time_s += elapsed
            record = {"epoch": epoch, **metrics, "epoch_time_s": round(elapsed, 3),
                      "wall_time_s": round(wall_time_s, 3)}
            with run.epoch_writes((METRICS,) + tuple(task.epoch_files)):  # undone if a write fails
                run.append_jsonl(METRICS, record)
                run.log_scalars(epoch, record)
                task.after_epoch(epoch, record, run)
                checkpoint = {"epoch": epoch, "task": task.state_dict(), "rng": rng_state(),
                              "wall_time_s": wall_time_s, "world_size": ctx.world_size}
                if ctx.distributed:  # a collective: every rank sends its part to rank 0, the writer
                    checkpoint["ranks"] = dist.gather_to_main({"task": task.rank_state_dict(), "rng": rng_state()},
                                                              ctx)
                run.save_checkpoint(checkpoint)
            tracker.epoch_ended(run, epoch, record)  # after the checkpoint: a resumed run never logs an epoch twice
            log(" ".join(f"{k}={_fmt(v)}" for k, v in record.items()))
        summary = task.finish(run, wall_time_s)
    except BaseException:
        run.close(quiet=True)
        raise
    run.close()
    tracker.run_ended(run)
    return summary


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
