"""Parameters and multiply-adds of NB201 networks, counted the way the NB201 benchmark reports them."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gdas.errors import GdasError
from gdas.flops import count_mult_adds, count_parameters
from gdas.spaces.nb201.genotype import NB201Genotype
from gdas.spaces.nb201.networks import NB201Network

# dataset -> (input channels, resolution, classes), as NB201 trains its networks.
NB201_DATASETS: dict[str, tuple[int, int, int]] = {
    "cifar10": (3, 32, 10),
    "cifar100": (3, 32, 100),
    "imagenet16-120": (3, 16, 120),
}


def bias_adds(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """One addition per output element of every Conv2d and Linear that has a bias (one input, eval mode).

    The reference's FLOP counter adds these to the multiply-adds that `gdas.flops.count_mult_adds` counts.
    """
    total = 0

    def hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() // output.shape[0]

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None]
    handles = [m.register_forward_hook(hook) for m in layers]
    was_training = model.training
    first = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=first.device, dtype=first.dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total


def nb201_info(genotype: NB201Genotype | str, dataset: str, *, C: int = 16, N: int = 5) -> dict[str, Any]:
    """Size of the NB201 network of `genotype` on `dataset` (cifar10, cifar100, imagenet16-120).

    params_M: every parameter / 1e6 (BN affine included), the reference's `count_parameters_in_MB`.
    mult_adds_M: Conv2d and Linear multiply-adds plus their bias additions / 1e6, the reference's
    `get_model_infos` (pooling, BN, activations and the node sums are not counted).
    """
    key = dataset.lower()
    if key not in NB201_DATASETS:
        raise GdasError(f"unknown NB201 dataset {dataset!r}; choose one of {', '.join(NB201_DATASETS)}")
    channels, size, classes = NB201_DATASETS[key]
    model = NB201Network(genotype, C, N, classes, in_channels=channels)
    shape = (channels, size, size)
    return {
        "params_M": count_parameters(model, exclude=()) / 1e6,
        "mult_adds_M": (count_mult_adds(model, shape) + bias_adds(model, shape)) / 1e6,
        "C": C,
        "N": N,
        "input_size": size,
        "num_classes": classes,
        "dataset": key,
    }
