"""In-memory data as an ImageDataset (gdas.data.arrays): layouts, dtypes, resizing, channels, torch Datasets, save_npz,
and every bad input as a one-line GdasError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gdas.data.arrays import dataset_from_arrays, dataset_from_torch, resize_square, save_npz
from gdas.data.images import channel_stats, to_channels
from gdas.data.npz import load_npz
from gdas.errors import GdasError
from image_files import eight_bit_of, sixteen_bit_values


def _labels(n: int, k: int = 3) -> np.ndarray:
    return np.arange(n) % k


def _pixels(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _error(contains: str, fn, *args, **kwargs) -> str:
    with pytest.raises(GdasError) as exc:
        fn(*args, **kwargs)
    message = str(exc.value)
    assert contains in message and "\n" not in message, message
    return message


def test_nhwc_uint8_numpy_becomes_nchw_with_the_training_statistics() -> None:
    x = _pixels(12, 6, 6, 3)
    data = dataset_from_arrays(x, _labels(12), _pixels(6, 6, 6, 3, seed=1), _labels(6))
    assert data.train_x.shape == (12, 3, 6, 6) and data.test_x.shape == (6, 3, 6, 6)
    assert torch.equal(data.train_x, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert data.train_y.dtype == torch.int64 and data.train_y.tolist() == _labels(12).tolist()
    assert data.num_classes == 3 and data.classes is None and data.name == "arrays"
    assert (data.mean, data.std) == channel_stats(data.train_x)
    assert data.mean[0] == pytest.approx(x[..., 0].mean() / 255) and data.std[2] == pytest.approx(x[..., 2].std() / 255)


def test_nchw_float_tensors_grayscale_and_other_integers() -> None:
    x = torch.rand(9, 3, 5, 5, dtype=torch.float64)
    data = dataset_from_arrays(x, torch.tensor(_labels(9)))
    assert torch.equal(data.train_x, (x * 255).round().to(torch.uint8))
    gray = dataset_from_arrays(_pixels(9, 7, 7).astype(np.int32), _labels(9).astype(np.float32))
    assert gray.train_x.shape == (9, 1, 7, 7) and gray.channels == 1 and gray.train_y.dtype == torch.int64
    column = dataset_from_arrays(_pixels(9, 7, 7, 1), _labels(9).reshape(9, 1))  # Keras-style (N, 1) labels
    assert column.train_x.shape == (9, 1, 7, 7) and column.train_y.shape == (9,)


def test_without_test_arrays_the_test_split_is_empty_and_shaped_like_the_images() -> None:
    data = dataset_from_arrays(_pixels(6, 8, 8, 3), _labels(6, 2), image_size=4)
    assert data.test_x.shape == (0, 3, 4, 4) and data.test_x.dtype == torch.uint8 and data.test_y.shape == (0,)


def test_the_layout_rule_for_ambiguous_shapes() -> None:
    assert dataset_from_arrays(_pixels(6, 5, 5, 3), _labels(6)).train_x.shape == (6, 3, 5, 5)
    assert dataset_from_arrays(_pixels(6, 3, 5, 5), _labels(6)).train_x.shape == (6, 3, 5, 5)
    # (N, 3, 32, 3): axis 1 is 3, so channels first: 32x3 images, which need --image-size to become square
    _error("32x3 images, not square; pass --image-size", dataset_from_arrays, _pixels(6, 3, 32, 3), _labels(6))
    assert dataset_from_arrays(_pixels(6, 3, 32, 3), _labels(6), image_size=3).train_x.shape == (6, 3, 3, 3)
    _error("want (N, H, W), (N, C, H, W) or (N, H, W, C)", dataset_from_arrays, _pixels(6, 5, 5, 4), _labels(6))
    _error("has shape (6, 25)", dataset_from_arrays, _pixels(6, 25), _labels(6))


def test_resize_takes_the_shorter_side_then_the_centre() -> None:
    x = torch.zeros(2, 1, 8, 16, dtype=torch.uint8)
    x[..., 2:14] = 200  # dark borders outside the centre square of each wide image
    out = resize_square(x, 4)
    assert out.shape == (2, 1, 4, 4) and out.dtype == torch.uint8 and bool((out == 200).all())
    x[..., 8:] = 0
    halves = resize_square(x, 4)
    assert bool((halves[..., :1] == 200).all()) and bool((halves[..., 3:] == 0).all())
    flat = torch.full((3, 3, 10, 7), 77, dtype=torch.uint8)
    assert bool((resize_square(flat, 5) == 77).all()) and resize_square(flat, 5).shape == (3, 3, 5, 5)
    data = dataset_from_arrays(_pixels(6, 9, 12, 3), _labels(6), _pixels(4, 20, 20, 3), _labels(4), image_size=6)
    assert data.train_x.shape == (6, 3, 6, 6) and data.test_x.shape == (4, 3, 6, 6)


def test_channels_are_forced_and_a_test_split_follows_the_training_images() -> None:
    rgb = _pixels(6, 3, 4, 4)
    data = dataset_from_arrays(rgb, _labels(6), channels=1)
    assert torch.equal(data.train_x, to_channels(torch.from_numpy(rgb), 1)) and len(data.mean) == 1
    data = dataset_from_arrays(_pixels(6, 4, 4), _labels(6), _pixels(3, 4, 4), _labels(3), channels=3)
    assert data.train_x.shape == (6, 3, 4, 4) and data.test_x.shape == (3, 3, 4, 4)
    mixed = dataset_from_arrays(rgb, _labels(6), _pixels(3, 4, 4), _labels(3))
    assert mixed.test_x.shape == (3, 3, 4, 4)
    _error("channels must be 1 (grayscale) or 3", dataset_from_arrays, rgb, _labels(6), channels=2)


def test_class_names_fix_the_number_of_classes() -> None:
    data = dataset_from_arrays(_pixels(6, 4, 4), _labels(6, 3), classes=["a", "b", "c"])
    assert data.classes == ("a", "b", "c") and data.num_classes == 3
    _error("class 3 ('d') has no training image", dataset_from_arrays, _pixels(6, 4, 4), _labels(6, 3),
           classes=["a", "b", "c", "d"])
    _error("y_train has label 2, outside 0..K-1 (2 class names)", dataset_from_arrays, _pixels(6, 4, 4),
           _labels(6, 3), classes=["a", "b"])


def test_bad_pixels() -> None:
    y = _labels(4)
    message = _error("holds floats in [0, 255], not [0, 1]; divide by 255", dataset_from_arrays,
                     np.linspace(0, 255, 4 * 16, dtype=np.float32).reshape(4, 4, 4), y)
    assert message.startswith("the arrays: x_train")
    _error("floats in [-1, 1], not [0, 1]; rescale", dataset_from_arrays,
           np.linspace(-1, 1, 64, dtype=np.float32).reshape(4, 4, 4), y)
    nan = np.zeros((4, 4, 4), dtype=np.float32)
    nan[0, 0, 0] = np.nan
    _error("NaN or infinite", dataset_from_arrays, nan, y)
    _error("integers in 0..300; want pixel values 0..255", dataset_from_arrays,
           np.arange(64, dtype=np.int64).reshape(4, 4, 4) * 300 // 63, y)
    _error("holds <U1 values", dataset_from_arrays, np.full((4, 4, 4), "a"), y)
    _error("dtype torch.bool", dataset_from_arrays, torch.ones(4, 4, 4, dtype=torch.bool), y)


def test_bad_labels_name_the_source_and_the_value() -> None:
    x, xt = _pixels(6, 4, 4), _pixels(3, 4, 4)
    _error("mine: x_train has 6 images but y_train has 5 labels", dataset_from_arrays, x, _labels(5),
           source="mine")
    _error("y_test has label 3, outside 0..K-1 (max(y_train) + 1 = 3 classes)", dataset_from_arrays, x, _labels(6),
           xt, np.array([0, 1, 3]))
    _error("y_train has label -1", dataset_from_arrays, x, np.array([0, 1, 2, -1, 1, 0]))
    _error("single class; a classifier needs at least 2", dataset_from_arrays, x, np.zeros(6, dtype=np.int64))
    _error("class 1 has no training image", dataset_from_arrays, x, np.array([0, 2, 0, 2, 0, 2]))
    _error("non-integer values", dataset_from_arrays, x, np.full(6, 0.5))
    _error("want one integer label per image", dataset_from_arrays, x, np.zeros((6, 2), dtype=np.int64))
    _error("x_test is given without y_test", dataset_from_arrays, x, _labels(6), xt)
    _error("y_test is given without x_test", dataset_from_arrays, x, _labels(6), None, _labels(3))
    _error("no training images", dataset_from_arrays, np.zeros((0, 4, 4), dtype=np.uint8), np.zeros(0, np.int64))
    _error("x_test holds 5x5 images but the training images are 4x4", dataset_from_arrays, x, _labels(6),
           _pixels(3, 5, 5), _labels(3))


class _Pairs(torch.utils.data.Dataset):
    """A map-style Dataset over a list of items, with torchvision-style class names."""

    def __init__(self, items: list, classes: list[str] | None = None) -> None:
        self.items = items
        if classes is not None:
            self.classes = classes

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def test_a_torch_dataset_of_tensors_arrays_and_pil_images() -> None:
    float_image = torch.rand(3, 6, 6)
    array_image = _pixels(6, 6, 3)
    gray_pil = Image.fromarray(_pixels(6, 6, seed=2))
    items = [(float_image, 0), (array_image, np.int64(1)), (gray_pil, torch.tensor(2)), (torch.rand(6, 6), 1)]
    data = dataset_from_torch(_Pairs(items, ["cat", "dog", "eel"]), _Pairs(items[:2]))
    assert data.classes == ("cat", "dog", "eel") and data.num_classes == 3 and data.name == "dataset"
    assert data.train_x.shape == (4, 3, 6, 6) and data.test_x.shape == (2, 3, 6, 6)
    assert torch.equal(data.train_x[0], (float_image * 255).round().to(torch.uint8))
    assert torch.equal(data.train_x[1], torch.from_numpy(array_image).permute(2, 0, 1))
    assert torch.equal(data.train_x[2], torch.from_numpy(np.array(gray_pil)).expand(3, -1, -1))
    assert data.train_y.tolist() == [0, 1, 2, 1] and data.test_y.tolist() == [0, 1]
    gray = dataset_from_torch(_Pairs([(torch.rand(1, 5, 5), 0), (torch.rand(1, 5, 5), 1)]), classes=["a", "b"])
    assert gray.train_x.shape == (2, 1, 5, 5) and gray.test_x.shape == (0, 1, 5, 5) and gray.classes == ("a", "b")


def test_a_torch_dataset_of_mixed_sizes_needs_an_image_size() -> None:
    rgb_pil = Image.fromarray(_pixels(10, 14, 3))
    items = [(torch.rand(3, 8, 8), 0), (rgb_pil, 1), (torch.rand(3, 8, 8), 1)]
    _error("different sizes (8x8 at item 0, 10x14 at item 1); pass --image-size", dataset_from_torch, _Pairs(items))
    data = dataset_from_torch(_Pairs(items), image_size=4, channels=1)
    assert data.train_x.shape == (3, 1, 4, 4)


def test_a_torch_dataset_that_yields_something_else() -> None:
    image = torch.rand(3, 4, 4)
    _error("item 1 is a 3-item tuple; a Dataset for gdas yields (image, label)", dataset_from_torch,
           _Pairs([(image, 0), (image, 1, "x")]))
    _error("item 0 is a Tensor", dataset_from_torch, _Pairs([image]))
    _error("item 0 holds the label 'cat' (str)", dataset_from_torch, _Pairs([(image, "cat")]))
    _error("item 0 holds the label tensor(0.5000)", dataset_from_torch, _Pairs([(image, torch.tensor(0.5))]))
    _error("item 0 holds an image of type str", dataset_from_torch, _Pairs([("a.png", 0)]))
    _error("item 0's image has 4 channels", dataset_from_torch, _Pairs([(torch.rand(4, 4, 4), 0)]))
    _error("the test Dataset: item 0's image holds floats in [2, 2]", dataset_from_torch,
           _Pairs([(image, 0), (image, 1)]), _Pairs([(torch.full((3, 4, 4), 2.0), 0)]))

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield image, 0

    _error("gdas reads map-style Datasets", dataset_from_torch, Stream())


def test_save_npz_round_trips_and_writes_over_nothing(tmp_path: Path) -> None:
    data = dataset_from_arrays(_pixels(6, 5, 5, 3), _labels(6), _pixels(3, 5, 5, 3), _labels(3),
                               classes=["a", "b", "c"])
    path = tmp_path / "data.npz"
    save_npz(data, path)
    back = load_npz(path)
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(back, name), getattr(data, name)), name
    assert (back.classes, back.num_classes, back.mean, back.std) == (data.classes, 3, data.mean, data.std)
    with np.load(path, allow_pickle=False) as stored:
        assert sorted(stored.files) == ["classes", "x_test", "x_train", "y_test", "y_train"]
        assert stored["x_train"].dtype == np.uint8 and stored["x_train"].shape == (6, 3, 5, 5)
    before = path.read_bytes()
    _error("exists; choose another path or pass overwrite=True", save_npz, data, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["data.npz"]
    unnamed = dataset_from_arrays(_pixels(4, 5, 5), _labels(4, 2))
    save_npz(unnamed, path, overwrite=True)
    assert load_npz(path).classes is None and load_npz(path).test_x.shape == (0, 1, 5, 5)


def test_sixteen_bit_pil_images_of_a_dataset_are_scaled_as_files_are() -> None:
    values = [sixteen_bit_values(8, seed) for seed in range(2)]
    items = [(Image.fromarray(v), label) for label, v in enumerate(values)]
    assert items[0][0].mode == "I;16"
    data = dataset_from_torch(_Pairs(items))
    for i, v in enumerate(values):
        assert np.array_equal(data.train_x[i, 0].numpy(), eight_bit_of(v))


def test_uint16_arrays_name_the_16_bit_scale_and_small_values_stay_pixel_values() -> None:
    x, y = np.stack([sixteen_bit_values(8, seed) for seed in range(4)]), _labels(4)
    message = _error("x_train holds integers in 0..65535", dataset_from_arrays, x, y)
    assert "x_train / 65535 for 16-bit images" in message
    scaled = dataset_from_arrays(x / 65535, y)  # the fix the message names: the scale of 16-bit files
    assert np.array_equal(scaled.train_x[:, 0].numpy(), eight_bit_of(x))
    small = (x // 257).astype(np.uint16)  # a dtype wider than the values: read as pixel values, as before
    assert np.array_equal(dataset_from_arrays(small, y).train_x[:, 0].numpy(), small)
