"""Gumbel-max hard sampling with straight-through gradients, sampler modes, and the tau schedule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

SAMPLERS: tuple[str, ...] = ("gdas", "gdas-noaccel", "darts")
SAMPLE_SCOPES: tuple[str, ...] = ("network", "cell")
_MAX_REDRAWS = 100


def tau_at(epoch: int, epochs: int, tau_max: float = 10.0, tau_min: float = 0.1) -> float:
    """Linear temperature schedule: tau_e = tau_max - (tau_max - tau_min) * e / (E - 1)."""
    if epochs <= 1:
        return tau_min
    return tau_max - (tau_max - tau_min) * epoch / (epochs - 1)


def gumbel_noise(shape: torch.Size, like: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """o = -log(E), E ~ Exp(1): standard Gumbel noise (E can underflow to 0 -> inf, caught by the caller)."""
    e = torch.empty(shape, dtype=like.dtype, device=like.device).exponential_(generator=generator)
    return e.log().neg()


@dataclass
class Sample:
    """One draw for a stack of edges (the rows of logits shaped (..., K)).

    `weights` has the logits' shape: the straight-through sample h + (h~ - h~.detach()) for GDAS modes (its forward
    value is exactly one-hot, its gradient is the soft sample's), or softmax(A) for DARTS. `indices` is
    the sampled op per edge as host ints, nested like the leading dims (None for DARTS, which
    mixes every op).
    """

    weights: torch.Tensor
    indices: Optional[list]


def _draw(logits: torch.Tensor, tau: float, generator: Optional[torch.Generator]):
    log_p = torch.log_softmax(logits, dim=-1)
    noise = gumbel_noise(logits.shape, logits, generator)
    soft = torch.softmax((log_p + noise) / tau, dim=-1)
    index = soft.argmax(dim=-1)
    bad = ~(torch.isfinite(noise).all() & torch.isfinite(soft).all())
    return soft, index, bad


def gumbel_sample(logits: torch.Tensor, tau: float, generator: Optional[torch.Generator] = None,
                  k: Optional[Sequence[int]] = None) -> Sample:
    """Hard Gumbel-max sample per row of `logits` (..., K) with a straight-through relaxation.

    `k` (one count per row of 2-D `logits`) draws k of the K entries instead of one: the k largest perturbed
    logits (Gumbel-top-k, a draw without replacement), whose hard weights are 1; a row's indices are then the
    sorted list of its k entries. Redraws while the noise or the soft sample holds inf/NaN. The sampled indices
    and the inf/NaN flag cross to the host together in a single transfer per call.
    """
    width = 1 if k is None else max(k)
    for _ in range(_MAX_REDRAWS):
        soft, index, bad = _draw(logits, tau, generator)
        if k is not None:
            index = soft.topk(width, dim=-1).indices
        host = torch.cat([index.flatten(), bad.view(1).to(index.dtype)]).tolist()
        if not host[-1]:
            break
    else:
        raise FloatingPointError("Gumbel sampling kept producing inf/NaN; the architecture logits are "
                                 "not finite — lower the architecture learning rate")
    if k is None:
        hard = torch.zeros_like(soft).scatter_(-1, index.unsqueeze(-1), 1.0)
        indices = _nest(host[:-1], list(index.shape))
    else:
        if logits.dim() != 2 or len(k) != logits.shape[0]:
            raise ValueError(f"k needs 2-D logits and one count per row, got {tuple(logits.shape)} and {len(k)}")
        counts = torch.tensor(list(k), device=soft.device).unsqueeze(-1)
        chosen = (torch.arange(width, device=soft.device) < counts).to(soft.dtype)
        hard = torch.zeros_like(soft).scatter_(-1, index, chosen)
        rows = _nest(host[:-1], list(index.shape))
        indices = [sorted(row[:n]) for row, n in zip(rows, k)]
    # h + (h~ - sg(h~)): forward value exactly one-hot (x - x == 0), gradient of the soft sample.
    weights = hard + (soft - soft.detach())
    return Sample(weights, indices)


def _nest(flat: list[int], shape: list[int]) -> list:
    if len(shape) <= 1:
        return flat
    step = len(flat) // shape[0]
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


@dataclass
class CellArch:
    """What one searched cell computes in a forward pass (the same contract in every search space).

    `indices` set: only op `indices[e]` runs on edge e (GDAS); its output is scaled by
    `weights[e, k]` when `weights` is given (exactly 1.0 forward, gradient to A), left unscaled when
    `weights` is None (the W step, where A needs no gradient). `indices` None: every op runs,
    mixed by `weights` (DARTS softmax, or the no-acceleration ablation's one-hot).

    `sampled` (the no-acceleration ablation only) names the one-hot's op per edge; the forward pass lists
    the op modules it computed without sampling them in `idle` (see `edge_output`, `drop_idle_grads`).
    """

    weights: Optional[torch.Tensor]
    indices: Optional[list[int]]
    sampled: Optional[list[int]] = None
    idle: list = field(default_factory=list)


def edge_output(ops: Sequence[torch.nn.Module], x: torch.Tensor, arch: CellArch, edge: int, none_index: int
                ) -> Optional[torch.Tensor]:
    """What edge `edge` adds to its node under `arch`: the weighted sum of every op (DARTS, no acceleration), or
    only the sampled op, scaled by its straight-through weight when A needs a gradient (None for `none`, whose
    zeros are skipped: their gradient to A is 0 either way)."""
    return candidate_output(ops, lambda op: op(x), arch, edge, none_index, idle_run=lambda op: op(x.detach()))


def detached(value: Any) -> Any:
    """`value` with every tensor in it (nested tuples, lists and dicts too) detached from the graph."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (tuple, list)):
        return type(value)(detached(v) for v in value)
    if isinstance(value, dict):
        return {k: detached(v) for k, v in value.items()}
    return value


def candidate_output(ops: Sequence[torch.nn.Module], run: Callable[[torch.nn.Module], torch.Tensor], arch: CellArch,
                     edge: int, none_index: int = -1,
                     idle_run: Optional[Callable[[torch.nn.Module], torch.Tensor]] = None) -> Optional[torch.Tensor]:
    """`edge_output` for candidates called by `run(op)` (any arguments): under GDAS only the sampled candidate
    runs; `none_index` -1: no candidate is `none`.

    The no-acceleration ablation runs the other candidates by `idle_run` (`run` on inputs detached from the
    graph), and a sampled `none` too: their one-hot weight is 0, so the only gradient they could pass to the
    layers before them is exactly 0, and without it those layers get none at all where GDAS gives them none
    (a draw of `none` on every path through a cell); A's gradient, through their outputs, is the same."""
    if arch.indices is None:
        assert arch.weights is not None
        w = arch.weights[edge]
        if arch.sampled is None:
            return sum(w[k] * run(op) for k, op in enumerate(ops))
        idle = idle_run or run
        return sum(w[k] * (run(op) if k == arch.sampled[edge] != none_index
                           else idle_output(op, lambda o=op: idle(o), arch))
                   for k, op in enumerate(ops))
    k = arch.indices[edge]
    if k == none_index:
        return None
    out = run(ops[k])
    return out if arch.weights is None else out * arch.weights[edge, k]


def idle_output(op: torch.nn.Module, run: Callable[[], torch.Tensor], arch: CellArch) -> torch.Tensor:
    """`run()`, the output of an unsampled `op` of the no-acceleration ablation: computed (its cost is the
    ablation's point), but its BN running statistics are left as GDAS leaves them, and it is listed for
    `drop_idle_grads`."""
    arch.idle.append(op)
    buffers = list(op.buffers()) if op.training else []
    saved = [b.clone() for b in buffers]
    out = run()
    with torch.no_grad():
        for b, old in zip(buffers, saved):
            b.data.copy_(old)  # `.data`: the restore must not count as an in-place change for autograd
    return out


def drop_idle_grads(archs: Iterable[Optional[CellArch]]) -> None:
    """After a no-acceleration W step's backward: the unsampled ops' zero-valued gradients become None, so
    SGD's weight decay and momentum skip them exactly as under GDAS (where they never ran)."""
    for arch in archs:
        for op in arch.idle if arch is not None else ():
            for p in op.parameters():
                p.grad = None


def cell_arch(drawn: Sample, row: int, mode: str, arch_grad: bool) -> CellArch:
    """The `CellArch` of one cell from row `row` of a draw (see `SearchNetwork.sample_arch`)."""
    indices = None if drawn.indices is None or mode == "gdas-noaccel" else drawn.indices[row]
    weights = drawn.weights[row]
    if not arch_grad:
        weights = None if indices is not None else weights.detach()
    sampled = drawn.indices[row] if mode == "gdas-noaccel" and drawn.indices is not None else None
    return CellArch(weights, indices, sampled)


def sample(logits: torch.Tensor, tau: float, mode: str, generator: Optional[torch.Generator] = None,
           k: Optional[Sequence[int]] = None) -> Sample:
    """Draw edge weights for `mode` in SAMPLERS (`k`: k of K per row, see `gumbel_sample`)."""
    if mode == "darts":
        return Sample(torch.softmax(logits, dim=-1), None)
    if mode in ("gdas", "gdas-noaccel"):
        return gumbel_sample(logits, tau, generator, k)
    raise ValueError(f"unknown sampler {mode!r}; choose one of {', '.join(SAMPLERS)}")
