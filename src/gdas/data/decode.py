"""One image file to pixels: the EXIF orientation applied, 16-bit grey scaled to 8 bits, the shorter side resized
and the centre cropped; shared by the folder reader, its streamed batches and the ImageNet reader."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch

from gdas.data.dataset import to_channels

GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
# Integer grey of 16 bits ("I": how Pillow before 10 opens 16-bit PNGs, and 16/32-bit TIFFs): 0..65535 is the range.
WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_ORIENTATION = 0x0112  # the EXIF tag; values 5..8 turn the image by 90 degrees (width and height swap)


def eight_bit(img: Any) -> Any:
    """A Pillow image as 8-bit "L" (grayscale modes) or "RGB". 16-bit grey is mapped by the fixed scale
    0..65535 -> 0..255 (rounded), the same for every image, so that one brightness means one value; Pillow's own
    conversion would clip every value above 255."""
    from PIL import Image

    if img.mode in WIDE_GRAY_MODES:
        values = np.asarray(img).astype(np.int64).clip(0, 65535)  # "I" can hold more: clipped at white
        return Image.fromarray(((values + 128) // 257).astype(np.uint8), "L")  # round(v * 255 / 65535)
    return img.convert("L" if img.mode in GRAY_MODES else "RGB")


def oriented_size(img: Any) -> tuple[int, int]:
    """(width, height) of an opened image as its EXIF orientation shows it, read from the header alone (a PNG's
    EXIF chunk after the pixels is not: reading it would decode them)."""
    w, h = img.size
    if img.format == "PNG" and "exif" not in img.info:
        return w, h
    return (h, w) if img.getexif().get(_ORIENTATION) in (5, 6, 7, 8) else (w, h)


def open_image(path: str) -> Any:
    """The image of a file, loaded, turned upright by its EXIF orientation (phone photos), in 8-bit "L" or "RGB"."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        if img.getexif().get(_ORIENTATION, 1) != 1:
            img = ImageOps.exif_transpose(img)
        return eight_bit(img)  # a loaded copy: the file can close


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
    """(uint8 (1 or 3, size, size) pixels, the upright image's (width, height)): grayscale modes keep one channel."""
    img = open_image(path)
    original = img.size
    pixels = np.asarray(resize_crop(img, size))
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
