"""The input shape (channels, side, classes) a named dataset gives every space's networks, for sizes and costs."""

from __future__ import annotations

import operator
from typing import Any, Optional, Sequence

from gdas.data.own import USER_DATASETS  # their shape comes from the data (or the options of gdas info)
from gdas.errors import GdasError

Shape = tuple[int, int, int]  # (input channels, square side in pixels, classes)

DATASET_SHAPES: dict[str, Shape] = {
    "cifar10": (3, 32, 10),
    "cifar100": (3, 32, 100),
    "imagenet16-120": (3, 16, 120),
    "fashion-mnist": (1, 28, 10),
    "synthetic": (3, 32, 10),  # the synthetic dataset's defaults (data.images.load_image_dataset)
    "imagenet": (3, 224, 1000),  # the ImageNet-mobile layout's default crop
}


def check_shape(shape: Sequence[int]) -> Shape:
    """A (channels, side, classes) triple of positive whole numbers."""
    try:
        values = tuple(operator.index(v) for v in shape)  # NumPy and torch integers too
    except TypeError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise GdasError(f"an input shape is (channels, image side, classes), each at least 1; got {tuple(shape)}")
    channels, size, classes = values
    return channels, size, classes


def dataset_shape(dataset: str, shape: Optional[Sequence[int]] = None, *, network: str = "DARTS",
                  exclude: Sequence[str] = ()) -> Shape:
    """`shape` when given (any dataset the `network` reads, own data included), else the dataset's own shape.

    `exclude` names datasets the network has no layout for (NAS-Bench-201: imagenet).
    """
    key = dataset.lower()
    known = [name for name in (*DATASET_SHAPES, *USER_DATASETS) if name not in exclude]
    if key not in known:
        raise GdasError(f"unknown dataset {dataset!r} for the size of a {network} network; choose one of "
                        f"{', '.join(known)}")
    if shape is not None:
        return check_shape(tuple(shape))
    if key in USER_DATASETS:
        raise GdasError(f"{key} data has no fixed shape: size its network from the data, or give the shape "
                        "(gdas info --channels C --image-size S --num-classes K)")
    return DATASET_SHAPES[key]


def data_shape(data: Any) -> Shape:
    """The shape of a search's image data (`data.search.ImageSearchData`: the images actually read)."""
    return check_shape((data.in_channels, data.image_size, data.num_classes))
