"""The registry of image data sources: `load_image_dataset` by name, above the readers of a user's own data (class
folders, npz arrays) and ImageNet16-120; the built-in small readers: CIFAR-10/100 pickle batches, Fashion-MNIST IDX
files, synthetic images."""

from __future__ import annotations

import gzip
import os
import zlib
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from gdas.data.dataset import ImageDataset, make_dataset, require_files
from gdas.data.dataset import channel_stats, seeded_split, to_channels  # noqa: F401 (imported from here too)
from gdas.data.folder import load_folder
from gdas.data.imagenet16 import load_imagenet16
from gdas.data.npz import load_npz
from gdas.data.pickles import checked_batch, load_array_pickle
from gdas.engine import distributed as dist
from gdas.errors import GdasError

IMAGE_DATASETS = ("cifar10", "cifar100", "imagenet16-120", "fashion-mnist", "synthetic", "folder", "npz")
FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
FASHION_MNIST_URL = "https://github.com/zalandoresearch/fashion-mnist"


# ---------------------------------------------------------------- CIFAR (python pickle batches)

def _read_cifar_batch(path: str, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = load_array_pickle(path, "a CIFAR batch", f"download it again from {CIFAR_URL}")
    found = batch if isinstance(batch, dict) else {}
    data, labels = checked_batch(path, found.get(b"data"), found.get(label_key), 3072,
                                 f"a CIFAR python batch ({label_key!r} labels)", f"download it again from {CIFAR_URL}")
    return data.reshape(-1, 3, 32, 32), labels


def _find_folder(data_dir: str | None, folder: str, name: str) -> str:
    """`data_dir/folder`, or `data_dir` itself when it is that folder."""
    how = f"download the python version from {CIFAR_URL} and extract it there"
    if data_dir is None:
        raise GdasError(f"{name} needs --data-dir DIR containing {folder}/ ({how})")
    data_dir = os.path.expanduser(data_dir)
    if not os.path.isdir(data_dir):
        raise GdasError(f"--data-dir {data_dir} does not exist; it must contain {folder}/ ({how})")
    if os.path.isdir(os.path.join(data_dir, folder)):
        return os.path.join(data_dir, folder)
    if os.path.basename(os.path.normpath(data_dir)) == folder:
        return data_dir
    raise GdasError(f"--data-dir {data_dir} must contain {folder}/ ({how})")


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _load_cifar10(data_dir: str | None) -> ImageDataset:
    folder = _find_folder(data_dir, "cifar-10-batches-py", "cifar10")
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    paths = require_files(folder, names, f"download the complete archive again from {CIFAR_URL}")
    train = _concat([_read_cifar_batch(p, b"labels") for p in paths[:5]])
    return make_dataset("cifar10", train, _read_cifar_batch(paths[5], b"labels"), 10, folder, CIFAR_URL)


def _load_cifar100(data_dir: str | None) -> ImageDataset:
    folder = _find_folder(data_dir, "cifar-100-python", "cifar100")
    paths = require_files(folder, ["train", "test"], f"download the complete archive again from {CIFAR_URL}")
    train, test = (_read_cifar_batch(p, b"fine_labels") for p in paths)
    return make_dataset("cifar100", train, test, 100, folder, CIFAR_URL)


# ---------------------------------------------------------------- Fashion-MNIST (IDX files)

_IDX_UBYTE = 0x08
_FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                  "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_idx(path: str, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX file (raw or gzip) with `ndim` dimensions, checked against its header."""
    fix = f"download it again from {FASHION_MNIST_URL}"
    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
            raw = f.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise GdasError(f"{path} is a truncated or corrupt gzip file ({e}); {fix}") from None
    except OSError as e:
        raise GdasError(f"cannot read {path}: {e.strerror or e}; check the file and its permissions") from None
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        want = f"0x{_IDX_UBYTE << 8 | ndim:08x}"
        got = f"0x{int.from_bytes(raw[:4], 'big'):08x}" if len(raw) >= 4 else "a short file"
        raise GdasError(f"{path} is not an unsigned-byte IDX file with {ndim} dimension(s) (magic {want}, "
                        f"found {got}); {fix}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(raw) != header + size:
        raise GdasError(f"{path} holds {len(raw) - header} data bytes but its header {shape} says {size}; "
                        f"the file is truncated or corrupt, {fix}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _fashion_folder(data_dir: str | None) -> str:
    if data_dir is None:
        data_dir = FASHION_MNIST_DEFAULT_DIR
        how = "install it (Debian: apt-get install dataset-fashion-mnist) or pass --data-dir DIR"
    else:
        data_dir = os.path.expanduser(data_dir)
        how = f"put the four IDX files ({', '.join(_FASHION_FILES)}, raw or .gz) from {FASHION_MNIST_URL} there"
    if not os.path.isdir(data_dir):
        raise GdasError(f"Fashion-MNIST folder {data_dir} does not exist; {how}")
    if not _has_idx(data_dir, _FASHION_FILES[0]):
        for sub in ("fashion-mnist", os.path.join("FashionMNIST", "raw")):  # common layouts one level down
            if os.path.isdir(os.path.join(data_dir, sub)):
                return os.path.join(data_dir, sub)
    return data_dir


def _has_idx(folder: str, name: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, name + ext)) for ext in ("", ".gz"))


def _load_fashion_mnist(data_dir: str | None) -> ImageDataset:
    folder = _fashion_folder(data_dir)
    missing = [n for n in _FASHION_FILES if not _has_idx(folder, n)]
    if missing:
        raise GdasError(f"{folder} is missing {', '.join(n + '[.gz]' for n in missing)}; download them from "
                        f"{FASHION_MNIST_URL} (raw or .gz) or use a complete folder with --data-dir DIR")
    paths = [os.path.join(folder, n) for n in _FASHION_FILES]
    paths = [p if os.path.isfile(p) else p + ".gz" for p in paths]
    splits = []
    for images_path, labels_path in (paths[:2], paths[2:]):
        images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
        if len(images) != len(labels):
            raise GdasError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels; "
                            f"download both again from {FASHION_MNIST_URL}")
        splits.append((images[:, None], labels))
    return make_dataset("fashion-mnist", splits[0], splits[1], 10, folder, FASHION_MNIST_URL)


