"""The final networks a latency table describes: built from a genotype at the table's size, random ones of its
space (for calibration and checks), and their latency measured under the table's settings."""

from __future__ import annotations

from typing import Any, Collection, Mapping

import torch
from torch import nn

from gdas.export import onnx_bytes
from gdas.latency.table import LatencyTable
from gdas.latency.timing import Settings, Timing, module_ms
from gdas.spaces.base import SearchSpace


def measure(module: nn.Module, input_shape: tuple[int, ...], settings: Settings) -> Timing:
    """The median latency of `module` (an op or a whole network) under `settings`, in their runtime."""
    return module_ms(module, input_shape, settings, to_onnx=onnx_bytes)


def final_network(table: LatencyTable, space: SearchSpace, genotype: Any) -> nn.Module:
    """The genotype's final network at the size and on the images the table was built for (no auxiliary head)."""
    C, N = table.size
    channels, _, classes = table.shape
    return space.build_network(genotype, dataset=table.network.get("dataset", "cifar10"), C=C, N=N,
                               num_classes=classes, auxiliary=False, in_channels=channels)


def network_ms(table: LatencyTable, space: SearchSpace, genotype: Any) -> Timing:
    """The genotype's final network measured end to end under the table's settings."""
    channels, side, _ = table.shape
    return measure(final_network(table, space, genotype), (channels, side, side), table.settings)


def random_genotypes(space: SearchSpace, cfg: Any, shapes: Mapping[str, tuple[int, int]], count: int, seed: int,
                     exclude: Collection[str] = ()) -> list[Any]:
    """`count` distinct random genotypes of the space, none in `exclude` (their text forms): its own derivation
    of softmax(A) for Gaussian A of `shapes` {A matrix: (rows, ops)}, so that they are what a search can derive."""
    generator = torch.Generator().manual_seed(seed)
    found: dict[str, Any] = {}
    for _ in range(100 * count):
        if len(found) == count:
            break
        probs = {name: torch.softmax(torch.randn(rows, ops, generator=generator), -1)
                 for name, (rows, ops) in shapes.items()}
        genotype = space.derive(probs, cfg)
        if str(genotype) not in exclude:
            found.setdefault(str(genotype), genotype)
    return list(found.values())
