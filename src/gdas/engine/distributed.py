"""torchrun / DDP support: process context, batch sharding, and reducing only the gradients that exist."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

import torch
import torch.distributed as tdist
from torch import nn

from gdas.errors import GdasError

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def context() -> Context:
    """This process's place in a torchrun job; a single-process context otherwise.

    The process group is created on first use from torchrun's environment (NCCL on CUDA, gloo on CPU).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    if not tdist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("GDAS_DIST_BACKEND") != "gloo" else "gloo"
        _init_process_group(backend)
    return Context(tdist.get_rank(), tdist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _init_process_group(backend: str) -> None:
    """The process group from torchrun's environment, on a fresh key space after a restart of the workers.

    torchrun's agent keeps its store across `--max-restarts` restarts, with the failed group's keys in it:
    a restarted group could read the dead processes' addresses and fail to connect. One agent (one node)
    numbers its restarts alike for all its workers, so the restart count names a fresh key space there;
    several nodes need TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 instead (docs/distributed.md).
    """
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if (restart == "0" or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"
            or os.environ.get("GROUP_WORLD_SIZE") != "1"):
        tdist.init_process_group(backend=backend)
        return
    store = tdist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False)
    tdist.init_process_group(backend=backend, store=tdist.PrefixStore(f"gdas/restart-{restart}/", store),
                             rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))


def local_device(device: torch.device, ctx: Context) -> torch.device:
    """On CUDA each rank takes the GPU of its local rank."""
    if device.type == "cuda" and ctx.distributed:
        return torch.device("cuda", ctx.local_rank)
    return device


def local_batch(global_batch: int, ctx: Context) -> int:
    """This rank's share of a global batch; the batch must split evenly so that every rank weighs the same."""
    if global_batch % ctx.world_size:
        raise GdasError(f"--batch-size {global_batch} does not split evenly over {ctx.world_size} processes; "
                        f"use a multiple of {ctx.world_size}")
    return global_batch // ctx.world_size


def shard(indices: torch.Tensor, ctx: Context, dim: int = 0) -> torch.Tensor:
    """This rank's contiguous slice of a global batch of indices (along `dim`)."""
    if not ctx.distributed:
        return indices
    return torch.tensor_split(indices, ctx.world_size, dim=dim)[ctx.rank]


def main_first(on_main: Callable[[], T], ctx: Context, elsewhere: Callable[[], T]) -> T:
    """`on_main()` on rank 0, `elsewhere()` on the others; a GdasError of rank 0 is raised on every rank.

    For what only rank 0 may do (create a run directory): a refusal there must stop all ranks, not
    leave them waiting in the next collective.
    """
    result, error = None, None
    if ctx.is_main:
        try:
            result = on_main()
        except GdasError as exc:
            error = str(exc)
    if ctx.distributed:
        box = [error]
        tdist.broadcast_object_list(box, src=0)
        error = box[0]
    if error is not None:
        raise GdasError(error)
    return result if ctx.is_main else elsewhere()  # type: ignore[return-value]


def decided_by_main(decide: Callable[[], T], ctx: Context) -> T:
    """`decide()` on rank 0, its result (or its GdasError) on every rank.

    For choices read from the run directory that rank 0 is about to change: every rank must act on the
    same answer, not on a file another rank may already have written.
    """
    box: list = [None, None]
    if ctx.is_main:
        try:
            box[0] = decide()
        except GdasError as exc:
            box[1] = str(exc)
    if ctx.distributed:
        tdist.broadcast_object_list(box, src=0)
    if box[1] is not None:
        raise GdasError(box[1])
    return box[0]


def gather_to_main(obj: T, ctx: Context) -> list[T] | None:
    """Every rank's `obj` on rank 0, in rank order (None on the other ranks); small picklable objects only."""
    if not ctx.distributed:
        return [obj]
    gathered: list | None = [None] * ctx.world_size if ctx.is_main else None
    tdist.gather_object(obj, gathered, dst=0)
    return gathered


def module_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the module's buffers (batch-norm statistics: per rank under torchrun) on the CPU."""
    return {name: buf.detach().cpu().clone() for name, buf in module.named_buffers()}


def load_module_buffers(module: nn.Module, buffers: dict[str, torch.Tensor]) -> None:
    own = dict(module.named_buffers())
    for name, value in buffers.items():
        own[name].copy_(value)


def broadcast_module(module: nn.Module) -> None:
    """Start every rank from rank 0's parameters and buffers."""
    if tdist.is_initialized() and tdist.get_world_size() > 1:
        for tensor in list(module.parameters()) + list(module.buffers()):
            tdist.broadcast(tensor.data, src=0)


def all_reduce_grads(params: Iterable[torch.Tensor], ctx: Context) -> None:
    """Average the gradients that exist, in one flat buffer.

    Every rank draws the same architecture, so every rank has gradients for exactly the same
    parameters: no unused-parameter detection, and nothing sent for ops that did not run.
    """
    if not ctx.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    tdist.all_reduce(flat)
    flat /= ctx.world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def all_reduce_sum(tensor: torch.Tensor, ctx: Context) -> torch.Tensor:
    if ctx.distributed:
        tensor = tensor.clone()
        tdist.all_reduce(tensor)
    return tensor


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        tdist.barrier()


def shutdown() -> None:
    """Tear down the process group at the end of a torchrun job (no-op otherwise)."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()
