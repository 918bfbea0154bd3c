"""The decoder's mean negative log-likelihood over the vocabulary, with a backward that reuses its one (N, V) buffer.

autograd's linear + log_softmax + nll_loss copies the bias into the (N, V) logits, keeps the log-probabilities,
then allocates a zero-filled (N, V) gradient for nll_loss and another (N, V) for log_softmax's backward, and sums
the gradient's columns for the bias. Here the logits are turned into log-probabilities in place (on the CPU),
and the backward turns those into softmax - one-hot in place: the same gradient, (p - y) / N, with one (N, V)
tensor per window.
With a 10,000-word vocabulary that buffer is the largest tensor of a training step.
"""

from __future__ import annotations

import torch

_log_softmax_out = torch.ops.aten._log_softmax.out


class _DecoderNLL(torch.autograd.Function):
    """mean_n -log softmax(h W^T + b)[n, y_n] for h (N, H), W (V, H), b (V), targets y (N).

    The bias rides in the matrix product as a column of W against a column of ones in h, so that neither the
    forward (no (N, V) copy of b to add to) nor the backward (no column sum of the (N, V) gradient) makes an extra
    pass over the largest tensor.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,  # type: ignore[override]
                targets: torch.Tensor) -> torch.Tensor:
        w_b = torch.cat([weight, bias.view(-1, 1)], 1)
        h_1 = torch.cat([h, h.new_ones(h.size(0), 1)], 1)
        log_probs = torch.mm(h_1, w_b.t())
        if log_probs.device.type == "cpu":  # the CPU kernel finishes reading a row before writing it: in place
            _log_softmax_out(log_probs, 1, False, out=log_probs)
        else:
            log_probs = torch.log_softmax(log_probs, 1)
        nll = -log_probs.gather(1, targets.view(-1, 1)).mean()
        ctx.save_for_backward(h_1, w_b, targets, log_probs)
        return nll

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        h_1, w_b, targets, log_probs = ctx.saved_tensors
        nhid = h_1.size(1) - 1
        d_logits = log_probs.exp_()  # softmax, in the saved buffer: this backward runs once
        d_logits.scatter_add_(1, targets.view(-1, 1), d_logits.new_full((targets.numel(), 1), -1.0))
        scale = grad / targets.numel()
        d_h = torch.mm(d_logits, w_b[:, :nhid]).mul_(scale) if ctx.needs_input_grad[0] else None
        d_w_b = torch.mm(d_logits.t(), h_1).mul_(scale) if any(ctx.needs_input_grad[1:3]) else None
        return (d_h, None if d_w_b is None else d_w_b[:, :nhid], None if d_w_b is None else d_w_b[:, nhid], None)


def decoder_nll(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The mean NLL of `targets` under softmax(h W^T + b), as F.nll_loss(F.log_softmax(F.linear(h, W, b)), y)."""
    return _DecoderNLL.apply(h, weight, bias, targets)