# ---------------------------------------------------------------- synthetic

def _synthetic(train: int, test: int, size: int, classes: int, seed: int) -> ImageDataset:
    """Noisy images around a per-class colour and low-frequency pattern: learnable in a few steps."""
    if train < 1 or test < 1 or size < 1 or classes < 2:
        raise GdasError(f"synthetic data needs at least 1 training and 1 test image, size >= 1 and >= 2 classes "
                        f"(got train={train}, test={test}, size={size}, classes={classes})")
    g = torch.Generator().manual_seed(seed)
    colours = torch.rand(classes, 3, 1, 1, generator=g) * 0.5 + 0.25
    patterns = F.interpolate(torch.rand(classes, 3, 4, 4, generator=g) * 2 - 1, size=(size, size),
                             mode="bilinear", align_corners=False)
    templates = colours + 0.15 * patterns

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = torch.arange(n) % classes
        labels = labels[torch.randperm(n, generator=g)]
        pixels = templates[labels] + 0.2 * torch.randn(n, 3, size, size, generator=g)
        return (pixels.clamp(0, 1) * 255).round().to(torch.uint8).numpy(), labels.numpy()

    train_split = draw(train)
    return make_dataset("synthetic", train_split, draw(test), classes, "synthetic data")


def load_image_dataset(name: str, data_dir: str | None = None, *, synthetic_train: int = 256,
                       synthetic_test: int = 64, synthetic_size: int = 32, synthetic_classes: int = 10,
                       seed: int = 0, image_size: Optional[int] = None, channels: Optional[int] = None,
                       skip_bad_images: bool = False, stream: Optional[bool] = None) -> ImageDataset:
    """Load a dataset by name into CPU tensors; `seed` only affects `synthetic`; `image_size`, `channels` and
    `skip_bad_images` only a user's own data (folder, npz), `stream` only folders (their images then stay on disk)."""
    if name == "folder":
        def load() -> ImageDataset:
            return load_folder(data_dir, image_size=image_size, channels=channels, skip_bad_images=skip_bad_images,
                               stream=stream)
        # Under torchrun rank 0 decodes and fills the cache first; the other ranks then read the cache.
        return dist.main_first(load, dist.context(), load)
    if name == "npz":
        return load_npz(data_dir, image_size=image_size, channels=channels)
    if name == "cifar10":
        return _load_cifar10(data_dir)
    if name == "cifar100":
        return _load_cifar100(data_dir)
    if name == "imagenet16-120":
        return load_imagenet16(data_dir, 120)
    if name == "fashion-mnist":
        return _load_fashion_mnist(data_dir)
    if name == "synthetic":
        return _synthetic(synthetic_train, synthetic_test, synthetic_size, synthetic_classes, seed)
    raise GdasError(f"unknown dataset {name!r}; choose one of: {', '.join(IMAGE_DATASETS)}")
