"""ImageNet16-120 reader on tiny pickles in the downsampled-ImageNet format (rows of 768 bytes, labels 1..1000)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from gdas.data.imagenet16 import NB201_MEAN, NB201_STD, TRAIN_FILES, VAL_FILE, load_imagenet16
from gdas.data.images import IMAGE_DATASETS, load_image_dataset
from gdas.errors import GdasError


def _rows(labels: list[int], seed: int) -> dict:
    data = np.random.default_rng(seed).integers(0, 256, size=(len(labels), 768), dtype=np.uint8)
    return {"data": data, "labels": labels, "mean": data.mean(axis=0)}  # the real files carry 'mean' too


def _write(folder, *, bytes_keys: bool = False) -> dict[str, dict]:
    """Ten training batches and val_data, a few rows each, labels inside and outside 1..120."""
    os.makedirs(folder, exist_ok=True)
    batches = {name: _rows([1, 500, 120 - i, 121, 1000 - i], i) for i, name in enumerate(TRAIN_FILES)}
    batches[VAL_FILE] = _rows([7, 121, 120, 999], 99)
    for name, batch in batches.items():
        obj = {k.encode(): v for k, v in batch.items()} if bytes_keys else batch  # Python 2 pickles: bytes keys
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(obj, f, protocol=2)
    return batches


def _expected(batches: dict, names) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in names:
        for row, label in zip(batches[name]["data"], batches[name]["labels"]):
            if 1 <= label <= 120:
                images.append(row.reshape(3, 16, 16))  # channel-planar: 256 red, 256 green, 256 blue
                labels.append(label - 1)
    return np.stack(images), np.array(labels)


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_reads_and_keeps_the_first_120_classes(tmp_path, bytes_keys):
    batches = _write(tmp_path, bytes_keys=bytes_keys)
    ds = load_imagenet16(str(tmp_path))
    train_x, train_y = _expected(batches, TRAIN_FILES)
    test_x, test_y = _expected(batches, [VAL_FILE])
    assert ds.name == "imagenet16-120" and ds.num_classes == 120
    assert ds.train_x.shape == (20, 3, 16, 16) and ds.train_x.dtype == torch.uint8
    assert torch.equal(ds.train_x, torch.from_numpy(train_x)) and torch.equal(ds.train_y, torch.from_numpy(train_y))
    assert torch.equal(ds.test_x, torch.from_numpy(test_x)) and ds.test_y.tolist() == [6, 119]
    assert ds.train_y.min() == 0 and ds.train_y.max() == 119
    assert ds.mean == NB201_MEAN and ds.std == NB201_STD  # NB201's constants, not the tiny files' statistics
    red = batches[TRAIN_FILES[0]]["data"][0, :256].reshape(16, 16)
    assert torch.equal(ds.train_x[0, 0], torch.from_numpy(red))


def test_fewer_classes_and_the_dataset_name(tmp_path):
    _write(tmp_path / "ImageNet16")  # NB201's layout: the pickles one folder down
    small = load_imagenet16(str(tmp_path), num_classes=10)
    assert small.num_classes == 10 and small.train_y.tolist() == [0] * 10 and small.test_y.tolist() == [6]
    assert "imagenet16-120" in IMAGE_DATASETS
    assert load_image_dataset("imagenet16-120", str(tmp_path)).train_x.shape[0] == 20


def test_zip_layout_with_train_and_val_folders(tmp_path):
    batches = _write(tmp_path / "Imagenet16_train")
    os.rename(tmp_path / "Imagenet16_train" / VAL_FILE, tmp_path / "val_data.tmp")
    os.makedirs(tmp_path / "Imagenet16_val")
    os.rename(tmp_path / "val_data.tmp", tmp_path / "Imagenet16_val" / VAL_FILE)
    ds = load_imagenet16(str(tmp_path))
    assert ds.train_x.shape[0] == 20 and torch.equal(ds.test_x, torch.from_numpy(_expected(batches, [VAL_FILE])[0]))


def test_truncated_pickle_names_the_file(tmp_path):
    _write(tmp_path)
    path = tmp_path / TRAIN_FILES[3]
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(GdasError, match=rf"{path} is truncated or corrupt .*download Imagenet16_train.zip"):
        load_imagenet16(str(tmp_path))


def test_missing_file_and_folder(tmp_path):
    _write(tmp_path)
    os.remove(tmp_path / VAL_FILE)
    with pytest.raises(GdasError, match="is missing val_data; download"):
        load_imagenet16(str(tmp_path))
    with pytest.raises(GdasError, match="does not exist"):
        load_imagenet16(str(tmp_path / "nowhere"))
    with pytest.raises(GdasError, match="needs --data-dir"):
        load_imagenet16(None)


def test_wrong_contents_and_code_in_a_pickle(tmp_path):
    _write(tmp_path)
    with open(tmp_path / VAL_FILE, "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 2]}, f, protocol=2)
    with pytest.raises(GdasError, match="not a downsampled-ImageNet 16x16 batch"):
        load_imagenet16(str(tmp_path))
    with open(tmp_path / VAL_FILE, "wb") as f:
        pickle.dump({"data": np.zeros((2, 768), np.uint8), "labels": [1]}, f, protocol=2)
    with pytest.raises(GdasError, match="has 2 images but 1 labels"):
        load_imagenet16(str(tmp_path))
    with open(tmp_path / VAL_FILE, "wb") as f:
        pickle.dump(os.getcwd, f, protocol=2)  # a global the safe unpickler must refuse
    with pytest.raises(GdasError, match="refusing to load it"):
        load_imagenet16(str(tmp_path))
