"""The DARTS recurrent cell family: the search cell (GDAS / DARTS / no-acceleration edges) and the final cell."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
from torch import nn

from gdas.configs.runtime import autocast_enabled
from gdas.errors import GdasError
from gdas.spaces.rnn.fused import CellPlan, NodePlan, run_cell, supports_norm
from gdas.spaces.rnn.genotype import NONE_INDEX, RNN_PRIMITIVES, RecurrentGenotype

INIT_RANGE = 0.04  # DARTS: uniform(-0.04, 0.04) for every cell matrix
# Looked up at call time (not bound at construction), so tests can count which functions run.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda x: x,
}


def num_rnn_edges(steps: int) -> int:
    """Edges of a recurrent search cell: node i (1..steps) has inputs 0..i-1 (36 for 8 steps)."""
    return steps * (steps + 1) // 2


def _dropout_mask(like: torch.Tensor, rows: int, cols: int, p: float) -> torch.Tensor:
    """A variational dropout mask (rows, cols), scaled by 1/(1-p)."""
    return like.new_empty(rows, cols).bernoulli_(1 - p) / (1 - p)


class _RecurrentBase(nn.Module):
    """W0 and one W_i per node; runs the cell over time with x/h masks drawn once per sequence.

    A plan of sampled or fixed functions runs through `fused.run_cell` (one autograd node per window); DARTS
    mixing, autocast and `fused = False` run `_nodes` step by step under autograd, the reference formulas.
    """

    def __init__(self, ninp: int, nhid: int, dropout_x: float, dropout_h: float, steps: int):
        super().__init__()
        self.ninp, self.nhid, self.steps = ninp, nhid, steps
        self.fused = True
        self.dropout_x, self.dropout_h = dropout_x, dropout_h
        self.W0 = nn.Parameter(torch.empty(ninp + nhid, 2 * nhid).uniform_(-INIT_RANGE, INIT_RANGE))
        self.Ws = nn.ParameterList(
            nn.Parameter(torch.empty(nhid, 2 * nhid).uniform_(-INIT_RANGE, INIT_RANGE)) for _ in range(steps))

    def _masks(self, inputs: torch.Tensor) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        if not self.training:
            return None, None
        batch = inputs.size(1)
        x_mask = _dropout_mask(inputs, batch, self.ninp, self.dropout_x) if self.dropout_x > 0 else None
        h_mask = _dropout_mask(inputs, batch, self.nhid, self.dropout_h) if self.dropout_h > 0 else None
        return x_mask, h_mask

    def _run(self, inputs: torch.Tensor, hidden: torch.Tensor, plan: object
             ) -> tuple[torch.Tensor, torch.Tensor]:
        x_mask, h_mask = self._masks(inputs)
        x = inputs if x_mask is None else inputs * x_mask
        # The x half of W0 for every step in one matmul; the h half per step.
        xw = (x.reshape(-1, self.ninp) @ self.W0[:self.ninp]).view(inputs.size(0), -1, 2 * self.nhid)
        wh = self.W0[self.ninp:]
        fused = self._fused_plan(plan) if self.fused and not autocast_enabled(inputs.device.type) else None
        if fused is not None:
            cell_plan, scales = fused
            out = run_cell(cell_plan, self._norms(), h_mask, xw, hidden, scales, wh, list(self.Ws))
            return out, out[-1]
        outputs = []
        for t in range(inputs.size(0)):
            h_in = hidden if h_mask is None else hidden * h_mask
            c0, g0 = (xw[t] + h_in @ wh).chunk(2, dim=-1)
            s0 = hidden + torch.sigmoid(c0) * (torch.tanh(g0) - hidden)
            hidden = self._nodes(s0, h_mask, plan)
            outputs.append(hidden)
        return torch.stack(outputs), hidden

    def _fused_plan(self, plan: object) -> Optional[tuple[CellPlan, Optional[torch.Tensor]]]:
        """The fused loop's plan and straight-through weights for `plan`; None: run the autograd path."""
        raise NotImplementedError

    def _norms(self) -> Optional[list[nn.Module]]:
        return None

    def _project(self, node: int, sources: list[torch.Tensor], h_mask: Optional[torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For n edges into `node` (1-based): stacked s_j, sigmoid(c) and g from [c, g] = s_j W_node."""
        s = torch.stack(sources)
        s_in = s if h_mask is None else s * h_mask
        cg = (s_in.view(-1, self.nhid) @ self.Ws[node - 1]).view(len(sources), -1, 2 * self.nhid)
        c, g = cg.chunk(2, dim=-1)
        return s, torch.sigmoid(c), g

    def _edges(self, node: int, sources: list[torch.Tensor], funcs: list[str],
               h_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """(n, B, H) edge outputs s_j + sigmoid(c) * (f(g) - s_j), f = funcs[edge]."""
        s, c, g = self._project(node, sources, h_mask)
        parts, start = [], 0
        for end in range(1, len(funcs) + 1):  # consecutive edges with the same function share one call
            if end == len(funcs) or funcs[end] != funcs[start]:
                parts.append(ACTIVATIONS[funcs[start]](g[start:end]))
                start = end
        f = parts[0] if len(parts) == 1 else torch.cat(parts)
        return s + c * (f - s)

    def _nodes(self, s0: torch.Tensor, h_mask: Optional[torch.Tensor], plan: object) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class _Sampled:
    """A GDAS sample: each node's active (function index, input) pairs, sorted, and their gathered weights."""

    actives: list[list[tuple[int, int]]]
    scales: Optional[torch.Tensor]  # the active edges' straight-through weights, node after node; None: unscaled

    def node_scales(self) -> list[Optional[torch.Tensor]]:
        if self.scales is None:
            return [None] * len(self.actives)
        return [s.view(-1, 1, 1) for s in self.scales.split([len(a) for a in self.actives])]

    def cell_plan(self) -> CellPlan:
        nodes, at = [], 0
        for active in self.actives:
            nodes.append(NodePlan.of([(RNN_PRIMITIVES[k], j) for k, j in active], at) if active else None)
            at += len(active)
        return CellPlan(tuple(nodes), tuple(range(1, len(self.actives) + 1)))


class RecurrentSearchCell(_RecurrentBase):
    """The DARTS recurrent search cell: node i sums an edge from every earlier node (36 edges for 8 steps).

    `forward(inputs, hidden, weights, indices)`: with `indices` (GDAS) edge e runs only function
    `indices[e]` (edges sampling `none` are skipped) and is scaled by `weights[e, k]` (exactly 1.0
    forward, gradient to A) or left unscaled when `weights` is None (the W step). Without `indices`
    every function runs, mixed by `weights` (DARTS softmax, or the no-acceleration one-hot).
    s0 and the node outputs are batch-normalised without affine parameters (a node whose edges all
    sampled `none` stays exactly zero).
    """

    def __init__(self, ninp: int, nhid: int, dropout_x: float, dropout_h: float, steps: int = 8):
        super().__init__(ninp, nhid, dropout_x, dropout_h, steps)
        self.n_edges = num_rnn_edges(steps)
        self.bns = nn.ModuleList(nn.BatchNorm1d(nhid, affine=False) for _ in range(steps + 1))

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor, weights: Optional[torch.Tensor] = None,
                indices: Optional[list[int]] = None) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.n_edges, len(RNN_PRIMITIVES))
        if weights is not None and tuple(weights.shape) != shape:
            raise ValueError(f"expected edge weights of shape {shape}, got {tuple(weights.shape)}")
        if indices is None and weights is None:
            raise ValueError("give sampled `indices` (GDAS) or mixing `weights` (DARTS / no-acceleration)")
        if indices is not None and len(indices) != self.n_edges:
            raise ValueError(f"expected {self.n_edges} sampled indices, got {len(indices)}")
        return self._run(inputs, hidden, self._plan(weights, indices))

    def _plan(self, weights: Optional[torch.Tensor], indices: Optional[list[int]]) -> Union[list, _Sampled]:
        """What each node computes, fixed for the whole sequence, so built (and A gathered) once: DARTS mixing
        weights per node (node, K), or the GDAS sample."""
        if indices is None:
            assert weights is not None
            starts = [num_rnn_edges(node - 1) for node in range(1, self.steps + 1)]
            return [weights[start:start + node] for node, start in enumerate(starts, start=1)]
        actives, flat, edge = [], [], 0
        for node in range(1, self.steps + 1):
            active = sorted((int(indices[edge + j]), j) for j in range(node) if int(indices[edge + j]) != NONE_INDEX)
            actives.append(active)
            flat += [(edge + j) * weights.shape[1] + k for k, j in active] if weights is not None else []
            edge += node
        # The sampled entries' straight-through weights, gathered in one index copy for the whole cell.
        scales = None if weights is None else weights.flatten()[torch.tensor(flat, device=weights.device)]
        return _Sampled(actives, scales)

    def _fused_plan(self, plan: object) -> Optional[tuple[CellPlan, Optional[torch.Tensor]]]:
        plain_norms = all(supports_norm(bn) for bn in self.bns)
        return (plan.cell_plan(), plan.scales) if isinstance(plan, _Sampled) and plain_norms else None

    def _norms(self) -> Optional[list[nn.Module]]:
        return list(self.bns)

    def _nodes(self, s0: torch.Tensor, h_mask: Optional[torch.Tensor], plan: object) -> torch.Tensor:
        states = [self.bns[0](s0)]
        if isinstance(plan, _Sampled):
            for node, (active, scale) in enumerate(zip(plan.actives, plan.node_scales()), start=1):
                if not active:  # every edge sampled `none`: the node contributes exactly zero
                    states.append(torch.zeros_like(s0))
                    continue
                out = self._edges(node, [states[j] for _, j in active], [RNN_PRIMITIVES[k] for k, _ in active],
                                  h_mask)
                states.append(self.bns[node]((out if scale is None else out * scale).sum(0)))
        else:
            for node, weights in enumerate(plan, start=1):  # type: ignore[arg-type]
                states.append(self.bns[node](self._mixed(node, states, h_mask, weights)))
        return torch.stack(states[1:]).mean(0)

    def _mixed(self, node: int, states: list[torch.Tensor], h_mask: Optional[torch.Tensor],
               weights: torch.Tensor) -> torch.Tensor:
        """Every function on every edge into `node`, weighted by `weights` (node, K); `none` adds zero."""
        s, c, g = self._project(node, states[:node], h_mask)
        total = torch.zeros_like(states[0])
        for k, name in enumerate(RNN_PRIMITIVES):
            if k != NONE_INDEX:
                out = s + c * (ACTIVATIONS[name](g) - s)
                total = total + (weights[:, k].view(-1, 1, 1) * out).sum(0)
        return total


