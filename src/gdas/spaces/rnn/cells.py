"""The DARTS recurrent cell family: the search cell (GDAS / DARTS / no-acceleration edges) and the final cell."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from gdas.errors import GdasError
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
    """W0 and one W_i per node; runs `_nodes` over time with x/h masks drawn once per sequence."""

    def __init__(self, ninp: int, nhid: int, dropout_x: float, dropout_h: float, steps: int):
        super().__init__()
        self.ninp, self.nhid, self.steps = ninp, nhid, steps
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
        outputs = []
        for t in range(inputs.size(0)):
            h_in = hidden if h_mask is None else hidden * h_mask
            c0, g0 = (xw[t] + h_in @ wh).chunk(2, dim=-1)
            s0 = hidden + torch.sigmoid(c0) * (torch.tanh(g0) - hidden)
            hidden = self._nodes(s0, h_mask, plan)
            outputs.append(hidden)
        return torch.stack(outputs), hidden

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


# Per node of a search cell: ("mixed", weights (node, K)) or ("sampled", [(k, source)], scale (n,1,1) | None).
_NodePlan = tuple


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

    def _plan(self, weights: Optional[torch.Tensor], indices: Optional[list[int]]) -> list[_NodePlan]:
        """What each node computes; fixed for the whole sequence, so built (and A gathered) once."""
        plan: list = []
        if indices is None:
            assert weights is not None
            edge = 0
            for node in range(1, self.steps + 1):
                plan.append(("mixed", weights[edge:edge + node]))
                edge += node
            return plan
        actives, flat, edge = [], [], 0
        for node in range(1, self.steps + 1):
            active = sorted((int(indices[edge + j]), j) for j in range(node) if int(indices[edge + j]) != NONE_INDEX)
            actives.append(active)
            flat += [(edge + j) * weights.shape[1] + k for k, j in active] if weights is not None else []
            edge += node
        # The sampled entries' straight-through weights, gathered in one index copy for the whole cell.
        scales = (weights.flatten()[torch.tensor(flat, device=weights.device)].split([len(a) for a in actives])
                  if weights is not None else [None] * len(actives))
        for active, scale in zip(actives, scales):
            plan.append(("sampled", active, None if scale is None or not active else scale.view(-1, 1, 1)))
        return plan

    def _nodes(self, s0: torch.Tensor, h_mask: Optional[torch.Tensor], plan: object) -> torch.Tensor:
        states = [self.bns[0](s0)]
        for node, entry in enumerate(plan, start=1):  # type: ignore[arg-type]
            if entry[0] == "mixed":
                s = self._mixed(node, states, h_mask, entry[1])
            elif entry[1]:
                _, active, scale = entry
                out = self._edges(node, [states[j] for _, j in active], [RNN_PRIMITIVES[k] for k, _ in active],
                                  h_mask)
                s = (out if scale is None else out * scale).sum(0)
            else:  # every edge sampled `none`: the node contributes exactly zero
                states.append(torch.zeros_like(s0))
                continue
            states.append(self.bns[node](s))
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

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(inputs, hidden, None)

    def _nodes(self, s0: torch.Tensor, h_mask: Optional[torch.Tensor], plan: object) -> torch.Tensor:
        states = [s0]
        for node, pairs in enumerate(self.genotype.recurrent, start=1):
            out = self._edges(node, [states[j] for _, j in pairs], [name for name, _ in pairs], h_mask)
            states.append(out.sum(0) if len(pairs) > 1 else out[0])
        return torch.stack([states[i] for i in self.genotype.concat]).mean(0)
