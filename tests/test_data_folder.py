"""Class-folder data (`gdas.data.folder`, `gdas.data.stream`) on real PNG / JPEG files: layout, decoding,
channels, the cache, streaming and bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from gdas.data.folder import cache_dir, load_folder
from gdas.data.images import channel_stats, load_image_dataset
from gdas.data.stream import BatchReader, FolderImages, take
from gdas.errors import GdasError
from image_files import (SIXTEEN_BIT_KINDS, eight_bit_of, fashion_mnist, halves, sixteen_bit_values,
                         write_image_folder, write_oriented_jpeg, write_sixteen_bit)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("GDAS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "folders"


@pytest.fixture
def grey(tmp_path: Path) -> Path:
    """100 grayscale PNGs per class in train/, 10 in test/, at the network's own 32 x 32."""
    root = write_image_folder(tmp_path / "grey", n_per_class=100, fmt="png", mode="L", size=32)
    return write_image_folder(root, n_per_class=10, fmt="png", mode="L", size=32, split="test", offset=200)


def test_png_folder_decodes_to_the_files_pixels_with_sorted_classes(grey: Path, cache: Path, capsys) -> None:
    data = load_image_dataset("folder", str(grey), image_size=32)
    assert data.classes == ("boot", "coat", "shirt") and data.num_classes == 3
    assert tuple(data.train_x.shape) == (300, 1, 32, 32) and tuple(data.test_x.shape) == (30, 1, 32, 32)
    assert data.train_y.tolist() == [0] * 100 + [1] * 100 + [2] * 100
    from PIL import Image
    with Image.open(grey / "train" / "coat" / "0003.png") as img:  # a 32 x 32 file is read as it is
        assert torch.equal(data.train_x[103, 0], torch.from_numpy(np.array(img)))
    assert data.mean == pytest.approx(channel_stats(data.train_x)[0])
    printed = capsys.readouterr().out
    assert "300 training and 30 test images, 3 classes" in printed and "in memory" in printed
    assert "decoded 330 images with" in printed and "resized" not in printed


def test_rgb_jpegs_keep_three_channels_unless_forced_and_grey_joins_colour(tmp_path: Path, cache: Path) -> None:
    rgb = write_image_folder(tmp_path / "rgb", n_per_class=20, fmt="jpg", mode="RGB")
    data = load_folder(str(rgb), image_size=16)
    assert tuple(data.train_x.shape) == (60, 3, 16, 16) and len(data.mean) == 3 and len(data.test_y) == 0
    assert load_folder(str(rgb), image_size=16, channels=1).channels == 1
    write_image_folder(rgb, n_per_class=5, fmt="png", mode="L", classes=("boot",), offset=50)  # grey among colour
    assert load_folder(str(rgb), image_size=16).channels == 3
    grey = write_image_folder(tmp_path / "grey", n_per_class=5, fmt="png", mode="L")
    assert load_folder(str(grey)).channels == 1 and load_folder(str(grey), channels=3).channels == 3


def test_mixed_sizes_are_resized_and_counted_other_files_ignored(tmp_path: Path, cache: Path, capsys) -> None:
    root = write_image_folder(tmp_path / "mixed", n_per_class=10, size=28)
    write_image_folder(root, n_per_class=3, size=(40, 30), classes=("boot", "coat"), offset=100)
    (root / "train" / "boot" / "notes.txt").write_text("not an image")
    (root / "train" / "coat" / ".hidden.png").write_bytes(b"")
    (root / "train" / "README").write_text("not a class")
    data = load_folder(str(root), image_size=20)
    assert tuple(data.train_x.shape) == (30, 1, 20, 20)  # the 40 x 30 files overwrote 3 names in two classes
    printed = capsys.readouterr().out
    assert "resized 6 images of other sizes than the most common 28x28, all resized to 20x20" in printed
    assert "3 other files ignored" in printed


def test_val_folder_serves_as_test_split_and_unknown_test_class_is_refused(tmp_path: Path, cache: Path) -> None:
    root = write_image_folder(tmp_path / "v", n_per_class=6)
    write_image_folder(root, n_per_class=2, split="val", classes=("boot", "coat"), offset=50)
    data = load_folder(str(root))
    assert data.test_y.tolist() == [0, 0, 1, 1]
    write_image_folder(root, n_per_class=2, split="test", classes=("boot", "sandal"), offset=50)
    with pytest.raises(GdasError, match=r"test/sandal is not a class of .*train"):
        load_folder(str(root))


def _cache_file(cache: Path) -> Path:
    files = list(cache.glob("*.pt"))
    assert len(files) == 1, files
    return files[0]


