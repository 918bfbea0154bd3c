"""Parameter and multiply-add counting from the real modules (forward hooks)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def count_parameters(module: nn.Module, exclude: tuple[str, ...] = ("auxiliary",)) -> int:
    """Number of parameters whose qualified name does not start with one of the `exclude` prefixes."""
    return sum(p.numel() for name, p in module.named_parameters() if not name.startswith(exclude))


def mult_adds_of(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-adds of one call of a Conv2d (output elements x in_channels/groups x kh x kw) or a Linear (output
    elements x in_features); 0 for any other module."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def count_mult_adds(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass on one input of `input_shape` (no batch dimension), eval mode.

    Counts Conv2d (output elements x in_channels/groups x kh x kw) and Linear (in x out per sample)
    modules that actually run; BN, activations, pooling and additions are not counted (the NAS
    papers' convention). Modules that do not run in eval mode, such as the auxiliary head, count 0.
    """
    first = next(model.parameters(), None)
    x = torch.zeros(1, *input_shape, device=None if first is None else first.device,
                    dtype=torch.float32 if first is None else first.dtype)
    return count_mult_adds_on(model, x)


def count_mult_adds_on(model: nn.Module, x: Any) -> int:
    """`count_mult_adds` of one forward pass on the input `x` as given (a batch of one for per-sample counts)."""
    total = 0

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        total += mult_adds_of(module, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total
