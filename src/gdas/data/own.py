"""A user's own image data (`--dataset folder` / `npz`): the checks of the options that shape it, the loader
arguments a config sets, and what a run records of its data (classes.json, data.json)."""

from __future__ import annotations

from typing import Any

from gdas.errors import GdasError

USER_DATASETS = ("folder", "npz")  # a user's own data: --data-dir names it, the options below shape it


def class_names(data: Any) -> list[str]:
    """The names of the labels 0..K-1 (their numbers when the data has none)."""
    classes = getattr(data, "classes", None)
    return list(classes) if classes is not None else [str(k) for k in range(data.num_classes)]


def data_record(data: Any, cfg: Any, **counts: int) -> dict[str, Any]:
    """What a run writes to data.json: where its images came from, their shape and statistics, and `counts`
    (`image_counts`: how many images it read, and out of how many when a subset was drawn). `data` is an
    ImageDataset or a training run's batch source."""
    return {"dataset": cfg.dataset, "data_dir": cfg.data_dir, "num_classes": data.num_classes,
            "channels": data.channels, "image_size": data.image_size, **counts, "mean": list(data.mean),
            "std": list(data.std)}


def image_counts(data: Any) -> dict[str, int]:
    """The training and test images a run reads (an ImageDataset after any subset), and with a subset drawn,
    how many there were ("train_images_available", "test_images_available")."""
    counts = {"train_images": len(data.train_y), "test_images": len(data.test_y)}
    available = getattr(data, "available", None)
    for split, total in zip(("train", "test"), available or ()):
        if total > counts[f"{split}_images"]:
            counts[f"{split}_images_available"] = total
    return counts


def count_words(counts: dict[str, int], cfg: Any, splits: tuple[str, ...] = ("train", "test")) -> str:
    """The images a run reads in words, each subset with the option that drew it and who set it: "4,000 of
    60,000 training images (--train-subset 4000, preset demo)"."""
    words = []
    for split in splits:
        n, total = counts[f"{split}_images"], counts.get(f"{split}_images_available")
        name = "training" if split == "train" else split
        if total is None:
            words.append(f"{n:,} {name} images")
            continue
        field = f"{split}_subset"
        source = "given" if field in cfg.given else f"preset {cfg.preset}"
        words.append(f"{n:,} of {total:,} {name} images (--{split}-subset {getattr(cfg, field)}, {source})")
    return ", ".join(words)


def data_options(cfg: Any) -> dict[str, Any]:
    """The keyword arguments of `load_image_dataset` that a search or train config sets for a user's data."""
    return {"image_size": cfg.image_size, "channels": cfg.channels, "skip_bad_images": cfg.skip_bad_images,
            "stream": cfg.stream}


def check_data_source(cfg: Any) -> None:
    """Checks of the options that shape a user's own data (folder / npz), shared by search and train configs."""
    if cfg.image_size is not None and cfg.image_size < 1:
        raise GdasError(f"--image-size must be at least 1, got {cfg.image_size}")
    if cfg.channels not in (None, 1, 3):
        raise GdasError(f"--channels must be 1 (grayscale) or 3 (RGB), got {cfg.channels}")
    if cfg.dataset in USER_DATASETS and cfg.data_dir is None:
        what = "DIR with train/<class>/ image folders" if cfg.dataset == "folder" else "FILE.npz with x_train, y_train"
        raise GdasError(f"--dataset {cfg.dataset} needs --data-dir {what}")