def test_cache_is_reused_then_invalidated_by_any_file_change_or_size(grey: Path, cache: Path, capsys) -> None:
    first = load_folder(str(grey))
    capsys.readouterr()
    path = _cache_file(cache)
    stamp = path.stat().st_mtime_ns
    again = load_folder(str(grey))
    assert "read 330 images of" in capsys.readouterr().out and path.stat().st_mtime_ns == stamp
    assert torch.equal(again.train_x, first.train_x) and again.classes == first.classes

    def decoded(expected: int) -> None:
        out = capsys.readouterr().out
        assert f"decoded {expected} images" in out, out

    touched = grey / "train" / "boot" / "0000.png"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10 ** 9))
    load_folder(str(grey))
    decoded(330)
    assert path.stat().st_mtime_ns != stamp and _cache_file(cache) == path  # written over, not a second file
    (grey / "train" / "boot" / "0001.png").unlink()
    assert len(load_folder(str(grey)).train_y) == 299
    decoded(329)
    (grey / "train" / "boot" / "extra.png").write_bytes((grey / "train" / "boot" / "0002.png").read_bytes())
    load_folder(str(grey))
    decoded(330)
    assert load_folder(str(grey), image_size=16).image_size == 16
    decoded(330)


def test_damaged_cache_file_is_ignored_and_rewritten(grey: Path, cache: Path, capsys) -> None:
    load_folder(str(grey))
    path = _cache_file(cache)
    path.write_bytes(b"garbage")
    data = load_folder(str(grey))
    assert "decoded 330 images" in capsys.readouterr().out and len(data.train_y) == 300
    load_folder(str(grey))
    assert "from the cache" in capsys.readouterr().out


