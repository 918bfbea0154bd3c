"""ImageNet folder reader on a tiny JPEG tree: shapes, labels, transforms, loaders and bad folders."""

import sys

import numpy as np
import pytest
import torch

from gdas.data import imagenet
from gdas.data.imagenet import (IMAGENET_MEAN, IMAGENET_STD, EvalTransform, ImageFolderDataset, TrainTransform,
                                adjust_hue, imagenet_datasets, imagenet_loaders, random_resized_crop_box)
from gdas.errors import GdasError
from image_files import eight_bit_of, halves, sixteen_bit_values, write_oriented_jpeg, write_sixteen_bit

Image = pytest.importorskip("PIL.Image")
CLASSES = ["n01440764", "n01443537", "n01484850"]
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def write_tree(root, per_class=(4, 2), size=(40, 50)):
    """<root>/{train,val}/<class>/*.JPEG, class k filled with colour k plus a little texture."""
    for split, count in zip(("train", "val"), per_class):
        for label, (name, colour) in enumerate(zip(CLASSES, COLOURS)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                img = Image.new("RGB", size, colour)
                img.putpixel((i, label), (128, 128, 128))
                img.save(folder / f"{name}_{i}.JPEG", quality=95)
    return root


def test_loaders_shapes_and_labels(tmp_path):
    root = write_tree(tmp_path)
    train, val, num_classes = imagenet_loaders(root, batch_size=5, workers=0, image_size=32, resize_size=36)
    assert num_classes == 3
    assert len(train.dataset) == 12 and len(val.dataset) == 6
    x, y = next(iter(train))
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (5,)
    labels = torch.cat([y for _, y in val])
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_labels_follow_sorted_class_folders(tmp_path):
    root = write_tree(tmp_path)
    _, val = imagenet_datasets(root, image_size=32, resize_size=36)
    assert val.classes == CLASSES
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for index in range(len(val)):
        x, label = val[index]
        rgb = (x * std + mean).mean(dim=(1, 2))
        assert rgb.argmax().item() == label  # class k is coloured with primary colour k


def test_eval_transform_is_deterministic_and_normalised(tmp_path):
    img = Image.new("RGB", (50, 40), (255, 0, 0))
    tf = EvalTransform(32, 36)
    a, b = tf(img), tf(img)
    assert a.shape == (3, 32, 32) and torch.equal(a, b)
    expected = (torch.tensor([1.0, 0.0, 0.0]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(a.mean(dim=(1, 2)), expected, atol=1e-5)
    root = write_tree(tmp_path)
    _, val = imagenet_datasets(root, image_size=32, resize_size=36)
    assert torch.equal(val[1][0], val[1][0])


def test_eval_transform_resizes_shorter_side_then_centre_crops():
    # A 4-pixel-wide white stripe in the centre of a 40x80 image survives the centre crop.
    img = Image.new("RGB", (80, 40), (0, 0, 0))
    for x in range(38, 42):
        for y in range(40):
            img.putpixel((x, y), (255, 255, 255))
    out = EvalTransform(16, 20)(img)  # resize to 40x20, crop the centre 16x16
    column_means = out[0].mean(dim=0)
    assert column_means[7:9].min() > column_means[0] + 1.0
    assert torch.allclose(column_means[0], column_means[15], atol=1e-4)


def test_train_transform_shape_and_seeded_randomness():
    img = Image.new("RGB", (50, 40), (200, 120, 40))
    for i in range(40):
        img.putpixel((i, i), (0, 0, 0))
    tf = TrainTransform(32)
    torch.manual_seed(0)
    a = tf(img)
    torch.manual_seed(0)
    b = tf(img)
    c = tf(img)
    assert a.shape == (3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)


def test_random_resized_crop_box_respects_scale_and_ratio():
    torch.manual_seed(0)
    for _ in range(200):
        left, top, w, h = random_resized_crop_box(50, 40, (0.08, 1.0), (3 / 4, 4 / 3))
        assert 0 <= left and left + w <= 50 and 0 <= top and top + h <= 40
        assert 0.08 * 2000 * 0.8 <= w * h <= 2000  # rounding slack on the area
        assert 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.25
    # Impossible ratios fall back to the largest centred crop with the nearest allowed ratio.
    assert random_resized_crop_box(100, 10, (0.9, 1.0), (1.0, 1.0)) == (45, 0, 10, 10)


def test_adjust_hue_rotates_colours():
    red = Image.new("RGB", (2, 2), (255, 0, 0))
    r, g, b = adjust_hue(red, 1 / 3).getpixel((0, 0))
    assert g > 240 and r < 15 and b < 15  # red + 120 degrees = green
    r, g, b = adjust_hue(red, 0.5).getpixel((0, 0))
    assert r < 15 and g > 240 and b > 240  # + 180 degrees = cyan
    assert adjust_hue(red, 0.0).getpixel((0, 0)) == (255, 0, 0)


def test_multi_worker_loader(tmp_path):
    root = write_tree(tmp_path)
    train, _, _ = imagenet_loaders(root, batch_size=4, workers=1, image_size=32, resize_size=36)
    assert train.persistent_workers
    assert sum(x.shape[0] for x, _ in train) == 12


def test_distributed_samplers(tmp_path):
    root = write_tree(tmp_path / "data")
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        train, val, _ = imagenet_loaders(root, batch_size=4, workers=0, distributed=True, image_size=32)
        assert isinstance(train.sampler, torch.utils.data.DistributedSampler)
        assert isinstance(val.sampler, torch.utils.data.DistributedSampler) and not val.sampler.shuffle
    finally:
        torch.distributed.destroy_process_group()
    with pytest.raises(GdasError, match="process group"):
        imagenet_loaders(root, batch_size=4, workers=0, distributed=True, image_size=32)


def test_missing_split_folder(tmp_path):
    root = write_tree(tmp_path)
    for path in sorted((root / "val").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "val").rmdir()
    with pytest.raises(GdasError, match="val is missing"):
        imagenet_loaders(root, batch_size=2, workers=0)
    with pytest.raises(GdasError, match="does not exist"):
        imagenet_loaders(tmp_path / "nowhere", batch_size=2, workers=0)


def test_class_folder_without_images(tmp_path):
    root = write_tree(tmp_path)
    for path in (root / "train" / CLASSES[1]).iterdir():
        path.unlink()
    (root / "train" / CLASSES[1] / "notes.txt").write_text("not an image")
    with pytest.raises(GdasError, match="has no images"):
        imagenet_loaders(root, batch_size=2, workers=0)


def test_split_without_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(GdasError, match="no class folders"):
        imagenet_loaders(tmp_path, batch_size=2, workers=0)


def test_class_folders_must_match(tmp_path):
    root = write_tree(tmp_path)
    (root / "val" / CLASSES[2]).rename(root / "val" / "n99999999")
    with pytest.raises(GdasError, match="class folders differ"):
        imagenet_loaders(root, batch_size=2, workers=0)


def test_unreadable_image(tmp_path):
    root = write_tree(tmp_path)
    bad = root / "val" / CLASSES[0] / "broken.JPEG"
    bad.write_bytes(b"not a jpeg")
    _, val = imagenet_datasets(root, image_size=32)
    index = [p for p, _ in val.samples].index(str(bad))
    with pytest.raises(GdasError, match="cannot read image"):
        val[index]


def test_missing_pillow_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(GdasError, match="pip install Pillow"):
        ImageFolderDataset(tmp_path, EvalTransform(32))


def test_torchvision_option_needs_torchvision(tmp_path, monkeypatch):
    root = write_tree(tmp_path)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(GdasError, match=r"gdas-nas\[vision\]"):
        imagenet.imagenet_loaders(root, batch_size=2, workers=0, use_torchvision=True)


def test_exif_orientation_and_16_bit_grey_are_read_as_the_folder_reader_reads_them(tmp_path):
    write_oriented_jpeg(tmp_path / "val" / "a" / "photo.jpg", halves(48, 32), 6)
    values = sixteen_bit_values(16)
    write_sixteen_bit(tmp_path / "val" / "b" / "scan", values)
    images = ImageFolderDataset(tmp_path / "val", transform=lambda img: np.asarray(img))
    photo, deep = images[0][0], images[1][0]
    assert photo.shape == (32, 48, 3)  # upright: landscape, as the EXIF orientation shows it
    assert photo[:, :20].mean() < 60 and photo[:, 28:].mean() > 190
    assert deep.shape == (16, 16, 3) and all(np.array_equal(deep[..., c], eight_bit_of(values)) for c in range(3))
