"""Batched augmentation on the batch's own device: crop with padding, flip, cutout, normalisation."""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch
import torch.nn.functional as F

from gdas.errors import GdasError


@lru_cache(maxsize=32)
def _affine(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """(scale, shift) with x_uint8 * scale + shift == (x / 255 - mean) / std, shaped (1, C, 1, 1)."""
    m = torch.tensor(mean, dtype=torch.float64)
    s = torch.tensor(std, dtype=torch.float64)
    scale, shift = 1.0 / (255.0 * s), -m / s
    return tuple(t.to(device=device, dtype=torch.float32).view(1, -1, 1, 1) for t in (scale, shift))


def _check(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> None:
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise ValueError(f"expected uint8 images (B, C, H, W), got {x.dtype} {tuple(x.shape)}")
    if not len(mean) == len(std) == x.shape[1]:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} entries for {x.shape[1]} channels")


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float],
              channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 (x / 255 - mean) / std, without augmentation (for evaluation)."""
    _check(x, mean, std)
    scale, shift = _affine(tuple(map(float, mean)), tuple(map(float, std)), x.device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return x.to(dtype=torch.float32, memory_format=fmt).mul_(scale).add_(shift)


class BatchAugment:
    """Random crop (zero padding), horizontal flip and cutout for a whole batch at once, then normalisation.

    Every random draw comes from the `generator` given to `__call__`, which must live on the batch's
    device, so a run is reproducible from the generator's state. Cutout is applied after normalisation
    and sets the square to 0 there (as the reference cutout code does), i.e. to the dataset mean.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], *, crop_padding: int = 4,
                 flip: bool = True, cutout: int = 0, channels_last: bool = False) -> None:
        if crop_padding < 0 or cutout < 0:
            raise GdasError(f"crop padding and cutout must be >= 0, got {crop_padding} and {cutout}")
        self.mean = tuple(map(float, mean))
        self.std = tuple(map(float, std))
        self.crop_padding = crop_padding
        self.flip = flip
        self.cutout = cutout
        self.channels_last = channels_last

    def __repr__(self) -> str:
        return (f"BatchAugment(crop_padding={self.crop_padding}, flip={self.flip}, cutout={self.cutout}, "
                f"channels_last={self.channels_last})")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check(x, self.mean, self.std)
        if self.crop_padding or self.flip:
            x = self._crop_flip(x, generator)
        out = normalize(x, self.mean, self.std, self.channels_last)
        if self.cutout:
            out.masked_fill_(self._cutout_mask(out, generator), 0.0)
        return out

    def _crop_flip(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One gather: output pixel (i, j) of image b reads padded pixel (oy_b + i, ox_b + j or mirrored)."""
        b, c, h, w = x.shape
        p = self.crop_padding
        padded = F.pad(x, (p, p, p, p)) if p else x
        offsets = torch.randint(0, 2 * p + 1, (b, 2), generator=generator, device=x.device)
        rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (B, H)
        cols = torch.arange(w, device=x.device).expand(b, w)
        if self.flip:
            flipped = torch.randint(0, 2, (b, 1), generator=generator, device=x.device).bool()
            cols = torch.where(flipped, w - 1 - cols, cols)
        cols = cols + offsets[:, 1:]
        index = (rows[:, :, None] * (w + 2 * p) + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
        return padded.reshape(b, c, -1).gather(2, index).view(b, c, h, w)

    def _cutout_mask(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(B, 1, H, W) mask of a `cutout`-sided square per image, centre uniform, clipped at the borders."""
        b, _, h, w = x.shape
        centres = torch.rand((b, 2), generator=generator, device=x.device)
        cy = (centres[:, :1] * h).long().clamp_max(h - 1)
        cx = (centres[:, 1:] * w).long().clamp_max(w - 1)
        half = self.cutout // 2
        ys = torch.arange(h, device=x.device) - (cy - half)  # position inside the square, (B, H)
        xs = torch.arange(w, device=x.device) - (cx - half)
        inside_y = (ys >= 0) & (ys < self.cutout)
        inside_x = (xs >= 0) & (xs < self.cutout)
        return (inside_y[:, :, None] & inside_x[:, None, :]).unsqueeze(1)


def batch_indices(n: int, batch_size: int, generator: torch.Generator, *, shuffle: bool = True,
                  drop_last: bool = False) -> list[torch.Tensor]:
    """Index batches covering range(n) once (a permutation drawn on the CPU `generator` when shuffling)."""
    if batch_size < 1:
        raise GdasError(f"batch size must be at least 1, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    batches = list(order.split(batch_size)) if n else []
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches
