"""Parameter and multiply-add counting from the real modules (forward hooks), and network size summaries."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gdas.errors import GdasError
from gdas.genotypes import Genotype

# dataset -> (input channels, resolution, classes) used for the paper's size reports.
DATASETS: dict[str, tuple[int, int, int]] = {
    "cifar10": (3, 32, 10),
    "cifar100": (3, 32, 100),
    "imagenet": (3, 224, 1000),
    "fashion-mnist": (1, 28, 10),
}


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


def network_info(genotype: Genotype, dataset: str, C: int, N: int) -> dict[str, Any]:
    """Size of the final network for `dataset`: params (M, without / with the auxiliary head), mult-adds (M)."""
    from gdas.spaces.darts.networks import build_network  # networks imports nothing from here; keep the import local

    key = dataset.lower()
    if key not in DATASETS:
        raise GdasError(f"unknown dataset {dataset!r} for network size; choose one of {', '.join(DATASETS)}")
    channels, size, classes = DATASETS[key]
    model = build_network(genotype, key, C, N, classes, auxiliary=True, in_channels=channels)
    return {
        "params_M": count_parameters(model) / 1e6,
        "params_aux_M": count_parameters(model, exclude=()) / 1e6,
        "mult_adds_M": count_mult_adds(model, (channels, size, size)) / 1e6,
        "C": C,
        "N": N,
        "dataset": key,
        "input_size": size,
    }
