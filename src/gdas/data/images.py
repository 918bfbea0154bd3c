"""Image datasets as uint8 tensors: CIFAR-10/100 pickle batches, Fashion-MNIST IDX files, synthetic; the
dispatch to a user's own data (class folders, npz arrays)."""

from __future__ import annotations

import codecs
import dataclasses
import gzip
import os
import pickle
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from gdas.errors import GdasError

IMAGE_DATASETS = ("cifar10", "cifar100", "imagenet16-120", "fashion-mnist", "synthetic", "folder", "npz")
FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
FASHION_MNIST_URL = "https://github.com/zalandoresearch/fashion-mnist"


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


def _make(name: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
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


# ---------------------------------------------------------------- CIFAR (python pickle batches)

def _numpy_global(module: str, name: str) -> Any:
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    return getattr(multiarray if module.endswith("multiarray") else numeric, name)


# The only globals a CIFAR batch needs: numpy array and dtype reconstruction (numpy 1.x and 2.x names).
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_global("multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_global("multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): lambda: _numpy_global("numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): lambda: _numpy_global("numeric", "_frombuffer"),
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: codecs.encode,  # bytes in protocol-2 pickles written by Python 3
}


class _ForbiddenGlobal(pickle.UnpicklingError):
    pass


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy array reconstruction: no code can run."""

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            raise _ForbiddenGlobal(f"{module}.{name}")
        return factory()


def load_array_pickle(path: str, what: str = "a CIFAR batch", fix: str = f"download it again from {CIFAR_URL}"
                      ) -> Any:
    """A pickle of plain arrays (a dataset batch), refusing any other global; `what`/`fix` word the errors."""
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="bytes").load()
    except _ForbiddenGlobal as e:
        raise GdasError(f"{path} refers to {e}, which {what} never contains; refusing to load it "
                        f"(replace it with the original file: {fix})") from None
    except OSError as e:
        raise GdasError(f"cannot read {path}: {e.strerror or e}; check the file and its permissions") from None
    except Exception as e:  # truncated or garbled pickles raise many types
        raise GdasError(f"{path} is truncated or corrupt ({type(e).__name__}); {fix}") from None


def checked_batch(path: str, data: Any, labels: Any, row: int, what: str, fix: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 rows of `row` values, int64 labels) of a pickled dataset batch, or one line naming what is wrong."""
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row \
            or labels is None:
        raise GdasError(f"{path} is not {what} (want a dict with 'data' uint8 (N, {row}) and labels); {fix}")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise GdasError(f"{path} has non-integer labels; {fix}") from None
    if len(labels) != len(data):
        raise GdasError(f"{path} has {len(data)} images but {len(labels)} labels; {fix}")
    return data, labels


def _read_cifar_batch(path: str, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = load_array_pickle(path)
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


def _require_files(folder: str, names: list[str], how: str) -> list[str]:
    paths = [os.path.join(folder, n) for n in names]
    missing = [n for n, p in zip(names, paths) if not os.path.isfile(p)]
    if missing:
        raise GdasError(f"{folder} is missing {', '.join(missing)}; {how}")
    return paths


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _load_cifar10(data_dir: str | None) -> ImageDataset:
    folder = _find_folder(data_dir, "cifar-10-batches-py", "cifar10")
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    paths = _require_files(folder, names, f"download the complete archive again from {CIFAR_URL}")
    train = _concat([_read_cifar_batch(p, b"labels") for p in paths[:5]])
    return _make("cifar10", train, _read_cifar_batch(paths[5], b"labels"), 10, folder, CIFAR_URL)


def _load_cifar100(data_dir: str | None) -> ImageDataset:
    folder = _find_folder(data_dir, "cifar-100-python", "cifar100")
    paths = _require_files(folder, ["train", "test"], f"download the complete archive again from {CIFAR_URL}")
    train, test = (_read_cifar_batch(p, b"fine_labels") for p in paths)
    return _make("cifar100", train, test, 100, folder, CIFAR_URL)


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
    return _make("fashion-mnist", splits[0], splits[1], 10, folder, FASHION_MNIST_URL)


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
    return _make("synthetic", train_split, draw(test), classes, "synthetic data")


def load_image_dataset(name: str, data_dir: str | None = None, *, synthetic_train: int = 256,
                       synthetic_test: int = 64, synthetic_size: int = 32, synthetic_classes: int = 10,
                       seed: int = 0, image_size: Optional[int] = None, channels: Optional[int] = None,
                       skip_bad_images: bool = False, stream: Optional[bool] = None) -> ImageDataset:
    """Load a dataset by name into CPU tensors; `seed` only affects `synthetic`; `image_size`, `channels` and
    `skip_bad_images` only a user's own data (folder, npz), `stream` only folders (their images then stay on disk)."""
    if name == "folder":
        from gdas.data.folder import load_folder
        from gdas.engine import distributed as dist

        def load() -> ImageDataset:
            return load_folder(data_dir, image_size=image_size, channels=channels, skip_bad_images=skip_bad_images,
                               stream=stream)
        # Under torchrun rank 0 decodes and fills the cache first; the other ranks then read the cache.
        return dist.main_first(load, dist.context(), load)
    if name == "npz":
        from gdas.data.npz import load_npz
        return load_npz(data_dir, image_size=image_size, channels=channels)
    if name == "cifar10":
        return _load_cifar10(data_dir)
    if name == "cifar100":
        return _load_cifar100(data_dir)
    if name == "imagenet16-120":
        from gdas.data.imagenet16 import load_imagenet16  # it imports this module's helpers
        return load_imagenet16(data_dir, 120)
    if name == "fashion-mnist":
        return _load_fashion_mnist(data_dir)
    if name == "synthetic":
        return _synthetic(synthetic_train, synthetic_test, synthetic_size, synthetic_classes, seed)
    raise GdasError(f"unknown dataset {name!r}; choose one of: {', '.join(IMAGE_DATASETS)}")
