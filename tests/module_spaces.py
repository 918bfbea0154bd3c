"""Small module spaces for the tests, importable by path (module:module_spaces:Name) from other processes."""

from __future__ import annotations

import torch
from torch import nn

import gdas


class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.lin = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lin(x))


class Regressor(nn.Module):
    """x (N, 4) -> (N, 1): a choice of block (a parameter-free skip among them) and a depth."""

    def __init__(self, in_channels: int = 4):
        super().__init__()
        self.stem = nn.Linear(in_channels, 16)
        self.block = gdas.nn.Choice({"wide": nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16)),
                                     "narrow": nn.Linear(16, 16), "skip": nn.Identity()}, label="block")
        self.body = gdas.nn.Repeat(lambda i: Block(16), depth=(1, 2, 3), label="depth")
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.block(self.stem(x))))


class Dense(nn.Module):
    """A per-pixel prediction (N, 3, H, W) -> (N, 2, H, W): kernel sizes tied by one label, 1 of 2 inputs."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = gdas.nn.Choice.from_values(lambda k: nn.Conv2d(8, 8, k, padding=k // 2), (1, 3, 5), label="kernel")
        self.b = gdas.nn.Choice.from_values(lambda k: nn.Conv2d(8, 8, k, padding=k // 2), (1, 3, 5), label="kernel")
        self.merge = gdas.nn.InputChoice(2, 1, label="merge")
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        a = torch.relu(self.a(h))
        b = torch.relu(self.b(a))
        return self.head(self.merge([a, b]))


class Classifier(nn.Module):
    """Images (N, C, S, S) -> logits: what `gdas search --space module:...` searches on image data."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.op = gdas.nn.Choice({"conv3": nn.Conv2d(8, 8, 3, padding=1), "conv5": nn.Conv2d(8, 8, 5, padding=2),
                                  "pool": nn.MaxPool2d(3, 1, 1)}, label="op")
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.op(torch.relu(self.stem(x)))).mean((2, 3)))


class Mismatched(nn.Module):
    """A candidate whose output shape differs from its sibling's."""

    def __init__(self):
        super().__init__()
        self.op = gdas.nn.Choice({"same": nn.Linear(4, 4), "wider": nn.Linear(4, 6)}, label="op")
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.op(x))


def regression_data(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, 2 * x[:, :1] - x[:, 1:2]


def mask_data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose per-pixel class is whether the red channel is positive."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    return x, (x[:, 0] > 0).long()


class ConvMismatch(nn.Module):
    """Image candidates of which one halves the side."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.op = gdas.nn.Choice({"keep": nn.Conv2d(in_channels, 4, 3, padding=1),
                                  "halve": nn.Conv2d(in_channels, 4, 3, stride=2, padding=1)}, label="op")
        self.head = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.op(x).mean((2, 3)))


class Clash(nn.Module):
    """Two choices under one label with different candidates."""

    def __init__(self):
        super().__init__()
        self.a = gdas.nn.Choice({"x": nn.Linear(4, 4), "y": nn.Identity()}, label="k")
        self.b = gdas.nn.Choice({"x": nn.Linear(4, 4), "z": nn.Identity()}, label="k")
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(self.a(x)))
