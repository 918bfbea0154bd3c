"""Configs of module spaces on a user's tensors: the search (Algorithm 1's options, neutral for data that are not
images) and the training of a frozen model, with their named presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from gdas.configs.algorithm import PAPER_A_STEPS, SearchBase
from gdas.configs.base import Presets, RunConfig, check, check_choice, meta
from gdas.configs.runtime import validate_runtime
from gdas.configs.search import SELECT_BY
from gdas.configs.train import SCHEDULES
from gdas.errors import GdasError
from gdas.objective import METRIC_MODES
from gdas.spaces import get_space
from gdas.spaces.module.factory import PREFIX as MODULE_PREFIX
from gdas.spaces.module.factory import load as load_factory

DATA_KINDS = ("tensors", "dataset", "loaders")  # what a run on tensors read: (x, y), a Dataset, two DataLoaders
SEARCH_KIND, TRAIN_KIND = "search-tensors", "train-tensors"


def check_module_space(space: str) -> None:
    """A run on tensors searches or trains a module space (a registered one or module:package.module:Factory)."""
    if space.startswith(MODULE_PREFIX):
        load_factory(space)  # a path that names nothing fails now, before any data is read
    found = get_space(space)
    check(found.genotype_kind == "module",
          f"space {space!r} searches cells on images; a model of your own on tensors is a module space: pass the "
          "module class or factory (space=Net), module:package.module:Factory, or mobilenet")


@dataclass(frozen=True)
class TensorSearchConfig(SearchBase):
    """A search of a module space on tensors, a Dataset or two DataLoaders, with the user's loss: written to the run
    directory as config.json. Neutral for data that are not images: no augmentation, no memory-format change, no
    warm-up."""

    KIND: ClassVar[str] = SEARCH_KIND

    space: str = field(default="mobilenet", metadata=meta(
        "the module space: a registered one (mobilenet) or module:package.module:Factory"))
    data: str = field(default="tensors", metadata=meta("what the run reads (recorded)", DATA_KINDS))
    loss: str = field(default="cross-entropy", metadata=meta("the loss's name (recorded; gdas.search(loss=fn))"))
    metric: Optional[str] = field(default="accuracy", metadata=meta(
        "the metric's name (recorded; gdas.search(metric=fn)); none: selection and reports use the loss"))
    metric_mode: str = field(default="higher", metadata=meta("whether a higher or a lower metric is better",
                                                             METRIC_MODES))
    epochs: int = field(default=30, metadata=meta("search epochs"))
    channels_last: Optional[bool] = field(default=False, metadata=meta(
        "channels_last (NHWC) memory format of the model and batches (4-D inputs only)"))
    train_portion: float = field(default=0.5, metadata=meta(
        "share of the samples used as D_T (the rest is D_V); not with two DataLoaders"))
    split_seed: Optional[int] = field(default=None, metadata=meta(
        "seed of the D_T/D_V split; default: --seed for one run, the first seed's with --seeds"))
    select_by: str = field(default="retrain", metadata=meta(
        "with several --seeds, keep the choices of the best retrain (the frozen model trained on D_T for "
        "--select-epochs with the search's loss, measured on D_V) or of the best final search metric on D_V",
        SELECT_BY))
    select_epochs: int = field(default=10, metadata=meta("epochs of each seed's retrain"))

    @property
    def data_seed(self) -> int:
        return self.seed if self.split_seed is None else self.split_seed

    def validate(self) -> None:
        check_module_space(self.space)
        super().validate()
        check_choice(self.data, DATA_KINDS, "--data")
        check_choice(self.metric_mode, METRIC_MODES, "--metric-mode")
        check_choice(self.select_by, SELECT_BY, "--select-by")
        check(self.select_epochs >= 1, f"--select-epochs must be at least 1, got {self.select_epochs}")
        check(0.0 < self.train_portion < 1.0, f"--train-portion must be in (0, 1), got {self.train_portion}")
        check(not self.random_baseline, "random_baseline= trains random choice maps as image classifiers; a search "
                                        "on tensors with its own loss has no such retrain yet: drop it")


@dataclass(frozen=True)
class TensorTrainConfig(RunConfig):
    """Training a frozen model (a module space's choices, or any plain module) on tensors with the user's loss:
    SGD with a cosine schedule; config.json of a `gdas.train` run on tensors."""

    KIND: ClassVar[str] = TRAIN_KIND

    space: Optional[str] = field(default=None, metadata=meta(
        "the module space whose choice map is trained (none: a plain module given to gdas.train)"))
    genotype: Optional[str] = field(default=None, metadata=meta("the choice map (JSON) trained"))
    weights: Optional[str] = field(default=None, metadata=meta(
        "a search folder whose supernet weights of the chosen candidates the model starts from (none: fresh)"))
    data: str = field(default="tensors", metadata=meta("what the run reads (recorded)", DATA_KINDS))
    loss: str = "cross-entropy"
    metric: Optional[str] = "accuracy"
    metric_mode: str = field(default="higher", metadata=meta("whether a higher or lower metric is better",
                                                             METRIC_MODES))
    epochs: int = field(default=30, metadata=meta("training epochs"))
    batch_size: int = field(default=64, metadata=meta("batch per step (global, over all ranks)", aliases=("batch",)))
    steps_per_epoch: Optional[int] = field(default=None, metadata=meta("cap on training steps per epoch"))
    lr: float = field(default=0.025, metadata=meta("initial SGD learning rate"))
    lr_min: float = field(default=0.0, metadata=meta("learning rate at the end of the cosine schedule"))
    schedule: str = field(default="cosine", metadata=meta(
        "cosine: lr -> lr-min over the epochs; exp: lr x lr-gamma per epoch", SCHEDULES))
    lr_gamma: float = field(default=0.97, metadata=meta("per-epoch decay factor of the exp schedule"))
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4
    grad_clip: float = field(default=5.0, metadata=meta("gradient-norm clip (0 disables)"))
    valid_portion: Optional[float] = field(default=None, metadata=meta(
        "hold out this share of the training samples (seeded) to pick best.pt on (default: none)"))
    seed: int = 0
    device: str = field(default="auto", metadata=meta("auto, cpu, cuda or cuda:N"))
    amp: str = field(default="none", metadata=meta("mixed precision on CUDA", ("none", "bf16")))
    threads: Optional[int] = field(default=None, metadata=meta("CPU threads (torch.set_num_threads)"))

    def validate(self) -> None:
        if self.space is not None:
            check_module_space(self.space)
        check_choice(self.data, DATA_KINDS, "--data")
        check_choice(self.metric_mode, METRIC_MODES, "--metric-mode")
        check_choice(self.schedule, SCHEDULES, "--schedule")
        check(self.epochs >= 1 and self.batch_size >= 1, f"--epochs and --batch-size must be at least 1, got "
                                                          f"{self.epochs} and {self.batch_size}")
        check(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "--steps-per-epoch must be >= 1")
        check(self.lr > 0 and self.lr_min >= 0, "--lr must be > 0 and --lr-min >= 0")
        check(self.valid_portion is None or 0.0 < self.valid_portion < 1.0,
              f"--valid-portion must be in (0, 1), got {self.valid_portion}")
        check(not self.nesterov or self.momentum > 0, "--nesterov needs --momentum > 0")
        validate_runtime(self.device, self.amp, self.threads)


TENSOR_SEARCH_PRESETS: dict[str, TensorSearchConfig] = {
    # A search on your own tensors: Algorithm 1 with SPEC's optimizers over 30 epochs, nothing image-specific; the
    # paper's A lr, 3e-4 for its 93,600 A steps, scaled to the A steps your data give (at most 0.1).
    "default": TensorSearchConfig(a_lr_steps=PAPER_A_STEPS),
    # Seconds: for tests and for checking a space.
    "smoke": TensorSearchConfig(epochs=2, batch_size=16, steps_per_epoch=4, select_epochs=1),
}
TENSOR_SEARCH_TABLE = Presets(TENSOR_SEARCH_PRESETS, "default", {"demo": "default"})
TENSOR_TRAIN_PRESETS: dict[str, TensorTrainConfig] = {
    "default": TensorTrainConfig(),
    "smoke": TensorTrainConfig(epochs=2, batch_size=16, steps_per_epoch=4),
}
TENSOR_TRAIN_TABLE = Presets(TENSOR_TRAIN_PRESETS, "default", {"demo": "default"})


def retrain_config(cfg: TensorSearchConfig, genotype: str) -> TensorTrainConfig:
    """A seed's retrain: the frozen model trained on D_T with the search's loss, batch and W optimizer for
    --select-epochs, measured on D_V."""
    if cfg.select_epochs < 1:
        raise GdasError(f"--select-epochs must be at least 1, got {cfg.select_epochs}")
    return TensorTrainConfig(preset=f"select-{cfg.preset}", space=cfg.space, genotype=genotype, data=cfg.data,
                             loss=cfg.loss, metric=cfg.metric, metric_mode=cfg.metric_mode, epochs=cfg.select_epochs,
                             batch_size=cfg.batch_size, steps_per_epoch=cfg.steps_per_epoch, lr=cfg.w_lr,
                             lr_min=cfg.w_lr_min or 0.0, momentum=cfg.w_momentum, nesterov=cfg.w_nesterov,
                             weight_decay=cfg.w_weight_decay, grad_clip=cfg.grad_clip, seed=cfg.seed,
                             device=cfg.device, amp=cfg.amp, threads=cfg.threads)


__all__ = ["DATA_KINDS", "TENSOR_SEARCH_PRESETS", "TENSOR_SEARCH_TABLE", "TENSOR_TRAIN_PRESETS", "TENSOR_TRAIN_TABLE",
           "TensorSearchConfig", "TensorTrainConfig", "retrain_config"]
