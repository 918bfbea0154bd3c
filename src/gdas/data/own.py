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
    (e.g. train_images=...). `data` is an ImageDataset or a training run's batch source."""
    return {"dataset": cfg.dataset, "data_dir": cfg.data_dir, "num_classes": data.num_classes,
            "channels": data.channels, "image_size": data.image_size, **counts, "mean": list(data.mean),
            "std": list(data.std)}


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
