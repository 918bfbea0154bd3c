"""In-memory images as an `ImageDataset`: NumPy arrays or torch tensors, a torch `Dataset` of (image, label);
writing one back as an npz file."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gdas.data.dataset import ImageDataset, channel_stats, to_channels
from gdas.data.decode import eight_bit
from gdas.engine.rundir import atomic_write_bytes
from gdas.errors import GdasError

_CHUNK = 4096  # images converted / resized at a time: bounds the float copies of large arrays
_WIDE_UNSIGNED = (torch.uint16, torch.uint32, torch.uint64)  # few torch ops take them: read as int64
_SHAPES = "(N, H, W), (N, C, H, W) or (N, H, W, C) with C = 1 or 3"


def _tensor(x: Any, what: str, source: str) -> torch.Tensor:
    """`x` (a tensor, NumPy array or nested sequence) as a CPU tensor, without copying where possible."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.to(torch.int64) if x.dtype in _WIDE_UNSIGNED else x
    try:
        array = np.asarray(x)
    except (TypeError, ValueError):  # ragged nested sequences
        array = None
    if array is None or array.dtype.kind not in "biuf":
        found = "ragged or non-numeric" if array is None else str(array.dtype)
        raise GdasError(f"{source}: {what} holds {found} values; want numbers (uint8 images 0..255 or floats "
                        "in [0, 1], integer labels)")
    array = np.ascontiguousarray(array.astype(np.int64) if array.dtype.kind == "u" and array.itemsize > 1 else array)
    return torch.from_numpy(array if array.flags.writeable else array.copy())  # torch wants writable memory


def _uint8(x: torch.Tensor, what: str, source: str) -> torch.Tensor:
    """uint8 pixels: uint8 as is, other integers in 0..255, floats in [0, 1] scaled by 255 and rounded."""
    if x.dtype == torch.uint8:
        return x
    if x.dtype == torch.bool or x.dtype.is_complex:
        raise GdasError(f"{source}: {what} has dtype {x.dtype}; want uint8 (0..255) or floats in [0, 1]")
    if x.numel() == 0:
        return x.to(torch.uint8)
    if x.dtype.is_floating_point:
        if not torch.isfinite(x).all():
            raise GdasError(f"{source}: {what} holds NaN or infinite values; want floats in [0, 1]")
        lo, hi = x.min().item(), x.max().item()
        if lo < 0 or hi > 1:
            fix = "divide by 255" if lo >= 0 else "rescale them to [0, 1] (undo any normalisation)"
            raise GdasError(f"{source}: {what} holds floats in [{lo:g}, {hi:g}], not [0, 1]; {fix} "
                            "(or pass uint8 images)")
        exact = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32  # half floats: upcast
        out = torch.empty(x.shape, dtype=torch.uint8)
        for part, into in zip(x.split(_CHUNK), out.split(_CHUNK)):
            into.copy_((part.to(exact) * 255).round_())
        return out
    lo, hi = x.min().item(), x.max().item()
    if lo < 0 or hi > 255:
        # The dtype does not say the range (12-bit data is often stored as uint16): the user divides by it.
        wide = f", e.g. {what} / 65535 for 16-bit images" if lo >= 0 and hi <= 65535 else ""
        raise GdasError(f"{source}: {what} holds integers in {lo}..{hi}; want pixel values 0..255 "
                        f"(uint8) or floats in [0, 1]{wide}")
    return x.to(torch.uint8)


def _nchw(x: torch.Tensor, what: str, source: str) -> torch.Tensor:
    """(N, C, H, W) from a batch in one of the layouts of _SHAPES."""
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() == 4:
        # Channels-last only when the last axis is 1 or 3 and axis 1 is not: an ambiguous (N, 3, 32, 3)
        # is read as 3-channel 32x3 images, since NCHW is what torch users hand over.
        if x.shape[3] in (1, 3) and x.shape[1] not in (1, 3):
            return x.permute(0, 3, 1, 2)
        if x.shape[1] in (1, 3):
            return x
    raise GdasError(f"{source}: {what} has shape {tuple(x.shape)}; want {_SHAPES}")


def _images(x: Any, what: str, source: str) -> torch.Tensor:
    return _nchw(_uint8(_tensor(x, what, source), what, source), what, source).contiguous()


def _labels(y: Any, count: int, what: str, images: str, source: str) -> torch.Tensor:
    """int64 (N,) labels; (N, 1) columns are flattened, floats must be whole numbers."""
    y = _tensor(y, what, source)
    if y.dim() == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.dim() != 1:
        raise GdasError(f"{source}: {what} has shape {tuple(y.shape)}; want one integer label per image, (N,)")
    if y.dtype == torch.bool or (y.dtype.is_floating_point and not torch.equal(y, y.round())):
        raise GdasError(f"{source}: {what} holds non-integer values ({y.dtype}); want integer class labels 0..K-1")
    if len(y) != count:
        raise GdasError(f"{source}: {images} has {count} images but {what} has {len(y)} labels; "
                        "give one label per image")
    return y.to(torch.int64)


