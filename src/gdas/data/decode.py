"""One image file to pixels: the shorter side resized and the centre cropped; shared by the folder reader, its
streamed batches and the ImageNet reader."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch

from gdas.data.dataset import to_channels

GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def resize_crop(img: Any, size: int, resize: Optional[int] = None) -> Any:
    """The shorter side resized to `resize` (default `size`; bilinear), then the centred size x size square; a
    square of that size is kept as it is."""
    from PIL import Image

    resize = size if resize is None else resize
    w, h = img.size
    if (w, h) == (size, size) and resize == size:
        return img
    scale = resize / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def decode_image(path: str, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(uint8 (1 or 3, size, size) pixels, the original (width, height)): grayscale modes keep one channel."""
    from PIL import Image

    with Image.open(path) as img:
        original = img.size
        img = resize_crop(img.convert("L" if img.mode in GRAY_MODES else "RGB"), size)
    pixels = np.asarray(img)
    return (pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)), original


def stack_images(arrays: Sequence[np.ndarray], channels: int, size: int) -> torch.Tensor:
    """uint8 (N, channels, size, size) from single images of 1 or 3 channels (`to_channels` per group)."""
    x = torch.empty((len(arrays), channels, size, size), dtype=torch.uint8)
    for c in (1, 3):
        idx = [i for i, a in enumerate(arrays) if a.shape[0] == c]
        if idx:
            x[idx] = to_channels(torch.from_numpy(np.stack([arrays[i] for i in idx])), channels)
    return x


def unreadable(path: str, error: str) -> str:
    return (f"cannot read image {path} ({error}); replace or remove the file, or pass --skip-bad-images to leave "
            "unreadable images out")
