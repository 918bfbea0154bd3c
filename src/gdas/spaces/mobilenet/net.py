"""A MobileNet-style space in the manner of ProxylessNAS / FBNet, written only with the public API (torch and
gdas.nn): inverted-residual blocks choosing kernel 3/5/7 and expansion 3/6, a skip for depth; stride and width
fixed per stage."""

from __future__ import annotations

import torch
import gdas
from torch import nn

# MobileNetV2's stages: (width, stride on ImageNet); every stage holds up to `depth` blocks (the last one: 1).
STAGES = ((24, 2), (32, 2), (64, 2), (96, 1), (160, 2), (320, 1))
# 28-32 px images keep more resolution: a stride-1 stem and first stage (32 -> 32, 16, 8, 8, 4, 4).
CIFAR_STRIDES = (1, 2, 2, 1, 2, 1)
KERNELS, EXPANSIONS = (3, 5, 7), (3, 6)
CANDIDATES = tuple(f"k{k}e{e}" for k in KERNELS for e in EXPANSIONS)
LAYOUTS = ("imagenet", "cifar")


def divisible(value: float, by: int = 8) -> int:
    """`value` rounded to a multiple of `by` (at least `by`, never below 90% of it), as MobileNetV2 rounds widths."""
    rounded = max(by, int(value + by / 2) // by * by)
    return rounded + by if rounded < 0.9 * value else rounded


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion (none at expansion 1), k x k depthwise, 1x1 projection; a residual when
    the shape is kept."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expansion: int, stride: int):
        super().__init__()
        hidden = c_in * expansion
        layers = [] if expansion == 1 else [conv_bn(c_in, hidden, 1)]
        layers += [conv_bn(hidden, hidden, kernel, stride, groups=hidden), conv_bn(hidden, c_out, 1, act=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def block_choice(c_in: int, c_out: int, stride: int, label: str, skip: bool) -> gdas.nn.Choice:
    """Kernel 3/5/7 x expansion 3/6, and, for a block that keeps the shape, a skip (the block left out)."""
    candidates = {f"k{k}e{e}": InvertedResidual(c_in, c_out, k, e, stride) for k in KERNELS for e in EXPANSIONS}
    if skip:
        candidates["skip"] = nn.Identity()
    return gdas.nn.Choice(candidates, label=label)


class MobileNetSpace(nn.Module):
    """Stem, a fixed first block (expansion 1, kernel 3), six stages of searched blocks, 1x1 head, pooling, linear.

    `width` scales every width (MobileNetV2's multiplier); `depth` is the number of blocks of stages 1-5 (stage 6
    has one); each block after a stage's first may be skipped. Labels are `s{stage}b{block}`.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0, depth: int = 4,
                 layout: str = "imagenet"):
        super().__init__()
        if layout not in LAYOUTS:
            raise gdas.GdasError(f"layout {layout!r} is not one of: {', '.join(LAYOUTS)}")
        strides = [s for _, s in STAGES] if layout == "imagenet" else CIFAR_STRIDES
        c = divisible(32 * width)
        self.stem = conv_bn(in_channels, c, 3, 2 if layout == "imagenet" else 1)
        first = divisible(16 * width)
        self.first = InvertedResidual(c, first, 3, 1, 1)
        blocks, c = [], first
        for stage, ((base, _), stride) in enumerate(zip(STAGES, strides), start=1):
            out = divisible(base * width)
            for b in range(1 if stage == len(STAGES) else depth):
                blocks.append(block_choice(c, out, stride if b == 0 else 1, f"s{stage}b{b + 1}", skip=b > 0))
                c = out
        self.blocks = nn.Sequential(*blocks)
        last = max(1280, divisible(1280 * width))
        self.head = conv_bn(c, last, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.first(self.stem(x))))
        return self.classifier(self.pool(x).flatten(1))


def mobilenet_v2_choices(depth: int = 4) -> dict[str, str]:
    """MobileNetV2 1.0 in the space: expansion 6, kernel 3, its (2, 3, 4, 3, 3, 1) blocks per stage, the rest
    skipped (depth >= 4)."""
    blocks = (2, 3, 4, 3, 3, 1)
    return {f"s{stage}b{b}": "k3e6" if b <= n else "skip"
            for stage, n in enumerate(blocks, start=1) for b in range(1, (1 if stage == 6 else depth) + 1)}
