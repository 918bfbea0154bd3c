"""Datasets held as tensors and their batched on-device augmentation."""

from gdas.data.augment import BatchAugment, batch_indices, normalize
from gdas.data.images import (FASHION_MNIST_DEFAULT_DIR, IMAGE_DATASETS, ImageDataset, channel_stats,
                              load_image_dataset)

__all__ = ["BatchAugment", "batch_indices", "normalize", "FASHION_MNIST_DEFAULT_DIR", "IMAGE_DATASETS",
           "ImageDataset", "channel_stats", "load_image_dataset"]
