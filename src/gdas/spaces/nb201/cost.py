"""Parameters and multiply-adds of NB201 networks (whole, or per cell op), counted the way the NB201 benchmark does."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Optional, Sequence

import torch
from torch import nn

from gdas.flops import count_mult_adds, count_parameters
from gdas.spaces.nb201.genotype import NB201Genotype
from gdas.spaces.nb201.networks import NB201Network
from gdas.spaces.nb201.ops import NB201_OPS, make_op
from gdas.spaces.nb201.places import empty_genotype, nb201_shape, stages
from gdas.spaces.nb201.supernet import num_edges


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


@lru_cache(maxsize=None)
def op_cost(op: str, C: int, size: int, kind: str) -> float:
    """Mult-adds (with bias adds, one image) or parameters of a cell op of an NB201 network, millions."""
    module = make_op(op, C, C, 1, affine=True, track_running_stats=True)
    if kind == "params":
        return count_parameters(module, exclude=()) / 1e6
    if not any(True for _ in module.parameters()):
        return 0.0
    shape = (C, size, size)
    return (count_mult_adds(module, shape) + bias_adds(module, shape)) / 1e6


def op_costs(cfg: Any, dataset: str, C: int, N: int, kind: str, *,
             shape: Optional[Sequence[int]] = None) -> dict[str, torch.Tensor]:
    """{"cell": (edges, ops) costs} summed over the 3N cells of the NB201 network (C, N on `dataset`, or on
    `shape` = (channels, side, classes) of the real data)."""
    per_op = torch.zeros(len(NB201_OPS), dtype=torch.float64)
    for width, side in stages(C, nb201_shape(dataset, shape)[1]):
        per_op += N * torch.tensor([op_cost(op, width, side, kind) for op in NB201_OPS], dtype=torch.float64)
    return {"cell": per_op.expand(num_edges(cfg.steps), -1).float().contiguous()}


def fixed_cost(cfg: Any, dataset: str, C: int, N: int, kind: str, *, shape: Optional[Sequence[int]] = None) -> float:
    """What no choice of ops changes in the NB201 network (C, N on `dataset`, or on `shape`): stem, the two
    residual blocks, classifier; counted as `nb201_info` counts the network whose every edge is `none`, millions."""
    return float(nb201_info(empty_genotype(cfg.steps), dataset, C=C, N=N, shape=shape)["params_M" if kind == "params" else "mult_adds_M"])


def nb201_info(genotype: NB201Genotype | str, dataset: str, *, C: int = 16, N: int = 5,
               shape: Optional[Sequence[int]] = None) -> dict[str, Any]:
    """Size of the NB201 network of `genotype` on `dataset` (cifar10, cifar100, imagenet16-120, ...) or on
    `shape` = (channels, side, classes).

    params_M: every parameter / 1e6 (BN affine included), the reference's `count_parameters_in_MB`.
    mult_adds_M: Conv2d and Linear multiply-adds plus their bias additions / 1e6, the reference's
    `get_model_infos` (pooling, BN, activations and the node sums are not counted).
    """
    key = dataset.lower()
    channels, size, classes = nb201_shape(key, shape)
    model = NB201Network(genotype, C, N, classes, in_channels=channels)
    image = (channels, size, size)
    return {
        "params_M": count_parameters(model, exclude=()) / 1e6,
        "mult_adds_M": (count_mult_adds(model, image) + bias_adds(model, image)) / 1e6,
        "C": C,
        "N": N,
        "input_size": size,
        "channels": channels,
        "num_classes": classes,
        "dataset": key,
    }
