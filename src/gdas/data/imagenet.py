"""ImageNet folder reader: `<root>/{train,val}/<class>/*.JPEG` via Pillow, paper transforms, loaders."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from gdas.data.decode import open_image, resize_crop
from gdas.errors import GdasError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png"})
Transform = Callable[[Any], torch.Tensor]


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise GdasError("reading image folders needs Pillow, a dependency of gdas-nas: pip install Pillow") from None
    return Image


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


def random_resized_crop_box(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float]
                            ) -> tuple[int, int, int, int]:
    """(left, top, w, h) of a random crop covering `scale` of the area with aspect ratio in `ratio`."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(*scale)
        aspect = math.exp(_uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = int(torch.randint(0, width - w + 1, ()).item())
            top = int(torch.randint(0, height - h + 1, ()).item())
            return left, top, w, h
    # Fallback: the largest centred crop whose aspect ratio lies in `ratio`.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def adjust_hue(img: Any, shift: float) -> Any:
    """Rotate the hue of an RGB PIL image by `shift` turns (in [-0.5, 0.5]) through HSV."""
    Image = _pil()
    h, s, v = img.convert("HSV").split()
    offset = int(round(shift * 255)) % 256
    h = h.point(lambda p: (p + offset) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def to_normalized_tensor(img: Any) -> torch.Tensor:
    """RGB PIL image -> float tensor (3, H, W) in [0, 1] normalised with the ImageNet mean/std."""
    data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    x = data.view(img.height, img.width, 3).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return x.sub_(mean).div_(std)


class TrainTransform:
    """RandomResizedCrop(size, scale (0.08, 1), ratio (3/4, 4/3)), flip, colour jitter, normalise."""

    def __init__(self, size: int = 224, jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.2),
                 scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        self.size, self.jitter, self.scale, self.ratio = size, jitter, scale, ratio

    def _color_jitter(self, img: Any) -> Any:
        from PIL import ImageEnhance

        brightness, contrast, saturation, hue = self.jitter
        steps: list[Callable[[Any], Any]] = []
        for amount, enhancer in ((brightness, ImageEnhance.Brightness), (contrast, ImageEnhance.Contrast),
                                 (saturation, ImageEnhance.Color)):
            if amount > 0:
                factor = _uniform(max(0.0, 1 - amount), 1 + amount)
                steps.append(lambda im, e=enhancer, f=factor: e(im).enhance(f))
        if hue > 0:
            shift = _uniform(-hue, hue)
            steps.append(lambda im, s=shift: adjust_hue(im, s))
        for index in torch.randperm(len(steps)).tolist():  # random order, as is customary
            img = steps[index](img)
        return img

    def __call__(self, img: Any) -> torch.Tensor:
        Image = _pil()
        left, top, w, h = random_resized_crop_box(img.width, img.height, self.scale, self.ratio)
        img = img.resize((self.size, self.size), Image.BILINEAR, box=(left, top, left + w, top + h))
        if torch.rand(()).item() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return to_normalized_tensor(self._color_jitter(img))


class EvalTransform:
    """Resize the shorter side to `resize`, centre-crop `size`, normalise (deterministic)."""

    def __init__(self, size: int = 224, resize: Optional[int] = None):
        self.size = size
        self.resize = resize if resize is not None else int(size / 0.875)  # 224 -> 256

    def __call__(self, img: Any) -> torch.Tensor:
        return to_normalized_tensor(resize_crop(img, self.size, self.resize))


def _torchvision_transforms(size: int, resize: int) -> tuple[Transform, Transform]:
    try:
        from torchvision import transforms as T
    except ImportError:
        raise GdasError("use_torchvision needs torchvision: pip install 'gdas-nas[vision]', or leave it off") from None
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(),
                       T.ColorJitter(0.4, 0.4, 0.4, 0.2), T.ToTensor(), normalize])
    val = T.Compose([T.Resize(resize), T.CenterCrop(size), T.ToTensor(), normalize])
    return train, val