class RecurrentCell(_RecurrentBase):
    """The final recurrent cell of a genotype: node i sums its (function, input) pairs; h_t = mean of concat."""

    def __init__(self, ninp: int, nhid: int, dropout_x: float, dropout_h: float, genotype: RecurrentGenotype):
        if not isinstance(genotype, RecurrentGenotype):
            raise GdasError(f"a language model needs a recurrent genotype, got a {genotype.kind} genotype; "
                            "pass e.g. GDAS_RNN or DARTS_V2_RNN")
        super().__init__(ninp, nhid, dropout_x, dropout_h, len(genotype.recurrent))
        self.genotype = genotype
        self._cell_plan = CellPlan(tuple(NodePlan.of(pairs) for pairs in genotype.recurrent), genotype.concat)

    def _fused_plan(self, plan: object) -> Optional[tuple[CellPlan, Optional[torch.Tensor]]]:
        return self._cell_plan, None

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(inputs, hidden, None)

    def _nodes(self, s0: torch.Tensor, h_mask: Optional[torch.Tensor], plan: object) -> torch.Tensor:
        states = [s0]
        for node, pairs in enumerate(self.genotype.recurrent, start=1):
            out = self._edges(node, [states[j] for _, j in pairs], [name for name, _ in pairs], h_mask)
            states.append(out.sum(0) if len(pairs) > 1 else out[0])
        return torch.stack([states[i] for i in self.genotype.concat]).mean(0)
