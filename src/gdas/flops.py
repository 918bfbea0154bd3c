"""Parameter and multiply-add counting from the real modules (forward hooks)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def count_parameters(module: nn.Module, exclude: tuple[str, ...] = ("auxiliary",)) -> int:
    """Number of parameters whose qualified name does not start with one of the `exclude` prefixes."""
    return sum(p.numel() for name, p in module.named_parameters() if not name.startswith(exclude))


def _conv_mult_adds(module: nn.Conv2d, output: torch.Tensor) -> int:
    kh, kw = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * kh * kw


def _linear_mult_adds(module: nn.Linear, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def count_mult_adds(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass on one input of `input_shape` (no batch dimension), eval mode.

    Counts Conv2d (output elements x in_channels/groups x kh x kw) and Linear (in x out per sample)
    modules that actually run; BN, activations, pooling and additions are not counted (the NAS
    papers' convention). Modules that do not run in eval mode, such as the auxiliary head, count 0.
    """
    total = 0

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += _conv_mult_adds(module, output)
        elif isinstance(module, nn.Linear):
            total += _linear_mult_adds(module, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    first = next(model.parameters(), None)
    x = torch.zeros(1, *input_shape, device=None if first is None else first.device,
                    dtype=torch.float32 if first is None else first.dtype)
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total