def find_classes(split_dir: Path) -> list[str]:
    """Sorted class-folder names of one split; the index in this list is the label."""
    if not split_dir.is_dir():
        raise GdasError(f"ImageNet folder {split_dir} is missing; expected <root>/train/<class>/*.JPEG "
                        "and <root>/val/<class>/*.JPEG")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise GdasError(f"ImageNet folder {split_dir} has no class folders; put each class's images "
                        "in <split>/<class>/")
    return classes


def scan_images(split_dir: Path, classes: list[str]) -> list[tuple[str, int]]:
    """(path, label) for every image of every class folder, in a sorted, reproducible order."""
    samples = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (split_dir / name).iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise GdasError(f"class folder {split_dir / name} has no images (.JPEG/.jpg/.png); add images "
                            "or remove the folder")
        samples.extend((str(p), label) for p in files)
    return samples


class ImageFolderDataset(Dataset):
    """Images of `<split_dir>/<class>/` decoded with Pillow as RGB, labelled by sorted class name."""

    def __init__(self, split_dir: str | Path, transform: Transform, classes: Optional[list[str]] = None):
        _pil()
        self.root = Path(split_dir)
        self.classes = classes if classes is not None else find_classes(self.root)
        self.samples = scan_images(self.root, self.classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            rgb = open_image(path).convert("RGB")  # upright by its EXIF orientation; 16-bit grey scaled
        except (OSError, ValueError) as exc:
            raise GdasError(f"cannot read image {path} ({exc}); replace or remove the file") from None
        return self.transform(rgb), label


def imagenet_datasets(root: str | Path, image_size: int = 224, resize_size: Optional[int] = None,
                      use_torchvision: bool = False) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """Train and val datasets of an ImageNet-layout folder; checks both splits share the same classes."""
    root = Path(root)
    if not root.is_dir():
        raise GdasError(f"ImageNet root {root} does not exist; pass the folder holding train/ and val/")
    train_classes, val_classes = find_classes(root / "train"), find_classes(root / "val")
    if train_classes != val_classes:
        only_train = sorted(set(train_classes) - set(val_classes))[:3]
        only_val = sorted(set(val_classes) - set(train_classes))[:3]
        raise GdasError(f"train/ and val/ class folders differ (only in train: {only_train}, only in val: "
                        f"{only_val}); both splits need the same class folders")
    resize = resize_size if resize_size is not None else int(image_size / 0.875)
    if use_torchvision:
        train_tf, val_tf = _torchvision_transforms(image_size, resize)
    else:
        train_tf, val_tf = TrainTransform(image_size), EvalTransform(image_size, resize)
    return (ImageFolderDataset(root / "train", train_tf, train_classes),
            ImageFolderDataset(root / "val", val_tf, val_classes))


def imagenet_loaders(root: str | Path, batch_size: int, workers: int, distributed: bool = False,
                     image_size: int = 224, *, resize_size: Optional[int] = None, use_torchvision: bool = False
                     ) -> tuple[DataLoader, DataLoader, int]:
    """(train loader, val loader, number of classes) of an ImageNet-layout folder.

    With `distributed`, both loaders use a DistributedSampler of the current process group (call
    `train_loader.sampler.set_epoch(epoch)` each epoch); otherwise the train loader shuffles.
    """
    if batch_size < 1 or workers < 0:
        raise GdasError(f"batch size must be >= 1 and workers >= 0, got {batch_size} and {workers}")
    train_set, val_set = imagenet_datasets(root, image_size, resize_size, use_torchvision)
    train_sampler = val_sampler = None
    if distributed:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise GdasError("distributed loading needs an initialised process group; launch with torchrun")
        train_sampler = DistributedSampler(train_set, shuffle=True)
        val_sampler = DistributedSampler(val_set, shuffle=False)
    common: dict[str, Any] = dict(batch_size=batch_size, num_workers=workers,
                                  pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)
    train = DataLoader(train_set, shuffle=train_sampler is None, sampler=train_sampler, drop_last=False, **common)
    val = DataLoader(val_set, shuffle=False, sampler=val_sampler, **common)
    return train, val, len(train_set.classes)
