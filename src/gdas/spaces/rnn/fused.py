"""The recurrent cells' time loop as one autograd node per window, with its backward written out by hand.

The cell's tensors are small (batch x hidden), so autograd's bookkeeping of several hundred tiny ops per time step
costs more than their arithmetic. `run_cell` computes the same formulas as the cells' autograd path
(`cells._RecurrentBase`): s0 = h + sigmoid(c0) * (tanh(g0) - h) with [c0, g0] = x W0x + (h*m) W0h, then per node
the sum over its edges of s_j + sigmoid(c) * (f(g) - s_j) with [c, g] = (s_j*m) W_i, optionally batch-normalised
(search cell) and scaled by straight-through weights (the A step), h_t the mean of the `concat` states; its
backward walks the window in reverse with the same formulas differentiated. Only the functions a plan names are
computed (a GDAS sample runs its sampled functions alone), and only the gradients autograd asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn

_sigmoid_backward = torch.ops.aten.sigmoid_backward.default  # grad * out * (1 - out)
_tanh_backward = torch.ops.aten.tanh_backward.default  # grad * (1 - out^2)
_threshold_backward = torch.ops.aten.threshold_backward.default  # grad where out > 0, else 0
_batch_norm_backward = torch.ops.aten.native_batch_norm_backward.default
Activation = tuple[Callable[[torch.Tensor], object], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
# name -> (in-place forward, gradient from (grad, output)); looked up at call time, so tests can count the calls.
ACTIVATIONS: dict[str, Activation] = {
    "tanh": (torch.Tensor.tanh_, _tanh_backward),
    "relu": (torch.Tensor.relu_, lambda grad, out: _threshold_backward(grad, out, 0)),
    "sigmoid": (torch.Tensor.sigmoid_, _sigmoid_backward),
    "identity": (lambda x: x, lambda grad, out: grad),
}


@dataclass(frozen=True)
class NodePlan:
    """One node: its edges' input states in computation order and the runs of edges sharing a function."""

    sources: tuple[int, ...]
    groups: tuple[tuple[str, int, int], ...]  # (function, first edge, end edge)
    scale_at: int = 0  # where the node's straight-through weights start in the flat `scales`

    @classmethod
    def of(cls, pairs: Sequence[tuple[str, int]], scale_at: int = 0) -> "NodePlan":
        groups: list[tuple[str, int, int]] = []
        for e, (name, _) in enumerate(pairs):
            if groups and groups[-1][0] == name:
                groups[-1] = (name, groups[-1][1], e + 1)
            else:
                groups.append((name, e, e + 1))
        return cls(tuple(j for _, j in pairs), tuple(groups), scale_at)


@dataclass(frozen=True)
class CellPlan:
    """What the cell computes at every step: its nodes (None: all edges `none`, a zero state) and the output mean."""

    nodes: tuple[Optional[NodePlan], ...]
    concat: tuple[int, ...]


def supports_norm(bn: nn.Module) -> bool:
    """Whether the fused window computes what `bn` does: a plain BatchNorm1d, no affine parameters, a momentum."""
    return type(bn) is nn.BatchNorm1d and not bn.affine and bn.momentum is not None


