"""ImageNet16-120: the 16x16 downsampled-ImageNet pickles, cut to the first 120 classes as NAS-Bench-201 does."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from gdas.data.dataset import ImageDataset, make_dataset, require_files
from gdas.data.pickles import checked_batch, load_array_pickle
from gdas.errors import GdasError

IMAGENET16_URL = "https://image-net.org/download-images"
_HOW = (f"download Imagenet16_train.zip and Imagenet16_val.zip (downsampled ImageNet 16x16) from {IMAGENET16_URL} "
        f"and extract both into that folder")
TRAIN_FILES = tuple(f"train_data_batch_{i}" for i in range(1, 11))
VAL_FILE = "val_data"
# NB201's normalisation for ImageNet16 (xautodl datasets/get_dataset_with_transform.py), in [0, 1] units.
NB201_MEAN = (122.68 / 255, 116.66 / 255, 104.01 / 255)
NB201_STD = (63.22 / 255, 61.26 / 255, 65.09 / 255)


def _folder(data_dir: str | None) -> str:
    """The folder holding the pickles: `data_dir`, or its ImageNet16/ subfolder (NB201's layout)."""
    if data_dir is None:
        raise GdasError(f"imagenet16-120 needs --data-dir DIR holding train_data_batch_1..10 and val_data ({_HOW})")
    data_dir = os.path.expanduser(data_dir)
    if not os.path.isdir(data_dir):
        raise GdasError(f"--data-dir {data_dir} does not exist; {_HOW}")
    for sub in ("", "ImageNet16", "Imagenet16"):
        if os.path.isfile(os.path.join(data_dir, sub, VAL_FILE)):
            return os.path.join(data_dir, sub) if sub else data_dir
    return data_dir


def _locate(folder: str) -> list[str]:
    """Paths of the ten training batches and val_data; the zips' own subfolders are accepted too."""
    train_dir = os.path.join(folder, "Imagenet16_train")
    val_dir = os.path.join(folder, "Imagenet16_val")
    if not os.path.isfile(os.path.join(folder, TRAIN_FILES[0])) and os.path.isdir(train_dir):
        paths = require_files(train_dir, list(TRAIN_FILES), _HOW)
    else:
        paths = require_files(folder, list(TRAIN_FILES), _HOW)
    if not os.path.isfile(os.path.join(folder, VAL_FILE)) and os.path.isdir(val_dir):
        return paths + require_files(val_dir, [VAL_FILE], _HOW)
    return paths + require_files(folder, [VAL_FILE], _HOW)


def _load(path: str) -> Any:
    return load_array_pickle(path, "an ImageNet16 batch", _HOW)


def _get(batch: Any, key: str) -> Any:
    """batch[key], whether the pickle stored its keys as str (Python 3) or bytes (Python 2)."""
    if not isinstance(batch, dict):
        return None
    return batch.get(key, batch.get(key.encode()))


def read_batch(path: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 3, 16, 16) uint8 and labels 0..num_classes-1 of the rows whose label is 1..num_classes."""
    batch = _load(path)
    data, labels = checked_batch(path, _get(batch, "data"), _get(batch, "labels"), 768,
                                 "a downsampled-ImageNet 16x16 batch", _HOW)
    keep = (labels >= 1) & (labels <= num_classes)  # labels are 1-based, 1..1000
    return data[keep].reshape(-1, 3, 16, 16), labels[keep] - 1


def load_imagenet16(data_dir: str | None, num_classes: int = 120) -> ImageDataset:
    """ImageNet16-`num_classes`: train = the ten training batches, test = val_data (50 images a class).

    mean/std are NB201's constants for ImageNet16 (not recomputed), so that inputs match NB201 training.
    """
    if not 1 <= num_classes <= 1000:
        raise GdasError(f"ImageNet16 has 1000 classes; choose num_classes between 1 and 1000, got {num_classes}")
    paths = _locate(_folder(data_dir))
    parts = [read_batch(p, num_classes) for p in paths[:-1]]  # filtered per file: the full set is ~1 GB
    train = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    name = f"imagenet16-{num_classes}"
    dataset = make_dataset(name, train, read_batch(paths[-1], num_classes), num_classes, os.path.dirname(paths[0]),
                    IMAGENET16_URL)
    return dataclasses.replace(dataset, mean=NB201_MEAN, std=NB201_STD)
