"""Dataset readers on tiny files in the real on-disk formats, synthetic data and ImageDataset helpers."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from gdas.data import images
from gdas.data.images import (FASHION_MNIST_DEFAULT_DIR, IMAGE_DATASETS, ImageDataset, channel_stats,
                              load_image_dataset)
from gdas.errors import GdasError


# ---------------------------------------------------------------- writers of the real formats

def py2_pickle(obj) -> bytes:
    """A protocol-2 pickle as Python 2's cPickle wrote the CIFAR batches (byte strings, numpy.core names)."""
    out = bytearray(b"\x80\x02")

    def string(b: bytes) -> None:
        out.extend(b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b)

    def emit(o) -> None:
        if isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                emit(k)
                emit(v)
            out.extend(b"u")
        elif isinstance(o, list):
            out.extend(b"](")
            for v in o:
                emit(v)
            out.extend(b"e")
        elif isinstance(o, bytes):
            string(o)
        elif isinstance(o, int):
            out.extend(b"J" + struct.pack("<i", o))
        elif isinstance(o, np.ndarray):
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n(")
            emit(0)
            out.extend(b"t")
            string(b"b")
            out.extend(b"\x87R(")  # TUPLE3, REDUCE; then the state tuple
            emit(1)
            out.extend(b"(")
            for d in o.shape:
                emit(d)
            out.extend(b"tcnumpy\ndtype\n")
            string(b"u1")
            emit(0)
            emit(1)
            out.extend(b"\x87R(")
            emit(3)
            string(b"|")
            out.extend(b"NNN")
            emit(-1)
            emit(-1)
            emit(0)
            out.extend(b"tb\x89")  # dtype state BUILD, is_fortran False
            string(o.tobytes())
            out.extend(b"tb")
        else:
            raise TypeError(type(o))

    emit(obj)
    out.extend(b".")
    return bytes(out)


def random_images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(root, n: int = 3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
                 b"data": random_images(rng, n), b"filenames": [b"img_%d.png" % i for i in range(n)]}
        (folder / name).write_bytes(py2_pickle(batch))
        batches[name] = batch
    (folder / "batches.meta").write_bytes(py2_pickle({b"label_names": [b"airplane"]}))
    return batches


def write_cifar100(root, protocol: int, n: int = 4, seed: int = 0) -> dict:
    """Batches re-pickled by Python 3 (`protocol` 2 stores bytes via _codecs, 5 arrays via _frombuffer)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    batches = {}
    for name in ("train", "test"):
        batch = {b"filenames": [b"f%d.png" % i for i in range(n)], b"batch_label": name.encode(),
                 b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
                 b"coarse_labels": [int(v) for v in rng.integers(0, 20, n)], b"data": random_images(rng, n)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        batches[name] = batch
    return batches


def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_fashion(folder, gz: bool, n_train: int = 6, n_test: int = 4, size: int = 7, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8)}
    for name, array in arrays.items():
        if gz:
            with gzip.open(folder / (name + ".gz"), "wb") as f:
                f.write(idx_bytes(array))
        else:
            (folder / name).write_bytes(idx_bytes(array))
    return arrays


def check_stats(ds: ImageDataset) -> None:
    x = ds.train_x.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(ds.mean, x.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(ds.std, x.std(axis=(0, 2, 3)), rtol=1e-9)


# ---------------------------------------------------------------- CIFAR

def test_cifar10_reads_the_python2_batches(tmp_path):
    batches = write_cifar10(tmp_path)
    ds = load_image_dataset("cifar10", str(tmp_path))
    assert ds.name == "cifar10" and ds.num_classes == 10 and ds.channels == 3 and ds.image_size == 32
    assert ds.train_x.shape == (15, 3, 32, 32) and ds.test_x.shape == (3, 3, 32, 32)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64 and ds.train_x.is_contiguous()
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    want = np.concatenate([b[b"data"] for b in train]).reshape(-1, 3, 32, 32)  # R plane, G plane, B plane
    np.testing.assert_array_equal(ds.train_x.numpy(), want)
    assert ds.train_y.tolist() == sum((b[b"labels"] for b in train), [])
    np.testing.assert_array_equal(ds.test_x.numpy()[1, 2], batches["test_batch"][b"data"][1, 2048:].reshape(32, 32))
    assert ds.test_y.tolist() == batches["test_batch"][b"labels"]
    check_stats(ds)


def test_cifar10_accepts_the_batches_folder_itself(tmp_path):
    write_cifar10(tmp_path)
    ds = load_image_dataset("cifar10", str(tmp_path / "cifar-10-batches-py"))
    assert len(ds.train_x) == 15


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar100_reads_train_and_test(tmp_path, protocol):
    batches = write_cifar100(tmp_path, protocol)
    ds = load_image_dataset("cifar100", str(tmp_path))
    assert ds.num_classes == 100 and ds.train_x.shape == (4, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(ds.train_x.numpy().reshape(4, -1), batches["train"][b"data"])
    assert ds.train_y.tolist() == batches["train"][b"fine_labels"]
    assert ds.test_y.tolist() == batches["test"][b"fine_labels"]
    check_stats(ds)


def test_malicious_pickle_is_refused_without_running_code(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return open, (str(marker), "w")

    evil = {b"data": Evil(), b"labels": [0]}
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(GdasError, match=r"data_batch_2 refers to \S*open, .*refusing"):
        load_image_dataset("cifar10", str(tmp_path))
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not-a-batch", "bad-labels", "count-mismatch"])
def test_corrupt_cifar_batches(tmp_path, damage):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_4"
    data = np.zeros((3, 3072), np.uint8)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "garbage":
        path.write_bytes(os.urandom(64))
    elif damage == "not-a-batch":
        path.write_bytes(py2_pickle({b"images": data, b"labels": [0, 1, 2]}))
    elif damage == "bad-labels":
        path.write_bytes(py2_pickle({b"data": data, b"labels": [0, 10, 2]}))
    else:
        path.write_bytes(py2_pickle({b"data": data, b"labels": [0, 1]}))
    with pytest.raises(GdasError) as info:
        load_image_dataset("cifar10", str(tmp_path))
    message = str(info.value)
    assert "\n" not in message and ("data_batch_4" in message or "cifar-10-batches-py" in message)
    assert "cifar.html" in message


def test_missing_cifar_data(tmp_path):
    with pytest.raises(GdasError, match=r"--data-dir DIR containing cifar-10-batches-py/.*cifar\.html"):
        load_image_dataset("cifar10")
    with pytest.raises(GdasError, match="does not exist"):
        load_image_dataset("cifar100", str(tmp_path / "nowhere"))
    with pytest.raises(GdasError, match=r"must contain cifar-100-python/"):
        load_image_dataset("cifar100", str(tmp_path))
    write_cifar10(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    os.remove(tmp_path / "cifar-10-batches-py" / "test_batch")
    with pytest.raises(GdasError, match="missing data_batch_3, test_batch"):
        load_image_dataset("cifar10", str(tmp_path))


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(GdasError) as info:
        load_image_dataset("mnist")
    assert "'mnist'" in str(info.value) and all(name in str(info.value) for name in IMAGE_DATASETS)


# ---------------------------------------------------------------- Fashion-MNIST

@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_reads_idx_files(tmp_path, gz):
    arrays = write_fashion(tmp_path / "fm", gz)
    ds = load_image_dataset("fashion-mnist", str(tmp_path / "fm"))
    assert ds.channels == 1 and ds.image_size == 7 and ds.num_classes == 10
    np.testing.assert_array_equal(ds.train_x.numpy()[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test_x.numpy()[:, 0], arrays["t10k-images-idx3-ubyte"])
    assert ds.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert ds.test_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    check_stats(ds)


def test_fashion_mnist_default_folder_and_subfolder(tmp_path, monkeypatch):
    write_fashion(tmp_path / "root" / "fashion-mnist", gz=True)
    assert len(load_image_dataset("fashion-mnist", str(tmp_path / "root")).train_x) == 6
    monkeypatch.setattr(images, "FASHION_MNIST_DEFAULT_DIR", str(tmp_path / "root" / "fashion-mnist"))
    assert len(load_image_dataset("fashion-mnist").test_x) == 4
    monkeypatch.setattr(images, "FASHION_MNIST_DEFAULT_DIR", str(tmp_path / "absent"))
    with pytest.raises(GdasError, match=r"absent does not exist; install it .*dataset-fashion-mnist.*--data-dir"):
        load_image_dataset("fashion-mnist")


def _corrupt(folder, damage: str) -> None:
    labels = folder / "t10k-labels-idx1-ubyte"
    images_path = folder / "train-images-idx3-ubyte"
    if damage == "missing":
        os.remove(labels)
    elif damage == "magic":
        raw = bytearray(images_path.read_bytes())
        raw[3] = 1  # a labels magic on an images file
        images_path.write_bytes(bytes(raw))
    elif damage == "truncated":
        images_path.write_bytes(images_path.read_bytes()[:-5])
    elif damage == "short-header":
        labels.write_bytes(b"\x00\x00")
    elif damage == "count-mismatch":
        labels.write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    elif damage == "bad-label":
        labels.write_bytes(idx_bytes(np.full(4, 10, np.uint8)))
    elif damage == "bad-gzip":
        raw = gzip.compress(images_path.read_bytes())
        os.remove(images_path)
        (folder / "train-images-idx3-ubyte.gz").write_bytes(raw[:len(raw) // 2])


@pytest.mark.parametrize("damage", ["missing", "magic", "truncated", "short-header", "count-mismatch",
                                    "bad-label", "bad-gzip"])
def test_corrupt_fashion_mnist(tmp_path, damage):
    write_fashion(tmp_path, gz=False)
    _corrupt(tmp_path, damage)
    with pytest.raises(GdasError) as info:
        load_image_dataset("fashion-mnist", str(tmp_path))
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)
    assert "github.com/zalandoresearch/fashion-mnist" in str(info.value)
    if damage == "missing":
        assert "missing t10k-labels-idx1-ubyte[.gz]" in str(info.value)
    if damage == "magic":
        assert "magic 0x00000803, found 0x00000801" in str(info.value)


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DEFAULT_DIR), reason="Fashion-MNIST is not installed")
def test_real_fashion_mnist():
    ds = load_image_dataset("fashion-mnist")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_y.bincount().tolist() == [6000] * 10 and ds.test_y.bincount().tolist() == [1000] * 10
    assert ds.mean[0] == pytest.approx(0.2860, abs=1e-3) and ds.std[0] == pytest.approx(0.3530, abs=1e-3)


# ---------------------------------------------------------------- synthetic and ImageDataset

def test_synthetic_is_seeded_and_learnable():
    a = load_image_dataset("synthetic", synthetic_train=200, synthetic_test=100, synthetic_size=16, seed=3)
    b = load_image_dataset("synthetic", synthetic_train=200, synthetic_test=100, synthetic_size=16, seed=3)
    c = load_image_dataset("synthetic", synthetic_train=200, synthetic_test=100, synthetic_size=16, seed=4)
    assert a.train_x.shape == (200, 3, 16, 16) and a.test_x.shape == (100, 3, 16, 16) and a.num_classes == 10
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y) and a.mean == b.mean
    assert not torch.equal(a.train_x, c.train_x)
    assert a.train_y.bincount(minlength=10).tolist() == [20] * 10
    check_stats(a)
    # Nearest class mean, fitted on the training split, must classify the test split well.
    x, xt = a.train_x.float().flatten(1), a.test_x.float().flatten(1)
    centres = torch.stack([x[a.train_y == k].mean(0) for k in range(10)])
    accuracy = (torch.cdist(xt, centres).argmin(1) == a.test_y).float().mean().item()
    assert accuracy > 0.9


def test_synthetic_rejects_impossible_sizes():
    with pytest.raises(GdasError, match="synthetic"):
        load_image_dataset("synthetic", synthetic_classes=1)
    with pytest.raises(GdasError, match="synthetic"):
        load_image_dataset("synthetic", synthetic_train=0)


def numbered_dataset(n: int = 50) -> ImageDataset:
    """Image i is filled with the value i, so a subset reveals which rows it took."""
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 2, 4, 4).contiguous()
    y = torch.arange(n) % 7
    return ImageDataset("numbered", x, y, x[:20].clone(), y[:20].clone(), 7, (0.5, 0.5), (0.25, 0.25))


def test_subset_is_seeded_and_keeps_rows_and_labels():
    ds = numbered_dataset()
    sub = ds.subset(10, None, torch.Generator().manual_seed(1))
    rows = sub.train_x[:, 0, 0, 0].long()
    assert len(rows) == 10 and rows.unique().numel() == 10 and torch.equal(rows, rows.sort().values)
    assert torch.equal(sub.train_y, ds.train_y[rows]) and torch.equal(sub.train_x, ds.train_x[rows])
    assert torch.equal(sub.test_x, ds.test_x) and sub.mean == ds.mean and sub.num_classes == 7
    again = ds.subset(10, None, torch.Generator().manual_seed(1))
    other = ds.subset(10, None, torch.Generator().manual_seed(2))
    assert torch.equal(again.train_x, sub.train_x) and not torch.equal(other.train_x, sub.train_x)
    assert len(ds.subset(None, 5, torch.Generator()).test_x) == 5
    with pytest.raises(GdasError, match="cannot take 51 training images from numbered, which has 50"):
        ds.subset(51, None, torch.Generator())


def test_dataset_properties_and_to():
    ds = numbered_dataset()
    assert ds.channels == 2 and ds.image_size == 4
    moved = ds.to("cpu")
    assert moved.train_x.device.type == "cpu" and torch.equal(moved.train_x, ds.train_x)
    with pytest.raises(ValueError):
        ImageDataset("bad", ds.train_x.float(), ds.train_y, ds.test_x, ds.test_y, 7, (0.5,) * 2, (0.2,) * 2)
    with pytest.raises(ValueError):
        ImageDataset("bad", ds.train_x, ds.train_y, ds.test_x, ds.test_y, 7, (0.5,), (0.2,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_to_cuda_and_back():
    ds = numbered_dataset().to("cuda")
    assert ds.train_x.is_cuda and ds.test_y.is_cuda
    sub = ds.subset(5, 5, torch.Generator().manual_seed(0))
    assert sub.train_x.is_cuda and torch.equal(sub.to("cpu").train_x, numbered_dataset().subset(
        5, 5, torch.Generator().manual_seed(0)).train_x)


def test_channel_stats_chunks_agree():
    x = torch.randint(0, 256, (37, 3, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    whole, chunked = channel_stats(x), channel_stats(x, chunk=4)
    np.testing.assert_allclose(whole, chunked, rtol=1e-12)
    np.testing.assert_allclose(whole[0], (x.double() / 255).mean((0, 2, 3)).numpy(), rtol=1e-12)