class _Norm:
    """The arguments `nn.BatchNorm1d.forward` would pass to batch_norm, fixed for a window (no affine parameters)."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        if not supports_norm(bn):
            raise ValueError("the fused cell supports plain BatchNorm1d without affine parameters and with a momentum")
        self.bn = bn
        self.training = bn.training or (bn.running_mean is None and bn.running_var is None)
        use_running = not bn.training or bn.track_running_stats
        self.mean = bn.running_mean if use_running else None
        self.var = bn.running_var if use_running else None
        self.counts = bn.training and bn.track_running_stats and bn.num_batches_tracked is not None
        self.momentum = bn.momentum if bn.training and bn.track_running_stats else 0.0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return torch.native_batch_norm(x, None, None, self.mean, self.var, self.training, self.momentum,
                                       self.bn.eps)

    def backward(self, grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor
                 ) -> torch.Tensor:
        return _batch_norm_backward(grad, x, None, self.mean, self.var, mean, invstd, self.training, self.bn.eps,
                                    [True, False, False])[0]

    def count(self, steps: int) -> None:
        if self.counts:
            self.bn.num_batches_tracked.add_(steps)


class _Tape:
    """What the backward needs from the forward of one window."""

    def __init__(self) -> None:
        self.top: list[tuple] = []  # per step: (h*m, sigmoid(c0), tanh(g0), s0 before its norm, mean, invstd)
        # per step and node: (inputs S, S*m (2-D), sigmoid(c), f(g), output before scaling (A step only), node
        # before its norm, mean, invstd)
        self.nodes: list[list[Optional[tuple]]] = []
        self.indexes: list[Optional[torch.Tensor]] = []  # per node: `_Node.index`, made once for both passes


@dataclass(frozen=True, slots=True)
class _Node:
    """A node's plan with what the loop needs at hand: its matrix, norm, straight-through weights."""

    sources: list[int]
    groups: tuple[tuple[str, int, int], ...]
    weight: torch.Tensor
    norm: Optional[_Norm]
    scale: Optional[torch.Tensor]  # (n, 1, 1), or (1,) for a single edge
    scale_at: int  # where `scale` starts in the flat straight-through weights
    index: Optional[torch.Tensor]  # several edges: their sources, where index_add_ puts their gradients


def _nodes(plan: CellPlan, norms: Optional[list[_Norm]], scales: Optional[torch.Tensor],
           ws: Sequence[torch.Tensor], device: torch.device, indexes: Optional[list[Optional[torch.Tensor]]] = None
           ) -> list[Optional[_Node]]:
    """The plan's nodes; `indexes`: their index tensors from the forward (a device copy each, made once)."""
    nodes: list[Optional[_Node]] = []
    for i, node in enumerate(plan.nodes, start=1):
        if node is None:
            nodes.append(None)
            continue
        n = len(node.sources)
        scale = None if scales is None else scales[node.scale_at:node.scale_at + n]
        if indexes is not None:
            index = indexes[i - 1]
        else:
            index = torch.tensor(node.sources, device=device) if n > 1 else None
        nodes.append(_Node(list(node.sources), node.groups, ws[i - 1], None if norms is None else norms[i],
                           None if scale is None else scale.view(-1, 1, 1) if n > 1 else scale, node.scale_at,
                           index))
    return nodes


def _activate(f: torch.Tensor, groups: tuple[tuple[str, int, int], ...]) -> None:
    if len(groups) == 1:
        ACTIVATIONS[groups[0][0]][0](f)
    else:
        for name, a, b in groups:
            ACTIVATIONS[name][0](f[a:b])


def _activation_grad(d_f: torch.Tensor, f: torch.Tensor, groups: tuple[tuple[str, int, int], ...]) -> torch.Tensor:
    if len(groups) == 1:
        return ACTIVATIONS[groups[0][0]][1](d_f, f)
    return torch.cat([ACTIVATIONS[name][1](d_f[a:b], f[a:b]) for name, a, b in groups])


