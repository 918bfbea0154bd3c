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
