"""Helpers the supernet tests of every space share: seeded generators and batches, the soft Gumbel sample."""

from __future__ import annotations

import torch

from gdas.sampler import gumbel_noise


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def image_batch(seed: int = 0, size: int = 16, channels: int = 3, n: int = 2, classes: int = 3
                ) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    return torch.randn(n, channels, size, size, generator=g), torch.randint(0, classes, (n,), generator=g)


def soft_sample(logits: torch.Tensor, seed: int, tau: float) -> torch.Tensor:
    """The soft sample h~ that sample_arch draws from generator `seed` over `logits`, with a graph to them."""
    noise = gumbel_noise(logits.shape, logits, gen(seed))
    return torch.softmax((torch.log_softmax(logits, -1) + noise) / tau, dim=-1)


def cell_output_shapes(net: torch.nn.Module, x: torch.Tensor, tau: float) -> tuple[torch.Tensor, list[tuple]]:
    """(logits, the output shape of every cell) of one forward pass on a sample drawn from generator 0."""
    shapes: list[tuple] = []
    hooks = [cell.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape))) for cell in net.cells]
    try:
        out = net(x, net.sample_arch(tau, arch_grad=True, generator=gen(0)))
    finally:
        for h in hooks:
            h.remove()
    return out, shapes