def _forward(plan: CellPlan, norms: Optional[list[_Norm]], h_mask: Optional[torch.Tensor], xw: torch.Tensor,
             h0: torch.Tensor, scales: Optional[torch.Tensor], wh: torch.Tensor, ws: Sequence[torch.Tensor],
             tape: Optional[_Tape]) -> torch.Tensor:
    """The outputs (T, B, H); fills `tape` when given."""
    nhid = h0.size(1)
    nodes = _nodes(plan, norms, scales, ws, xw.device)
    if tape is not None:
        tape.indexes = [None if node is None else node.index for node in nodes]
    norm0 = None if norms is None else norms[0]
    concat = list(plan.concat)
    outputs = []
    zeros = None
    h = h0
    for x_t in xw.unbind(0):
        hm = h if h_mask is None else h * h_mask
        a0 = torch.addmm(x_t, hm, wh)
        sig0, tanh0 = a0[:, :nhid], a0[:, nhid:]
        sig0.sigmoid_()
        tanh0.tanh_()
        s0 = torch.lerp(h, tanh0, sig0)
        if norm0 is None:
            z, mean, invstd = s0, None, None
        else:
            z, mean, invstd = norm0.forward(s0)
        states = [z]
        saved: list[Optional[tuple]] = []
        for node in nodes:
            if node is None:
                if zeros is None:
                    zeros = torch.zeros_like(h0)
                states.append(zeros)
                saved.append(None)
                continue
            if node.index is None:
                src = states[node.sources[0]]
                msrc = src if h_mask is None else src * h_mask
                cg = torch.mm(msrc, node.weight)
                c, f = cg[:, :nhid], cg[:, nhid:]
            else:
                src = torch.stack([states[j] for j in node.sources])
                msrc = (src if h_mask is None else src * h_mask).view(-1, nhid)
                cg = torch.mm(msrc, node.weight).view(len(node.sources), -1, 2 * nhid)
                c, f = cg[..., :nhid], cg[..., nhid:]
            c.sigmoid_()
            _activate(f, node.groups)
            out = torch.lerp(src, f, c)
            pre = out if node.scale is None else out * node.scale
            if node.index is not None:
                pre = pre.sum(0)
            if node.norm is None:
                z, mean_i, invstd_i = pre, None, None
            else:
                z, mean_i, invstd_i = node.norm.forward(pre)
            states.append(z)
            saved.append((src, msrc, c, f, out if node.scale is not None else None, pre, mean_i, invstd_i))
        h = torch.stack([states[i] for i in concat]).mean(0)
        outputs.append(h)
        if tape is not None:
            tape.top.append((hm, sig0, tanh0, s0, mean, invstd))
            tape.nodes.append(saved)
    if norms is not None:
        for norm, node in zip(norms, (True, *plan.nodes)):
            if node is not None:
                norm.count(len(outputs))
    return torch.stack(outputs)


