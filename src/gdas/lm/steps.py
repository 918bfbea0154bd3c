"""What the recurrent search and LM training share: the token-stream cursor, the window loss, evaluation."""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from typing import Iterator, Optional

import torch
from torch import nn

from gdas.configs.runtime import autocast
from gdas.errors import GdasError
from gdas.lm.corpus import bptt_windows, get_batch
from gdas.spaces.rnn.model import RNNModel


class TokenCursor:
    """The position in a batchified (T, B) split; the next BPTT window, wrapping to the start at the end."""

    def __init__(self, data: torch.Tensor):
        self.data, self.pos = data, data.size(0)  # at the end: the first window starts a fresh pass

    @property
    def at_end(self) -> bool:
        return self.pos >= self.data.size(0) - 1

    def windows_per_pass(self, bptt: int) -> int:
        return -(-(self.data.size(0) - 1) // bptt)

    def next(self, bptt: int, generator: Optional[torch.Generator] = None, randomise: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(inputs, targets, wrapped): `wrapped` means a new pass began and the hidden state must restart."""
        wrapped = self.at_end
        if wrapped:
            self.pos = 0
        _, seq_len = next(bptt_windows(self.data.size(0) - self.pos, bptt, generator, randomise))
        x, y = get_batch(self.data, self.pos, seq_len)
        self.pos += x.size(0)
        return x, y, wrapped


def window_loss(model: RNNModel, x: torch.Tensor, y: torch.Tensor, hidden: torch.Tensor, *,
                device: torch.device, amp: str, alpha: float = 0.0, beta: float = 0.0,
                archs: Optional[list] = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean NLL, NLL + AR/TAR, new hidden) of one window; the hidden state comes in detached."""
    with autocast(device, amp):
        raw, dropped, hidden = model.features(x, hidden.detach(), archs)
        nll = model.nll(dropped, y)
    loss = nll
    if alpha > 0:  # AR: large activations of the dropped outputs
        loss = loss + alpha * dropped.float().pow(2).mean()
    if beta > 0:  # TAR: large changes of the raw outputs between steps
        loss = loss + beta * (raw[1:] - raw[:-1]).float().pow(2).mean()
    return nll, loss, hidden


def check_finite(loss: float, epoch: int, lr_option: str) -> None:
    """A NaN/inf training loss means the run diverged: stop before its checkpoint overwrites the last good one."""
    if not math.isfinite(loss):
        raise GdasError(f"training diverged in epoch {epoch} (train loss {loss}); the last checkpoint is from "
                        f"before it: start a new run with a lower {lr_option} or a --grad-clip")


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Batch norms normalise with the batch's own statistics and leave their running statistics untouched."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in norms]
    for m in norms:
        m.training, m.track_running_stats = True, False
    try:
        yield
    finally:
        for m, (training, track) in zip(norms, saved):
            m.training, m.track_running_stats = training, track


@torch.no_grad()
def evaluate(model: RNNModel, data: torch.Tensor, bptt: int, *, device: torch.device, amp: str,
             norm_batch_stats: bool = False, archs: Optional[list] = None) -> tuple[float, int]:
    """(summed NLL, tokens) over a batchified split in eval mode, the hidden state carried throughout.

    `norm_batch_stats`: batch norms use batch statistics (a search cell evaluated as a different
    sub-cell than the ones its running statistics were gathered on).
    """
    was_training = model.training
    model.eval()
    hidden = model.init_hidden(data.size(1))
    total = torch.zeros((), device=data.device)
    tokens = 0
    with batch_statistics(model) if norm_batch_stats else nullcontext():
        for start, seq_len in bptt_windows(data.size(0), bptt):
            x, y = get_batch(data, start, seq_len)
            with autocast(device, amp):
                _, dropped, hidden = model.features(x, hidden, archs)
                total += model.nll(dropped, y).float() * y.numel()
            tokens += y.numel()
    model.train(was_training)
    return float(total), tokens
