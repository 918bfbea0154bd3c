"""The in-memory image dataset (`ImageDataset`: uint8 tensors, labels, statistics) and what every reader of images
shares: channel conversion, per-channel statistics, the seeded split, a dataset from decoded arrays."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from gdas.errors import GdasError


@dataclass
class ImageDataset:
    """Train and test images (uint8, N x C x H x W) with int64 labels and the training-set statistics."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]  # per channel, [0, 1] scale, from the training images
    std: tuple[float, ...]
    classes: Optional[tuple[str, ...]] = None  # class names by label (folders: the sorted sub-folder names)
    # (training, test) images of the data before `subset` drew from it; None: these are all of them
    available: Optional[tuple[int, int]] = None

    def __post_init__(self) -> None:
        for x, y in ((self.train_x, self.train_y), (self.test_x, self.test_y)):
            if x.dtype != torch.uint8 or x.dim() != 4 or y.dtype != torch.int64 or y.shape != x.shape[:1]:
                raise ValueError(f"ImageDataset wants uint8 (N,C,H,W) images and int64 (N,) labels, got "
                                 f"{x.dtype} {tuple(x.shape)} and {y.dtype} {tuple(y.shape)}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean/std need {self.channels} entries, got {self.mean} / {self.std}")

    @property
    def channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_x.shape[2]

    def to(self, device: torch.device | str) -> "ImageDataset":
        """A copy with the four tensors on `device` (copied from pinned memory when going to CUDA)."""
        device = torch.device(device)

        def move(t: torch.Tensor) -> torch.Tensor:
            if device.type != "cuda":  # an asynchronous copy to the host could be read before it lands
                return t.to(device)
            return (t.pin_memory() if t.device.type == "cpu" else t).to(device, non_blocking=True)

        return dataclasses.replace(self, train_x=move(self.train_x), train_y=move(self.train_y),
                                   test_x=move(self.test_x), test_y=move(self.test_y))

    def subset(self, train: int | None, test: int | None, generator: torch.Generator) -> "ImageDataset":
        """A seeded random subset (original order kept); None keeps a split whole. mean/std are kept."""

        def pick(x: torch.Tensor, y: torch.Tensor, k: int | None, split: str):
            if k is None:
                return x, y
            if not 1 <= k <= len(x):
                raise GdasError(f"cannot take {k} {split} images from {self.name}, which has {len(x)}; "
                                f"choose a subset size between 1 and {len(x)}")
            idx = torch.randperm(len(x), generator=generator)[:k].sort().values.to(x.device)
            return x.index_select(0, idx), y.index_select(0, idx)

        train_x, train_y = pick(self.train_x, self.train_y, train, "training")
        test_x, test_y = pick(self.test_x, self.test_y, test, "test")
        return dataclasses.replace(self, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                                   available=self.available or (len(self.train_y), len(self.test_y)))


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) images with `channels` channels: RGB to grayscale by ITU-R 601 luma, grayscale repeated."""
    if x.shape[1] == channels:
        return x
    if channels == 3 and x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and x.shape[1] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(1, 3, 1, 1)
        parts = [(part.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
                 for part in x.split(4096)]
        return torch.cat(parts) if parts else x[:, :1]
    raise GdasError(f"cannot turn {x.shape[1]}-channel images into {channels}-channel ones; use --channels 1 or 3")


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images on the [0, 1] scale, in float64."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for part in x.split(chunk):
        part = part.to(device="cpu", dtype=torch.float64)
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())


def seeded_split(n: int, portion: float, seed: int, option: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Split range(n) by a seeded permutation: round(n x portion) sorted indices, then the rest, sorted.

    `option` names the portion's command-line option in the error when either part would be empty.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(round(n * portion))
    if cut < 1 or cut >= n:
        raise GdasError(f"cannot split {n} training images with {option} {portion} (each part needs an image); "
                        "use more images or a portion nearer 0.5")
    return order[:cut].sort().values, order[cut:].sort().values


def make_dataset(name: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                 num_classes: int, source: str, url: str = "") -> ImageDataset:
    """Tensors from decoded arrays, after checking the labels are in range."""
    if len(train[0]) == 0:
        raise GdasError(f"{source} holds no training images; the files are corrupt or not {name}, "
                        f"download them again from {url}")
    for _, labels in (train, test):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise GdasError(f"{source} has labels outside 0..{num_classes - 1}; the files are corrupt or "
                            f"not {name}, download them again from {url}")
    train_x = torch.from_numpy(np.ascontiguousarray(train[0]))
    mean, std = channel_stats(train_x)
    return ImageDataset(name, train_x, torch.from_numpy(train[1].astype(np.int64)),
                        torch.from_numpy(np.ascontiguousarray(test[0])),
                        torch.from_numpy(test[1].astype(np.int64)), num_classes, mean, std)


def require_files(folder: str, names: list[str], how: str) -> list[str]:
    """The paths of `names` in `folder`; one line naming the missing ones and `how` to get them."""
    paths = [os.path.join(folder, n) for n in names]
    missing = [n for n, p in zip(names, paths) if not os.path.isfile(p)]
    if missing:
        raise GdasError(f"{folder} is missing {', '.join(missing)}; {how}")
    return paths