def resize_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) images with the shorter side resized to `size` (antialiased bilinear), centre-cropped."""
    h, w = x.shape[2:]
    if (h, w) == (size, size) or len(x) == 0:
        return x if len(x) else x.new_zeros(0, x.shape[1], size, size)
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (nh - size) // 2, (nw - size) // 2
    parts = []
    for part in x.split(_CHUNK):
        out = F.interpolate(part.float(), size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        parts.append(out[:, :, top:top + size, left:left + size].round().clamp(0, 255).to(torch.uint8))
    return torch.cat(parts)


def _shape(x: torch.Tensor, image_size: Optional[int], what: str, source: str,
           like: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Square images: resized to `image_size` when given; else checked square and (test) as large as `like`."""
    if image_size is not None:
        return resize_square(x, image_size)
    h, w = x.shape[2:]
    if h != w:
        raise GdasError(f"{source}: {what} holds {h}x{w} images, not square; pass --image-size N "
                        "(image_size=N in Python) to resize and centre-crop them")
    if like is not None and x.shape[2:] != like.shape[2:]:
        raise GdasError(f"{source}: {what} holds {h}x{w} images but the training images are "
                        f"{like.shape[2]}x{like.shape[3]}; pass --image-size N (image_size=N in Python) to resize both")
    return x


def _num_classes(train_y: torch.Tensor, test_y: torch.Tensor, classes: Optional[Sequence[str]],
                 source: str) -> int:
    """K: len(classes) when named, else max(y_train) + 1; every label in 0..K-1, every class trained on."""
    if len(train_y) == 0:
        raise GdasError(f"{source}: there are no training images; x_train needs at least one image per class")
    k = len(classes) if classes is not None else max(int(train_y.max()) + 1, 0)
    origin = f"{k} class names" if classes is not None else f"max(y_train) + 1 = {k} classes"
    for what, y in (("y_train", train_y), ("y_test", test_y)):
        bad = y[(y < 0) | (y >= k)]
        if len(bad):
            raise GdasError(f"{source}: {what} has label {int(bad[0])}, outside 0..K-1 ({origin}); "
                            "labels must be the class numbers 0..K-1")
    if k < 2:
        raise GdasError(f"{source}: the training images hold a single class; a classifier needs at least 2, add images "
                            "of another class")
    missing = (torch.bincount(train_y, minlength=k) == 0).nonzero().flatten().tolist()
    if missing:
        name = f" ({classes[missing[0]]!r})" if classes is not None else ""
        raise GdasError(f"{source}: class {missing[0]}{name} has no training image ({len(missing)} of {k} classes "
                        "have none); number the classes 0..K-1 without gaps or add their images")
    return k


def dataset_from_arrays(x_train: Any, y_train: Any, x_test: Any = None, y_test: Any = None, *,
                        classes: Optional[Sequence[str]] = None, image_size: Optional[int] = None,
                        channels: Optional[int] = None, name: str = "arrays",
                        source: str = "the arrays") -> ImageDataset:
    """An ImageDataset from NumPy arrays or tensors in any layout of _SHAPES, uint8 or floats in [0, 1].

    K is len(classes) when given, else max(y_train) + 1. `image_size` resizes (shorter side, then centre
    crop); `channels` forces 1 or 3. Without x_test the test split is empty. `source` names the data in errors.
    """
    if (x_test is None) != (y_test is None):
        given, absent = ("x_test", "y_test") if y_test is None else ("y_test", "x_test")
        raise GdasError(f"{source}: {given} is given without {absent}; give both or neither")
    if image_size is not None and image_size < 1:
        raise GdasError(f"image_size must be at least 1, got {image_size}")
    if channels not in (None, 1, 3):
        raise GdasError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    train_x = _images(x_train, "x_train", source)
    train_y = _labels(y_train, len(train_x), "y_train", "x_train", source)
    if x_test is not None:
        test_x = _images(x_test, "x_test", source)
        test_y = _labels(y_test, len(test_x), "y_test", "x_test", source)
    else:
        test_x, test_y = train_x.new_zeros(0, *train_x.shape[1:]), train_y.new_zeros(0)
    classes = None if classes is None else tuple(str(c) for c in classes)
    num_classes = _num_classes(train_y, test_y, classes, source)
    train_x = to_channels(train_x, channels or train_x.shape[1])
    test_x = to_channels(test_x, train_x.shape[1])  # a grayscale test split of colour training images follows them
    train_x = _shape(train_x, image_size, "x_train", source)
    test_x = _shape(test_x, image_size, "x_test", source, like=train_x) if len(test_x) else \
        test_x.new_zeros(0, *train_x.shape[1:])
    mean, std = channel_stats(train_x)
    return ImageDataset(name, train_x, train_y, test_x, test_y, num_classes, mean, std, classes=classes)


# ---------------------------------------------------------------- torch Datasets of (image, label)

_PAIR = ("a Dataset for gdas yields (image, label) pairs: the image a tensor (C, H, W) or (H, W), a NumPy array "
         "(H, W) or (H, W, C), or a PIL image; the label an integer")


