"""Per-epoch batch streams of a final-network run: tensor datasets augmented on the device, or ImageNet loaders."""

from __future__ import annotations

from typing import Any, Iterator, Optional, Protocol

import torch

from gdas.engine import distributed as dist
from gdas.data.augment import BatchAugment, batch_indices, normalize
from gdas.data.dataset import ImageDataset
from gdas.data.own import image_counts
from gdas.data.stream import BatchReader

Batch = tuple[torch.Tensor, torch.Tensor]
Split = tuple[torch.Tensor, torch.Tensor]  # (training part, validation part): indices into the training images


class BatchSource(Protocol):
    """What training needs from its data: batches of this rank, and the state that makes them reproducible.

    `split` is None unless a validation part was held out of the training images; `has_test` is False when the
    data has no test images (their errors are then never measured). `counts` says how many images each part
    holds (`data.own.image_counts`, with "valid_images" for a validation part): data.json and the summary
    name them beside the errors measured on them.
    """

    num_classes: int
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    split: Optional[Split]
    has_test: bool
    counts: dict[str, int]

    def train_batches(self, epoch: int, max_steps: Optional[int]) -> tuple[int, Iterator[Batch]]: ...

    def valid_batches(self) -> Iterator[Batch]: ...

    def test_batches(self) -> Iterator[Batch]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TensorBatches:
    """An ImageDataset on the device: seeded shuffles, batched crop/flip/cutout on the device, sharded by rank.

    With a `split`, training draws from its training part only and `valid_batches` covers its validation part.
    A streamed folder's images stay on disk: the same batches, decoded by loader workers (`BatchReader`).
    """

    def __init__(self, data: ImageDataset, device: torch.device, ctx: dist.Context, *, batch_size: int,
                 eval_batch_size: int, seed: int, crop_padding: int, flip: bool, cutout: int,
                 channels_last: bool = False, split: Optional[Split] = None):
        self.device, self.ctx, self.split = device, ctx, split
        data = data.to(device)
        self.train_x, self.train_y = data.train_x, data.train_y
        self.valid_x, self.valid_y = data.train_x[:0], data.train_y[:0]
        if split is not None:
            train, valid = (part.to(device) for part in split)
            self.valid_x, self.valid_y = data.train_x[valid], data.train_y[valid]
            self.train_x, self.train_y = data.train_x[train], data.train_y[train]
        self.test_x, self.test_y = data.test_x, data.test_y
        self.has_test = len(data.test_y) > 0
        self.counts = image_counts(data) | ({"valid_images": len(split[1])} if split is not None else {})
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_classes, self.channels, self.image_size = data.num_classes, data.channels, data.image_size
        self.mean, self.std, self.classes = data.mean, data.std, data.classes
        self.channels_last = channels_last
        self.augment = BatchAugment(data.mean, data.std, crop_padding=crop_padding, flip=flip, cutout=cutout,
                                    channels_last=channels_last)
        # Every rank draws the same order (then takes its slice); augmentation differs per rank.
        self.order_gen = torch.Generator().manual_seed(seed + 1)
        self.aug_gen = torch.Generator(device=device).manual_seed(seed + 2 + ctx.rank)

    def train_batches(self, epoch: int, max_steps: Optional[int]) -> tuple[int, Iterator[Batch]]:
        # Whole batches only: a batch of one breaks batch norm on the 1x1 maps of the auxiliary head.
        batches = batch_indices(len(self.train_y), self.batch_size, self.order_gen, drop_last=True)
        batches = batches[:max_steps] if max_steps else batches
        if not batches:
            return 0, iter(())
        rows = dist.shard(torch.stack(batches), self.ctx, dim=1).to(self.device)  # one copy per epoch

        def generate() -> Iterator[Batch]:
            images = BatchReader(self.train_x, rows, self.device)
            for step, index in enumerate(rows):
                yield self.augment(images[step], self.aug_gen), self.train_y[index]

        return len(batches), generate()

    def _eval_batches(self, images: torch.Tensor, labels: torch.Tensor) -> Iterator[Batch]:
        batches = dist.shard(torch.arange(len(labels)), self.ctx).to(self.device).split(self.eval_batch_size)
        reader = BatchReader(images, batches, self.device)
        for step, index in enumerate(batches):
            yield normalize(reader[step], self.mean, self.std, self.channels_last), labels[index]

    def valid_batches(self) -> Iterator[Batch]:
        return self._eval_batches(self.valid_x, self.valid_y)

    def test_batches(self) -> Iterator[Batch]:
        return self._eval_batches(self.test_x, self.test_y)

    def state_dict(self) -> dict[str, Any]:
        return {"order_gen": self.order_gen.get_state(), "aug_gen": self.aug_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order_gen.set_state(state["order_gen"])
        self.aug_gen.set_state(state["aug_gen"])


class LoaderBatches:
    """ImageNet folders through multi-worker loaders (DistributedSampler under torchrun), moved to the device.

    Shuffling and the workers' transforms draw from the global torch RNG, which checkpoints restore.
    """

    def __init__(self, root: str, device: torch.device, ctx: dist.Context, *, batch_size: int, workers: int,
                 image_size: int, use_torchvision: bool = False, channels_last: bool = False):
        from gdas.data.imagenet import IMAGENET_MEAN, IMAGENET_STD, imagenet_loaders

        self.device, self.ctx, self.channels_last = device, ctx, channels_last
        self.split: Optional[Split] = None  # no validation part: TrainConfig refuses --valid-portion here
        self.has_test = True
        self.train, self.val, self.num_classes = imagenet_loaders(
            root, dist.local_batch(batch_size, ctx), workers, ctx.distributed, image_size,
            use_torchvision=use_torchvision)
        self.channels, self.image_size = 3, image_size
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.counts = {"train_images": len(self.train.dataset), "test_images": len(self.val.dataset)}

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return (x.to(self.device, non_blocking=True, memory_format=fmt), y.to(self.device, non_blocking=True))

    def train_batches(self, epoch: int, max_steps: Optional[int]) -> tuple[int, Iterator[Batch]]:
        sampler = self.train.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        steps = min(len(self.train), max_steps or len(self.train))

        def generate() -> Iterator[Batch]:
            for step, (x, y) in enumerate(self.train):
                if step == steps:
                    break
                if len(y) > 1:  # a last batch of one image breaks batch norm on 1x1 maps
                    yield self._to_device(x, y)

        return steps, generate()

    def valid_batches(self) -> Iterator[Batch]:
        return iter(())

    def test_batches(self) -> Iterator[Batch]:
        for x, y in self.val:
            yield self._to_device(x, y)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
