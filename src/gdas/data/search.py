"""The image side of a search: the seeded D_T / D_V split, on-device augmented batches, cross-entropy and accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gdas.configs import base as cfgbase
from gdas.configs.runtime import autocast, environment
from gdas.data.augment import BatchAugment, batch_indices
from gdas.data.stream import BatchReader, take
from gdas.data.images import ImageDataset, load_image_dataset, seeded_split
from gdas.data.own import class_names, count_words, data_options, data_record, image_counts
from gdas.spaces import get_space
from gdas.spaces.module.factory import PREFIX as MODULE_PREFIX
from gdas.engine import distributed as dist
from gdas.engine import rundir as files
from gdas.engine.rundir import RunDir
from gdas.errors import GdasError


def split_indices(n: int, train_portion: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random split of n training images into D_T and D_V."""
    return seeded_split(n, train_portion, seed, "--train-portion")


def epoch_steps(cfg: Any, d_t: int, d_v: int) -> int:
    """W / A iterations of an epoch on D_T / D_V of these sizes: whole batches of each, at most --steps-per-epoch."""
    return min(d_t // cfg.batch_size, d_v // cfg.batch_size, cfg.steps_per_epoch or 10 ** 12)


def loss_and_correct(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy (in float32 under autocast) and the number of correct predictions, both on the device."""
    return F.cross_entropy(logits.float(), y), (logits.argmax(1) == y).sum()


def load_search_data(cfg: Any) -> ImageDataset:
    """The training images of a search: the same ones for every seed that shares its split seed."""
    data = load_image_dataset(cfg.dataset, cfg.data_dir, synthetic_train=cfg.synthetic_train, seed=cfg.data_seed,
                              **data_options(cfg))
    if cfg.train_subset is not None and cfg.train_subset < len(data.train_y):
        data = data.subset(cfg.train_subset, None, torch.Generator().manual_seed(cfg.data_seed))
    return data


class ImageSearchData:
    """D_T / D_V batches of one image search (see `search.SearchData`): sums are (loss, correct) per step."""

    kind = "search"
    n_stats = 2
    unit = "images"

    def __init__(self, cfg: Any, data: ImageDataset, split: tuple[torch.Tensor, torch.Tensor], device: torch.device):
        self.cfg, self.device, self.ctx = cfg, device, dist.context()
        self.local_batch = dist.local_batch(cfg.batch_size, self.ctx)
        self.dataset_name = cfg.dataset
        self.data = data.to(device)
        self.num_classes, self.in_channels, self.image_size = data.num_classes, data.channels, data.image_size
        self.d_t, self.d_v = split
        self.augment = BatchAugment(data.mean, data.std, crop_padding=cfg.crop_padding, flip=cfg.flip,
                                    cutout=cfg.cutout, channels_last=cfg.channels_last)
        # Every rank draws the same batch order; the augmentation differs per rank.
        self.order_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 2 + self.ctx.rank)
        self.indices: dict[str, torch.Tensor] = {}
        self.readers: dict[str, BatchReader] = {}

    def describe(self) -> str:
        counts = image_counts(self.data)
        sized = "" if self.cfg.space.startswith(MODULE_PREFIX) else f" C={self.cfg.C} N={self.cfg.N}"  # a module's own size
        return (f"{self.dataset_name}{sized} on {count_words(counts, self.cfg, ('train',))}: "
                f"D_T {len(self.d_t):,}, D_V {len(self.d_v):,}")

    def _epoch_indices(self, split: torch.Tensor, batches: list[torch.Tensor], steps: int) -> torch.Tensor:
        """(steps, local batch) image indices of this rank for an epoch, moved to the device in one copy."""
        rows = split[torch.stack(batches[:steps])]
        return dist.shard(rows, self.ctx, dim=1).to(self.device)

    @property
    def steps_per_epoch(self) -> int:
        return epoch_steps(self.cfg, len(self.d_t), len(self.d_v))

    def start_epoch(self, epoch: int) -> int:
        cfg = self.cfg
        t_batches = batch_indices(len(self.d_t), cfg.batch_size, self.order_gen, drop_last=True)
        v_batches = batch_indices(len(self.d_v), cfg.batch_size, self.order_gen, drop_last=True)
        steps = self.steps_per_epoch
        if steps == 0:
            raise GdasError(f"--batch-size {cfg.batch_size} is larger than D_T/D_V ({len(self.d_t)}/"
                            f"{len(self.d_v)} images); lower it or use more data")
        self.indices = {"w": self._epoch_indices(self.d_t, t_batches, steps),
                        "a": self._epoch_indices(self.d_v, v_batches, steps)}
        self.readers = {phase: BatchReader(self.data.train_x, rows, self.device)
                        for phase, rows in self.indices.items()}
        return steps

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented images and labels at device-resident training-set `indices`."""
        return self.augment(take(self.data.train_x, indices, self.device), self.aug_gen), self.data.train_y[indices]

    def loss(self, model: torch.nn.Module, archs: list, phase: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.readers[phase][step], self.data.train_y[self.indices[phase][step]]
        return self.batch_loss(model, archs, self.augment(x, self.aug_gen), y)

    def batch_loss(self, model: torch.nn.Module, archs: list, x: torch.Tensor, y: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.cfg.amp):
            logits = model(x, archs)
        loss, correct = loss_and_correct(logits, y)
        return loss, torch.stack([loss.detach(), correct.float()])

    def progress(self, sums: list[float], steps_done: int) -> dict[str, float]:
        return {"loss": sums[0] / steps_done, "acc": sums[1] / (steps_done * self.local_batch),
                "per_s": 2 * steps_done * self.cfg.batch_size}

    def epoch_metrics(self, task: Any, epoch: int, totals: list[float], steps: int, elapsed: float
                      ) -> dict[str, Any]:
        n, world = steps * self.cfg.batch_size, self.ctx.world_size
        return {"train_loss": totals[0] / (steps * world), "train_acc": totals[1] / n,
                "valid_loss": totals[2] / (steps * world), "valid_acc": totals[3] / n,
                "images_per_s": 2 * n / elapsed}

    def summary(self, last: dict[str, Any]) -> dict[str, Any]:
        """The last epoch's accuracies, with the D_V images the valid one was measured on (whole batches of
        an epoch's A steps: the rest of D_V waits for another epoch)."""
        return {"final_valid_acc": last.get("valid_acc"), "final_train_acc": last.get("train_acc"),
                "valid_images": self.steps_per_epoch * self.cfg.batch_size}

    def state_dict(self) -> dict[str, Any]:
        return {"order_gen": self.order_gen.get_state(), "aug_gen": self.aug_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order_gen.set_state(state["order_gen"])
        self.aug_gen.set_state(state["aug_gen"])


def new_run_dir(out: Path, kind: str, cfg: Any, device: torch.device) -> RunDir:
    """Rank 0 creates the run folder; its refusal (an existing run) stops every rank."""
    ctx = dist.context()
    return dist.main_first(lambda: RunDir.create(out, kind, cfgbase.to_json(cfg), environment(device)), ctx,
                           lambda: RunDir(out, writer=False))


def fit_batch(cfg: Any, split: tuple[torch.Tensor, torch.Tensor], unit: str = "images") -> Any:
    """`cfg` with a preset's batch size lowered to what D_T and D_V hold (a whole number of `unit` per rank);
    a batch size the user gave that does not fit is a one-line error, before any run folder exists."""
    world = dist.context().world_size
    fits = min(len(split[0]), len(split[1])) // world * world
    held = f"{len(split[0]):,} / {len(split[1]):,} {unit}"
    if cfg.batch_size > fits > 0:
        cfg = cfgbase.adjust_unset(cfg, {"batch_size": fits}, f"D_T / D_V hold {held}")
    if cfg.batch_size > fits:
        raise GdasError(f"--batch-size {cfg.batch_size} is larger than D_T / D_V ({held}); lower it or use more data")
    return cfg


def open_image_search(cfg: Any, out: Path, device: torch.device, resume_run: bool) -> tuple[ImageSearchData, RunDir]:
    """The data and run directory of an image search: a new run writes its split, a resumed one reads it. The
    data's `cfg` is the run's config as the data fitted it (`fit_batch`, `SearchBase.fit_a_lr`)."""
    ctx = dist.context()
    dist.local_batch(cfg.batch_size, ctx)  # every rank fails alike on a batch that does not split
    if resume_run:
        run, _ = RunDir.open_existing(out, ImageSearchData.kind, writer=ctx.is_main)
    data = load_search_data(cfg)  # a missing dataset fails before a new run folder exists
    space = get_space(cfg.space)
    if space.check_input is not None:  # so do images the networks cannot read
        space.check_input(data.image_size, False)
    if space.check_model is not None and not resume_run:  # and a module space that cannot run on them
        space.check_model(cfg, data.num_classes, data.channels,
                          torch.zeros(2, data.channels, data.image_size, data.image_size))
    if resume_run:
        split_json = run.read_json(files.SPLIT)
        split = (torch.tensor(split_json["train"]), torch.tensor(split_json["valid"]))
    else:
        split = split_indices(len(data.train_y), cfg.train_portion, cfg.data_seed)
    # Fitted alike when a run starts and when it continues (a multi-seed folder resumes its seeds from its own
    # config): the same data give the same values, and a stored config is left as it is.
    cfg = fit_batch(cfg, split)
    cfg = cfg.fit_a_lr(epoch_steps(cfg, len(split[0]), len(split[1])))
    if not resume_run:
        cfg.check_cost_target((data.channels, data.image_size, data.num_classes))  # own data: its shape is known now
        run = new_run_dir(out, ImageSearchData.kind, cfg, device)
        run.write_json(files.SPLIT, {"seed": cfg.data_seed, "train": split[0].tolist(), "valid": split[1].tolist()})
        run.write_json(files.CLASSES, class_names(data))
        counts = {k: v for k, v in image_counts(data).items() if k.startswith("train")}  # the test images go unread
        run.write_json(files.DATA, data_record(data, cfg, **counts, d_t_images=len(split[0]),
                                               d_v_images=len(split[1])))
    return ImageSearchData(cfg, data, split, device), run
