"""Test helper: class folders of real image files (Fashion-MNIST images exported as PNG / JPEG, grey or tinted)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pytest

from gdas.data.images import FASHION_MNIST_DEFAULT_DIR, read_idx

# A tint per class so that RGB folders differ by colour as well as by shape.
TINTS = ((1.0, 0.6, 0.3), (0.3, 0.8, 1.0), (0.9, 0.9, 0.2), (0.5, 1.0, 0.5))


@lru_cache(maxsize=1)
def fashion_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The Fashion-MNIST training images (N, 28, 28) and labels; the test is skipped without them."""
    images = os.path.join(FASHION_MNIST_DEFAULT_DIR, "train-images-idx3-ubyte.gz")
    labels = os.path.join(FASHION_MNIST_DEFAULT_DIR, "train-labels-idx1-ubyte.gz")
    if not (os.path.isfile(images) and os.path.isfile(labels)):
        pytest.skip(f"Fashion-MNIST is not in {FASHION_MNIST_DEFAULT_DIR}")
    return read_idx(images, 3), read_idx(labels, 1)


def write_image_folder(root: Union[str, Path], *, n_per_class: int, classes: Sequence[str] = ("boot", "coat", "shirt"),
                       fmt: str = "png", mode: str = "L", size: Union[int, tuple[int, int]] = 28,
                       split: str = "train", offset: int = 0, prefix: str = "") -> Path:
    """`root/split/<class>/<prefix><i>.<fmt>`: n_per_class Fashion-MNIST images per class (class k: label k, from the
    `offset`-th image of that label on), grayscale (mode "L") or tinted RGB ("RGB"), resized to `size` (a side or
    (width, height)). Returns `root`."""
    from PIL import Image

    x, y = fashion_mnist()
    root = Path(root)
    width, height = (size, size) if isinstance(size, int) else size
    for label, name in enumerate(classes):
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, index in enumerate(np.flatnonzero(y == label)[offset:offset + n_per_class]):
            img = Image.fromarray(x[index])
            if mode == "RGB":
                tint = np.array(TINTS[label % len(TINTS)])
                img = Image.fromarray((x[index][..., None] * tint).astype(np.uint8), "RGB")
            if (width, height) != (28, 28):
                img = img.resize((width, height), Image.BILINEAR)
            options = {"quality": 95} if fmt in ("jpg", "jpeg") else {}
            img.save(folder / f"{prefix}{i:04d}.{fmt}", **options)
    return root


# 16-bit grey files as Pillow opens them: a PNG ("I;16"), a big-endian TIFF ("I;16B"), a 32-bit integer TIFF ("I",
# also how Pillow before 10 opens 16-bit PNGs).
SIXTEEN_BIT_KINDS = {"png": "I;16", "tiff-big-endian": "I;16B", "tiff-int32": "I"}


def sixteen_bit_values(side: int, seed: int = 0) -> np.ndarray:
    """(side, side) uint16 values over the whole range, with 0, 65535 and a value just under a rounding step."""
    values = np.random.default_rng(seed).integers(0, 65536, size=(side, side), dtype=np.uint16)
    values.flat[:4] = (0, 65535, 128, 129)  # 128 / 257 rounds down to 0, 129 / 257 up to 1
    return values


def write_sixteen_bit(path: Union[str, Path], values: np.ndarray, kind: str = "png") -> Path:
    """`values` (uint16, H x W) as a grayscale file of `kind` (SIXTEEN_BIT_KINDS), at `path` with its suffix."""
    from PIL import Image

    path = Path(path).with_suffix(".png" if kind == "png" else ".tiff")
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = values.shape
    if kind == "png":
        img = Image.fromarray(values)
    elif kind == "tiff-big-endian":
        img = Image.frombytes("I;16B", (width, height), values.astype(">u2").tobytes())
    else:
        img = Image.fromarray(values.astype(np.int32))
    img.save(path)
    with Image.open(path) as check:
        assert check.mode == SIXTEEN_BIT_KINDS[kind], check.mode
    return path


def eight_bit_of(values: np.ndarray) -> np.ndarray:
    """The 8-bit pixels of 16-bit values on the fixed scale 0..65535 -> 0..255, rounded (floats, not integers)."""
    return np.rint(values.astype(np.float64) * 255 / 65535).astype(np.uint8)


def halves(width: int, height: int, dark: int = 30, bright: int = 220) -> np.ndarray:
    """An upright RGB picture (height, width, 3): the left half dark, the right half bright."""
    pixels = np.full((height, width, 3), dark, dtype=np.uint8)
    pixels[:, width // 2:] = bright
    return pixels


# EXIF orientation -> the quarter turns (np.rot90, counter-clockwise) from the upright picture to the stored pixels:
# a viewer turns 6 by 90 degrees clockwise, 8 counter-clockwise, 3 by 180 degrees (EXIF 2.3, tag 0x0112).
STORED_TURNS = {1: 0, 3: 2, 6: 1, 8: -1}


def write_oriented_jpeg(path: Union[str, Path], upright: np.ndarray, orientation: int) -> Path:
    """A JPEG whose stored pixels show `upright` once a viewer applies its EXIF `orientation`."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = np.ascontiguousarray(np.rot90(upright, STORED_TURNS[orientation]))
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    return path