def test_cache_location_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GDAS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("folders") == tmp_path / "xdg" / "gdas" / "folders"
    monkeypatch.setenv("GDAS_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir("folders") == tmp_path / "mine" / "folders"


def test_streamed_folder_reads_the_same_pixels_and_statistics(grey: Path, cache: Path, monkeypatch,
                                                              capsys) -> None:
    memory = load_folder(str(grey), image_size=24)
    monkeypatch.setenv("GDAS_STREAM_LIMIT_MB", "0")  # any folder is over the limit: streamed automatically
    streamed = load_folder(str(grey), image_size=24)
    printed = capsys.readouterr().out
    assert "streamed (" in printed and "over the 0 MB limit" in printed and "mean / std from 300" in printed
    assert isinstance(streamed.train_x, FolderImages) and tuple(streamed.train_x.shape) == (300, 1, 24, 24)
    assert streamed.mean == memory.mean and streamed.std == memory.std
    assert torch.equal(streamed.train_y, memory.train_y) and torch.equal(streamed.test_y, memory.test_y)
    rows = torch.tensor([[5, 250, 17], [0, 299, 120]])
    reader = BatchReader(streamed.train_x[torch.arange(300)], rows, torch.device("cpu"), workers=2)
    for step in range(2):
        assert torch.equal(reader[step], memory.train_x[rows[step]])
    subset = streamed.subset(50, None, torch.Generator().manual_seed(0))
    assert len(subset.train_x) == 50 and subset.test_x.shape == streamed.test_x.shape


def test_unreadable_image_is_named_or_skipped_and_counted(grey: Path, cache: Path, capsys) -> None:
    bad = grey / "train" / "coat" / "0007.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated
    with pytest.raises(GdasError, match=r"cannot read image .*coat/0007\.png .*--skip-bad-images"):
        load_folder(str(grey))
    data = load_folder(str(grey), skip_bad_images=True)
    assert len(data.train_y) == 299 and "left out 1 unreadable images" in capsys.readouterr().out
    (grey / "train" / "boot" / "0002.png").write_text("not a png at all")
    # streamed: the header check finds the second, decoding the mean / std sample (all 300 here) the first
    streamed = load_folder(str(grey), skip_bad_images=True, stream=True)
    assert len(streamed.train_y) == 298 and "left out 2 unreadable images" in capsys.readouterr().out


def test_streamed_skip_decodes_every_file_so_no_bad_one_is_left_for_a_batch(grey: Path, cache: Path, monkeypatch,
                                                                            capsys) -> None:
    import gdas.data.folder as folder

    monkeypatch.setattr(folder, "STATS_SAMPLE", 5)  # the mean / std sample misses the bad file
    bad = grey / "train" / "shirt" / "0050.png"
    bad.write_bytes(bad.read_bytes()[:60])  # the header opens, the pixels do not
    streamed = load_folder(str(grey), stream=True)  # header check only: the file is still listed
    assert len(streamed.train_y) == 300
    index = streamed.train_x.files.index(os.path.join("train", "shirt", "0050.png"))
    with pytest.raises(GdasError, match=r"cannot read image .*shirt/0050\.png"):
        BatchReader(streamed.train_x, [torch.tensor([index])], torch.device("cpu"), workers=0)[0]
    skipped = load_folder(str(grey), stream=True, skip_bad_images=True)  # every file decoded once
    assert len(skipped.train_y) == 299 and os.path.join("train", "shirt", "0050.png") not in skipped.train_x.files
    assert "left out 1 unreadable images" in capsys.readouterr().out


def test_layout_errors(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(GdasError, match="does not exist"):
        load_folder(str(tmp_path / "missing"))
    (tmp_path / "flat").mkdir()
    with pytest.raises(GdasError, match="has no train/ folder"):
        load_folder(str(tmp_path / "flat"))
    one = write_image_folder(tmp_path / "one", n_per_class=3, classes=("boot",))
    with pytest.raises(GdasError, match=r"only one class folder \(boot\); a classifier needs at least two"):
        load_folder(str(one))
    (one / "train" / "empty").mkdir()
    with pytest.raises(GdasError, match=r"class folder .*empty holds no images"):
        load_folder(str(one))


def test_fashion_mnist_helper_exports_real_images(tmp_path: Path) -> None:
    x, y = fashion_mnist()
    root = write_image_folder(tmp_path / "f", n_per_class=2, classes=("tshirt", "trouser"))
    from PIL import Image
    with Image.open(root / "train" / "trouser" / "0001.png") as img:
        assert np.array_equal(np.asarray(img), x[np.flatnonzero(y == 1)[1]])


def test_unwritable_cache_is_a_warning_not_an_error(grey: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("GDAS_CACHE_DIR", str(blocker))
    assert len(load_folder(str(grey)).train_y) == 300
    assert "warning: cannot write the folder cache" in capsys.readouterr().err


def _sixteen_bit_folder(root: Path, kind: str = "png") -> tuple[Path, list[np.ndarray]]:
    """Two classes of two 32 x 32 16-bit grey files each; the values in label order."""
    values = [sixteen_bit_values(32, seed) for seed in range(4)]
    for i, v in enumerate(values):
        write_sixteen_bit(root / "train" / ("ab"[i // 2]) / f"{i}", v, kind)
    return root, values


@pytest.mark.parametrize("kind", SIXTEEN_BIT_KINDS)
@pytest.mark.parametrize("stream", [False, True])
def test_sixteen_bit_grey_is_scaled_over_the_full_range_not_clipped(tmp_path: Path, cache: Path, kind: str,
                                                                     stream: bool) -> None:
    root, values = _sixteen_bit_folder(tmp_path / "deep", kind)
    data = load_folder(str(root), image_size=32, stream=stream)
    pixels = take(data.train_x, torch.arange(4), torch.device("cpu"))
    assert data.channels == 1 and data.train_y.tolist() == [0, 0, 1, 1]
    for i, v in enumerate(values):
        assert np.array_equal(pixels[i, 0].numpy(), eight_bit_of(v)), (kind, i)
    assert data.mean == pytest.approx(channel_stats(pixels)[0])


def test_a_cache_written_by_the_previous_decoder_is_decoded_again(tmp_path: Path, cache: Path, monkeypatch,
                                                                   capsys) -> None:
    import gdas.data.folder as folder
    from PIL import Image

    def clipping_decoder(path: str, size: int) -> tuple[np.ndarray, tuple[int, int]]:  # the decoder of version 1
        with Image.open(path) as img:
            return np.asarray(img.convert("L"))[None], img.size

    root, values = _sixteen_bit_folder(tmp_path / "deep")
    with monkeypatch.context() as old:
        old.setattr(folder, "CACHE_VERSION", 1)
        old.setattr(folder, "decode_image", clipping_decoder)
        clipped = load_folder(str(root), image_size=32)
    assert (clipped.train_x == 255).float().mean() > 0.9 and len(list(cache.glob("*.pt"))) == 1
    capsys.readouterr()
    data = load_folder(str(root), image_size=32)
    assert "decoded 4 images" in capsys.readouterr().out and len(list(cache.glob("*.pt"))) == 1  # written over
    assert np.array_equal(data.train_x[1, 0].numpy(), eight_bit_of(values[1]))
    load_folder(str(root), image_size=32)
    assert "from the cache" in capsys.readouterr().out


@pytest.mark.parametrize("stream", [False, True])
def test_jpeg_exif_orientation_is_applied_before_the_resize_and_crop(tmp_path: Path, cache: Path, stream: bool,
                                                                     capsys) -> None:
    upright = halves(48, 32)  # landscape: the centre square still has a dark left and a bright right half
    orientations = (1, 3, 6, 8)
    for i, orientation in enumerate(orientations):
        write_oriented_jpeg(tmp_path / "photos" / "train" / ("ab"[i // 2]) / f"{i}.jpg", upright, orientation)
    data = load_folder(str(tmp_path / "photos"), image_size=16, stream=stream)
    pixels = take(data.train_x, torch.arange(4), torch.device("cpu")).float()
    assert pixels.shape == (4, 3, 16, 16)
    for i, orientation in enumerate(orientations):
        left, right = pixels[i, :, :, :6].mean().item(), pixels[i, :, :, 10:].mean().item()
        assert left < 60 and right > 190, (orientation, left, right)
    printed = capsys.readouterr().out  # sizes as shown upright: one size, also from a streamed folder's headers
    assert "all resized to 16x16" in printed and "other sizes" not in printed, printed
