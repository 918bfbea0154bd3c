"""`--dataset npz` (gdas.data.npz): real .npz files in each layout and dtype; every bad file as one line naming it."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gdas.data.images import FASHION_MNIST_DEFAULT_DIR, load_image_dataset, read_idx
from gdas.data.npz import load_npz
from gdas.errors import GdasError


def _pixels(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _write(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _error(contains: str, path: Path | str | None, **kwargs) -> str:
    with pytest.raises(GdasError) as exc:
        load_npz(path, **kwargs)
    message = str(exc.value)
    assert contains in message and "\n" not in message, message
    return message


def test_nhwc_uint8_with_test_arrays_and_class_names(tmp_path: Path) -> None:
    x, xt = _pixels(20, 8, 8, 3), _pixels(10, 8, 8, 3, seed=1)
    path = _write(tmp_path / "rgb.npz", x_train=x, y_train=np.arange(20) % 4, x_test=xt, y_test=np.arange(10) % 4,
                  classes=np.array(["ant", "bee", "cat", "dog"]))
    data = load_image_dataset("npz", str(path))
    assert data.name == "npz" and data.classes == ("ant", "bee", "cat", "dog") and data.num_classes == 4
    assert torch.equal(data.train_x, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert torch.equal(data.test_x, torch.from_numpy(xt).permute(0, 3, 1, 2))
    assert data.train_y.tolist() == (np.arange(20) % 4).tolist()


def test_nchw_float_without_test_arrays_and_bytes_class_names(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((12, 3, 6, 6), dtype=np.float32)
    path = _write(tmp_path / "float.npz", x_train=x, y_train=np.arange(12) % 3, classes=np.array([b"a", b"b", b"c"]))
    data = load_npz(path, image_size=4, channels=1)
    assert data.train_x.shape == (12, 1, 4, 4) and data.test_x.shape == (0, 1, 4, 4) and data.test_y.numel() == 0
    assert data.classes == ("a", "b", "c") and len(data.mean) == 1
    same = load_npz(path)
    assert torch.equal(same.train_x, torch.from_numpy(np.round(x * 255).astype(np.uint8)))


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DEFAULT_DIR), reason="needs Fashion-MNIST")
def test_fashion_mnist_grayscale_nhw(tmp_path: Path) -> None:
    images = read_idx(os.path.join(FASHION_MNIST_DEFAULT_DIR, "t10k-images-idx3-ubyte.gz"), 3)[:300]
    labels = read_idx(os.path.join(FASHION_MNIST_DEFAULT_DIR, "t10k-labels-idx1-ubyte.gz"), 1)[:300]
    path = _write(tmp_path / "fmnist.npz", x_train=images[:200], y_train=labels[:200], x_test=images[200:],
                  y_test=labels[200:])
    data = load_npz(path)
    assert data.train_x.shape == (200, 1, 28, 28) and data.test_x.shape == (100, 1, 28, 28)
    assert data.num_classes == 10 and data.classes is None
    assert data.mean[0] == pytest.approx(images[:200].mean() / 255)
    assert load_npz(path, image_size=32, channels=3).train_x.shape == (200, 3, 32, 32)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    _error("--dataset npz needs --data-dir FILE.npz", None)
    _error(f"{tmp_path / 'none.npz'} does not exist; pass --data-dir FILE.npz", tmp_path / "none.npz")
    _error("is a folder; --dataset npz reads one FILE.npz", tmp_path)
    text = tmp_path / "notes.npz"
    text.write_text("not numpy\n" * 10)
    _error(f"{text} is not a readable .npz file", text)
    single = tmp_path / "single.npy"
    np.save(single, _pixels(4, 4, 4))
    _error("holds a single array (.npy)", single)
    good = _write(tmp_path / "good.npz", x_train=_pixels(30, 8, 8), y_train=np.arange(30) % 2)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:-200])  # the zip directory lost
    _error(f"{cut} is not a readable .npz file", cut)
    flipped = bytearray(good.read_bytes())
    flipped[300] ^= 0xFF  # inside x_train's pixels: the member's CRC no longer matches
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(flipped))
    _error(f"{bad}: x_train is truncated or corrupt (BadZipFile)", bad)
    foreign = tmp_path / "foreign.npz"
    with zipfile.ZipFile(foreign, "w") as archive:  # a zip whose members are not .npy files
        archive.writestr("x_train.npy", b"pixels")
        archive.writestr("y_train.npy", b"labels")
    _error(f"{foreign}: x_train.npy is not a NumPy array file", foreign)


def test_missing_or_unpaired_arrays(tmp_path: Path) -> None:
    x, y = _pixels(6, 4, 4), np.arange(6) % 2
    _error("has no x_train (arrays found: images, y_train); want x_train, y_train and optionally x_test",
           _write(tmp_path / "a.npz", images=x, y_train=y))
    _error("has no x_train or y_train (arrays found: none)", _write(tmp_path / "b.npz"))
    path = _write(tmp_path / "c.npz", x_train=x, y_train=y, x_test=x)
    _error(f"{path}: x_test is given without y_test; give both or neither", path)
    path = _write(tmp_path / "d.npz", x_train=x, y_train=y, y_test=y)
    _error(f"{path}: y_test is given without x_test", path)
    path = _write(tmp_path / "e.npz", x_train=np.array([x[0], "a"], dtype=object), y_train=y)
    _error(f"{path}: x_train holds Python objects", path)
    path = _write(tmp_path / "f.npz", x_train=x, y_train=y, classes=np.array([1, 2]))
    _error(f"{path}: classes has dtype int64", path)


def test_bad_labels_name_the_file(tmp_path: Path) -> None:
    x = _pixels(6, 4, 4)
    path = _write(tmp_path / "short.npz", x_train=x, y_train=np.arange(5) % 2)
    _error(f"{path}: x_train has 6 images but y_train has 5 labels", path)
    path = _write(tmp_path / "range.npz", x_train=x, y_train=np.arange(6) % 2, x_test=x, y_test=np.arange(6) % 3)
    _error(f"{path}: y_test has label 2, outside 0..K-1 (max(y_train) + 1 = 2 classes)", path)
    path = _write(tmp_path / "names.npz", x_train=x, y_train=np.arange(6) % 3, classes=np.array(["a", "b"]))
    _error(f"{path}: y_train has label 2, outside 0..K-1 (2 class names)", path)
    path = _write(tmp_path / "one.npz", x_train=x, y_train=np.zeros(6, dtype=np.int64))
    _error("a classifier needs at least 2", path)
    path = _write(tmp_path / "scaled.npz", x_train=x.astype(np.float32), y_train=np.arange(6) % 2)
    _error(f"{path}: x_train holds floats in [", path)