def _item_image(image: Any, what: str, source: str) -> Optional[torch.Tensor]:
    """uint8 (1, C, H, W) of one Dataset image, None when it is of no accepted type."""
    pil = sys.modules.get("PIL.Image")  # loaded whenever the Dataset made PIL images
    if pil is not None and isinstance(image, pil.Image):
        image = np.asarray(eight_bit(image))  # 16-bit grey scaled as a folder's files are
    if isinstance(image, torch.Tensor) and image.dim() in (2, 3):
        x = image.detach().cpu().reshape(1, -1, *image.shape[-2:])  # tensors are (C, H, W) as torchvision's
    elif isinstance(image, np.ndarray) and image.ndim in (2, 3):
        x = _tensor(image, what, source)
        x = x[None, None] if x.dim() == 2 else x.permute(2, 0, 1)[None]  # arrays are (H, W[, C]) as PIL's
    else:
        return None
    if x.shape[1] not in (1, 3):
        raise GdasError(f"{source}: {what} has {x.shape[1]} channels; {_PAIR} with 1 or 3 channels")
    return _uint8(x, what, source)


def _item_label(label: Any) -> Optional[int]:
    if isinstance(label, (int, np.integer)) and not isinstance(label, (bool, np.bool_)):
        return int(label)
    if isinstance(label, torch.Tensor) and label.dim() == 0 and not label.dtype.is_floating_point \
            and label.dtype not in (torch.bool,) and not label.dtype.is_complex:
        return int(label.item())
    return None


def _read_dataset(dataset: Any, image_size: Optional[int], channels: Optional[int],
                  source: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (image, label) of a map-style Dataset as uint8 (N, C, H, W) images and int64 labels."""
    try:
        count = len(dataset)
    except TypeError:
        raise GdasError(f"{source} has no length; gdas reads map-style Datasets (__len__ and [index]), "
                        "wrap an iterable one in a list or save its images with gdas.data.arrays.save_npz") from None
    images, labels = [], []
    for i in range(count):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            found = f"a {len(item)}-item {type(item).__name__}" if isinstance(item, (tuple, list)) \
                else f"a {type(item).__name__}"
            raise GdasError(f"{source}: item {i} is {found}; {_PAIR}")
        image = _item_image(item[0], f"item {i}'s image", source)
        label = _item_label(item[1])
        if image is None or label is None:
            found = f"an image of type {type(item[0]).__name__}" if image is None else \
                f"the label {item[1]!r} ({type(item[1]).__name__})"
            raise GdasError(f"{source}: item {i} holds {found}; {_PAIR}")
        images.append(image)
        labels.append(label)
    if not images:
        return torch.zeros(0, channels or 1, image_size or 1, image_size or 1, dtype=torch.uint8), \
            torch.zeros(0, dtype=torch.int64)
    target = channels or max(x.shape[1] for x in images)  # any colour image makes the split colour
    images = [to_channels(x, target) for x in images]
    if image_size is not None:
        images = [resize_square(x, image_size) for x in images]
    sizes = {tuple(x.shape[2:]): i for i, x in reversed(list(enumerate(images)))}  # each size's first item
    if len(sizes) > 1:
        (a, i), (b, j) = sorted(sizes.items(), key=lambda size_item: size_item[1])[:2]
        raise GdasError(f"{source} holds images of different sizes ({a[0]}x{a[1]} at item {i}, {b[0]}x{b[1]} at "
                        f"item {j}); pass --image-size N (image_size=N in Python) to resize them")
    return torch.cat(images), torch.tensor(labels, dtype=torch.int64)


def dataset_from_torch(train: Any, test: Any = None, *, image_size: Optional[int] = None,
                       channels: Optional[int] = None, classes: Optional[Sequence[str]] = None) -> ImageDataset:
    """An ImageDataset from map-style torch Datasets of (image, label), read once into memory.

    Class names come from `classes`, else from `train.classes` (torchvision style) when it has them.
    """
    if classes is None:
        classes = getattr(train, "classes", None)
    train_x, train_y = _read_dataset(train, image_size, channels, "the training Dataset")
    test_xy = _read_dataset(test, image_size, channels, "the test Dataset") if test is not None else (None, None)
    return dataset_from_arrays(train_x, train_y, *test_xy, classes=classes, image_size=image_size,
                               channels=channels, name="dataset", source="the Dataset")


# ---------------------------------------------------------------- npz files

def save_npz(data: ImageDataset, path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Write `data` as an uncompressed npz (x_train uint8 NCHW, y_train, x_test, y_test, classes when named)
    that `gdas.data.npz.load_npz` reads back unchanged; atomic, and an existing file only with `overwrite`."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise GdasError(f"{path} exists; choose another path or pass overwrite=True to replace it")
    arrays = {"x_train": data.train_x, "y_train": data.train_y, "x_test": data.test_x, "y_test": data.test_y}
    arrays = {key: value.cpu().numpy() for key, value in arrays.items()}
    if data.classes is not None:
        arrays["classes"] = np.array(data.classes, dtype=str)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
