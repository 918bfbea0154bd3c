"""torchrun / DDP support: process context, batch sharding, and reducing only the gradients that exist."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as tdist
from torch import nn


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
        tdist.init_process_group(backend=backend)
    return Context(tdist.get_rank(), tdist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def local_device(device: torch.device, ctx: Context) -> torch.device:
    """On CUDA each rank takes the GPU of its local rank."""
    if device.type == "cuda" and ctx.distributed:
        return torch.device("cuda", ctx.local_rank)
    return device


def shard(indices: torch.Tensor, ctx: Context) -> torch.Tensor:
    """This rank's contiguous slice of a global batch of indices."""
    if not ctx.distributed:
        return indices
    return torch.tensor_split(indices, ctx.world_size)[ctx.rank]


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
