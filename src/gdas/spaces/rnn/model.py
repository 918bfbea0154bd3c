"""Word-level language models around a recurrent cell: final and search variants, derivation, perplexity."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from gdas.configs.runtime import autocast_enabled
from gdas.errors import GdasError
from gdas.sampler import SAMPLERS, CellArch, cell_arch, sample
from gdas.spaces.rnn.cells import RecurrentCell, RecurrentSearchCell, num_rnn_edges
from gdas.spaces.rnn.genotype import NONE_INDEX, RNN_PRIMITIVES, RecurrentGenotype
from gdas.spaces.rnn.softmax import decoder_nll

EMBED_INIT_RANGE = 0.1


class LockedDropout(nn.Module):
    """Variational dropout on a (T, B, H) sequence: one mask per sequence, shared over time."""

    def forward(self, x: torch.Tensor, p: float) -> torch.Tensor:
        if not self.training or p <= 0:
            return x
        mask = x.new_empty(1, x.size(1), x.size(2)).bernoulli_(1 - p) / (1 - p)
        return x * mask


def embedded_dropout(embed: nn.Embedding, words: torch.Tensor, dropout: float) -> torch.Tensor:
    """Look up `words`, dropping whole rows (words) of the embedding with probability `dropout` (scaled)."""
    weight = embed.weight
    if dropout > 0:
        mask = weight.new_empty(weight.size(0), 1).bernoulli_(1 - dropout) / (1 - dropout)
        weight = weight * mask
    return F.embedding(words, weight, embed.padding_idx, embed.max_norm, embed.norm_type,
                       embed.scale_grad_by_freq, embed.sparse)


class RNNModel(nn.Module):
    """Embedding -> recurrent cell -> tied decoder, with AWD-LSTM dropouts.

    `dropout` on the cell output, `dropouti` on the embedded input (both locked over time),
    `dropoute` on embedding rows. The cell owns its x/h variational dropout; `dropouth` /
    `dropoutx`, when given, override the cell's values.
    """

    def __init__(self, ntoken: int, ninp: int, nhid: int, cell: nn.Module, dropout: float = 0.75,
                 dropouth: Optional[float] = None, dropoutx: Optional[float] = None, dropouti: float = 0.2,
                 dropoute: float = 0.1):
        super().__init__()
        if ninp != nhid:
            raise GdasError(f"tied encoder/decoder weights need the embedding size to equal the hidden size "
                            f"(got {ninp} and {nhid}); set both to the same value")
        self.ntoken, self.ninp, self.nhid = ntoken, ninp, nhid
        self.dropout, self.dropouti, self.dropoute = dropout, dropouti, dropoute
        if dropouth is not None:
            cell.dropout_h = dropouth
        if dropoutx is not None:
            cell.dropout_x = dropoutx
        self.lockdrop = LockedDropout()
        self.encoder = nn.Embedding(ntoken, ninp)
        self.cell = cell
        self.fused_nll = True
        self.decoder = nn.Linear(nhid, ntoken)
        self.decoder.weight = self.encoder.weight
        with torch.no_grad():
            self.encoder.weight.uniform_(-EMBED_INIT_RANGE, EMBED_INIT_RANGE)
            self.decoder.bias.zero_()

    def init_hidden(self, bsz: int) -> torch.Tensor:
        weight = self.encoder.weight
        return weight.new_zeros(bsz, self.nhid)

    def features(self, input: torch.Tensor, hidden: torch.Tensor, archs: Optional[list[CellArch]] = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(raw cell outputs, their dropped version (both (T, B, nhid)), new hidden state): all but the decoder.

        `archs`: for a search cell, what it computes (`sample_arch`, or a fixed `CellArch`); None for a final cell.
        """
        emb = embedded_dropout(self.encoder, input, self.dropoute if self.training else 0.0)
        emb = self.lockdrop(emb, self.dropouti)
        if archs is None:
            raw, hidden = self.cell(emb, hidden)
        else:
            raw, hidden = self.cell(emb, hidden, archs[0].weights, archs[0].indices)
        return raw, self.lockdrop(raw, self.dropout), hidden

    @property
    def fused(self) -> bool:
        """Whether the cell runs its fused window and the decoder its fused NLL; False: autograd's reference ops."""
        return self.fused_nll and self.cell.fused

    @fused.setter
    def fused(self, on: bool) -> None:
        self.fused_nll = self.cell.fused = on

    def nll(self, dropped: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of `targets` (T, B) under the decoder of `dropped` (T, B, nhid) (float32 at
        least: under autocast the log-softmax is taken in float32)."""
        flat, y = dropped.reshape(-1, self.nhid), targets.reshape(-1)
        if not self.fused_nll or autocast_enabled(dropped.device.type) or dropped.dtype not in (torch.float32,
                                                                                               torch.float64):
            return F.nll_loss(F.log_softmax(self.decoder(flat), dim=-1).float(), y)
        return decoder_nll(flat, self.decoder.weight, self.decoder.bias, y)

    def forward(self, input: torch.Tensor, hidden: torch.Tensor, archs: Optional[list[CellArch]] = None,
                return_h: bool = False):
        """Log-probabilities (T, B, ntoken) and the new hidden state (B, nhid).

        `archs`: for a search cell, what it computes (`sample_arch`, or a fixed `CellArch`); None for a final cell.

        With `return_h`, also the cell's raw outputs and their dropped version (T, B, nhid), for
        activation (AR) and temporal activation (TAR) regularisation.
        """
        raw, dropped, hidden = self.features(input, hidden, archs)
        log_probs = F.log_softmax(self.decoder(dropped), dim=-1)
        if return_h:
            return log_probs, hidden, raw, dropped
        return log_probs, hidden


class RNNSearchModel(RNNModel):
    """The search language model: a RecurrentSearchCell and the architecture logits A (edges, 5)."""

    def __init__(self, ntoken: int, ninp: int, nhid: int, dropout: float = 0.75, dropouth: float = 0.25,
                 dropoutx: float = 0.75, dropouti: float = 0.2, dropoute: float = 0.0, steps: int = 8,
                 sampler: str = "gdas"):
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        cell = RecurrentSearchCell(ninp, nhid, dropoutx, dropouth, steps)
        super().__init__(ntoken, ninp, nhid, cell, dropout, None, None, dropouti, dropoute)
        self.sampler = sampler
        self.arch = nn.Parameter(1e-3 * torch.randn(num_rnn_edges(steps), len(RNN_PRIMITIVES)))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.arch]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p is not self.arch]

    def sample_arch(self, tau: float, *, arch_grad: bool, generator: Optional[torch.Generator] = None
                    ) -> list[CellArch]:
        """What the cell computes in the next forward: `model(x, hidden, model.sample_arch(...))`.

        gdas: the sampled `indices` with straight-through `weights` (None when `arch_grad` is False:
        the W step runs the sampled cell unscaled); gdas-noaccel: the one-hot `weights` over every
        function; darts: softmax `weights`.
        """
        with torch.set_grad_enabled(arch_grad and torch.is_grad_enabled()):
            drawn = sample(self.arch[None], tau, self.sampler, generator)
        return [cell_arch(drawn, 0, self.sampler, arch_grad)]

    def probabilities(self) -> dict[str, Optional[torch.Tensor]]:
        with torch.no_grad():
            return {"recurrent": torch.softmax(self.arch, -1)}

    def genotype(self) -> RecurrentGenotype:
        return derive_recurrent(self.arch)


def derive_recurrent(logits: torch.Tensor) -> RecurrentGenotype:
    """T=1 derivation: each node keeps the (input, function) of highest softmax probability, `none` excluded.

    Ties break towards the earlier input and the earlier function.
    """
    return derive_recurrent_probs(torch.softmax(logits.detach().float().cpu(), dim=-1))


def derive_recurrent_probs(probs: torch.Tensor) -> RecurrentGenotype:
    """`derive_recurrent` from softmax(A) (edges, functions)."""
    probs = probs.detach().float().cpu().clone()
    rows, cols = probs.shape
    steps = int((math.isqrt(8 * rows + 1) - 1) // 2)
    if cols != len(RNN_PRIMITIVES) or num_rnn_edges(steps) != rows:
        raise ValueError(f"expected logits of shape (steps*(steps+1)/2, {len(RNN_PRIMITIVES)}), "
                         f"got {tuple(probs.shape)}")
    probs[:, NONE_INDEX] = -1.0
    nodes, edge = [], 0
    for node in range(1, steps + 1):
        block = probs[edge:edge + node]
        flat = int(torch.argmax(block.flatten()))  # row-major: first maximum = earliest input, earliest op
        j, k = divmod(flat, cols)
        nodes.append(((RNN_PRIMITIVES[k], j),))
        edge += node
    return RecurrentGenotype(tuple(nodes), tuple(range(1, steps + 1)))


def lm_param_count(genotype: RecurrentGenotype, ntoken: int, nhid: int) -> int:
    """Parameters of the language model of `genotype` (tied embedding, ninp = nhid), counted from real modules."""
    with torch.device("meta"):
        model = RNNModel(ntoken, nhid, nhid, RecurrentCell(nhid, nhid, 0.0, 0.0, genotype))
    return sum(p.numel() for p in model.parameters())


def perplexity(total_nll: float, n_tokens: int) -> float:
    """exp(mean negative log-likelihood per token); inf when it overflows."""
    if n_tokens <= 0:
        raise ValueError("perplexity needs at least one token")
    try:
        return math.exp(total_nll / n_tokens)
    except OverflowError:
        return math.inf