class _CellWindow(torch.autograd.Function):
    """One window of the cell: inputs xw (T, B, 2H) = x W0x, h0, the straight-through weights, W0h and the W_i."""

    @staticmethod
    def forward(ctx, plan: CellPlan, norms: Optional[list[_Norm]], h_mask: Optional[torch.Tensor],  # type: ignore[override]
                xw: torch.Tensor, h0: torch.Tensor, scales: Optional[torch.Tensor], wh: torch.Tensor,
                *ws: torch.Tensor) -> torch.Tensor:
        tape = _Tape()
        outputs = _forward(plan, norms, h_mask, xw, h0, scales, wh, ws, tape)
        ctx.plan, ctx.norms, ctx.tape = plan, norms, tape
        ctx.save_for_backward(h_mask, h0, scales, wh, outputs, *ws)
        return outputs

    @staticmethod
    def backward(ctx, d_outputs: torch.Tensor):  # type: ignore[override]
        plan: CellPlan = ctx.plan
        tape: _Tape = ctx.tape
        h_mask, h0, scales, wh, outputs, *ws = ctx.saved_tensors
        need = ctx.needs_input_grad
        nhid = h0.size(1)
        nodes = _nodes(plan, ctx.norms, scales, ws, h0.device, tape.indexes)
        norm0 = None if ctx.norms is None else ctx.norms[0]
        d_wh = torch.zeros_like(wh) if need[6] else None
        # A matrix whose node sampled `none` on every edge never ran: no gradient (SGD leaves it as it is).
        d_ws = [torch.zeros_like(w) if n and node is not None else None for w, n, node in zip(ws, need[7:], nodes)]
        d_scales = torch.zeros_like(scales) if need[5] else None
        wh_t = wh.t()
        ws_t = [w.t() for w in ws]
        n_states, concat = len(plan.nodes) + 1, list(plan.concat)
        others = [j for j in range(n_states) if j not in concat]
        d_xw: list[torch.Tensor] = []
        d_h: Optional[torch.Tensor] = None
        for t in range(outputs.size(0) - 1, -1, -1):
            d_out_t = d_outputs[t] if d_h is None else d_outputs[t] + d_h
            d_states = (d_out_t / len(concat)).expand(n_states, -1, -1).clone()
            for j in others:
                d_states[j].zero_()
            for i in range(len(nodes), 0, -1):
                node, saved = nodes[i - 1], tape.nodes[t][i - 1]
                if node is None:
                    continue
                src, msrc, c, f, out, pre, mean, invstd = saved
                d_pre = d_states[i] if node.norm is None else node.norm.backward(d_states[i], pre, mean, invstd)
                if node.scale is not None:
                    if d_scales is not None:
                        d_scale = (out * d_pre).sum((-2, -1)) if node.index is not None else (out * d_pre).sum().view(1)
                        d_scales[node.scale_at:node.scale_at + len(node.sources)] += d_scale
                    d_pre = d_pre * node.scale
                d_f = c * d_pre
                d_src = d_pre - d_f
                d_c = (f - src).mul_(d_pre)
                d_cg = torch.cat([_sigmoid_backward(d_c, c), _activation_grad(d_f, f, node.groups)], -1)
                d_cg = d_cg.view(-1, 2 * nhid)
                if d_ws[i - 1] is not None:
                    d_ws[i - 1].addmm_(msrc.t(), d_cg)
                d_msrc = torch.mm(d_cg, ws_t[i - 1]).view_as(d_src)
                if h_mask is None:
                    d_src += d_msrc
                else:
                    d_src.addcmul_(d_msrc, h_mask)
                if node.index is None:
                    d_states[node.sources[0]] += d_src
                else:
                    d_states.index_add_(0, node.index, d_src)
            hm, sig0, tanh0, s0, mean0, invstd0 = tape.top[t]
            h = h0 if t == 0 else outputs[t - 1]
            d_s0 = d_states[0] if norm0 is None else norm0.backward(d_states[0], s0, mean0, invstd0)
            d_tanh0 = d_s0 * sig0
            d_h = d_s0 - d_tanh0
            d_a0 = torch.cat([_sigmoid_backward((tanh0 - h).mul_(d_s0), sig0),
                              _tanh_backward(d_tanh0, tanh0)], 1)
            d_xw.append(d_a0)
            if d_wh is not None:
                d_wh.addmm_(hm.t(), d_a0)
            d_hm = torch.mm(d_a0, wh_t)
            if h_mask is None:
                d_h += d_hm
            else:
                d_h.addcmul_(d_hm, h_mask)
        d_xw.reverse()
        return (None, None, None, torch.stack(d_xw) if need[3] else None, d_h if need[4] else None, d_scales,
                d_wh, *d_ws)


def run_cell(plan: CellPlan, norms: Optional[Sequence[nn.modules.batchnorm._BatchNorm]], h_mask: Optional[torch.Tensor],
             xw: torch.Tensor, h0: torch.Tensor, scales: Optional[torch.Tensor], wh: torch.Tensor,
             ws: Sequence[torch.Tensor]) -> torch.Tensor:
    """The cell's outputs (T, B, H) over a window; `norms` normalise states 0..steps (None: no norms)."""
    norm_args = None if norms is None else [_Norm(bn) for bn in norms]
    tensors = (xw, h0, scales, wh, *ws)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _CellWindow.apply(plan, norm_args, h_mask, xw, h0, scales, wh, *ws)
    with torch.no_grad():
        return _forward(plan, norm_args, h_mask, xw, h0, scales, wh, ws, None)
