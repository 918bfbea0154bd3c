"""The final-network training config (the paper's CIFAR and ImageNet recipes) and its named presets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from gdas.configs.base import Presets, RunConfig, check, check_choice, meta, own_data_field, own_subset
from gdas.configs.runtime import validate_runtime

from gdas.data.images import IMAGE_DATASETS
from gdas.data.own import check_data_source
from gdas.spaces.module.factory import PREFIX as MODULE_PREFIX

TRAIN_DATASETS = IMAGE_DATASETS + ("imagenet",)
SPACES = ("darts", "nb201", "mobilenet")  # the image spaces whose final networks train here (and module:... paths)
SCHEDULES = ("cosine", "exp")
# The ImageNet stem divides the input by 8 and two reductions by 4 more: the auxiliary head needs 6x6 there.
MIN_IMAGENET_AUX_SIZE = 192
IMAGENET_SIZE = 224


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """Everything a final-network training run depends on; written to the run directory as config.json."""

    space: str = field(default="darts", metadata=meta(
        f"search space of the genotype's network: {', '.join(SPACES)} or {MODULE_PREFIX}package.module:Factory"))
    genotype: str = field(default="GDAS", metadata=meta(
        "cell to train: registry name (GDAS, GDAS_FRC, DARTS_V2, ...), genotype.json, or a search RUN_DIR"))
    dataset: str = field(default="cifar10", metadata=meta("dataset to train on", TRAIN_DATASETS))
    data_dir: Optional[str] = field(default=None, metadata=meta(
        "folder holding the dataset files (ImageNet: the folder with train/ and val/)"))
    train_subset: Optional[int] = field(default=None, metadata=meta(
        "seeded random subset of this many training images (tensor datasets); a preset's subset belongs to its "
        "own dataset: on other data every image is used unless this is given"))
    test_subset: Optional[int] = field(default=None, metadata=meta(
        "seeded random subset of this many test images (tensor datasets); as --train-subset"))
    valid_portion: Optional[float] = field(default=None, metadata=meta(
        "hold out this share of the training images (seeded, split.json) to pick best.pt on; tensor datasets "
        "(default none: no validation part, no best.pt)"))
    synthetic_train: int = field(default=256, metadata=meta("training images of the synthetic dataset"))
    synthetic_test: int = field(default=64, metadata=meta("test images of the synthetic dataset"))
    image_size: Optional[int] = own_data_field(
        "image_size", help_prefix="ImageNet crop size (random-resized / centre crop; default 224); ")
    channels: Optional[int] = own_data_field("channels")
    skip_bad_images: bool = own_data_field("skip_bad_images", False)
    stream: Optional[bool] = own_data_field("stream")
    workers: int = field(default=8, metadata=meta("ImageNet data-loader worker processes"))
    use_torchvision: bool = field(default=False, metadata=meta("ImageNet transforms from torchvision"))
    C: int = field(default=36, metadata=meta("initial channels of the network"))
    N: int = field(default=6, metadata=meta("normal cells per block (3N+2 cells)"))
    epochs: int = field(default=600, metadata=meta("training epochs"))
    batch_size: int = field(default=96, metadata=meta("batch per step (global, over all ranks)",
                                                      aliases=("batch",)))
    eval_batch_size: Optional[int] = field(default=None, metadata=meta("test batch (default: --batch-size)"))
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
    crop_padding: int = field(default=4, metadata=meta("random crop with this zero padding (tensor datasets)"))
    flip: bool = True
    cutout: int = field(default=16, metadata=meta("cutout square side (0 disables; tensor datasets)"))
    drop_path_prob: float = field(default=0.2, metadata=meta(
        "drop-path probability reached at the last epoch (ramped linearly from 0)"))
    auxiliary: bool = field(default=True, metadata=meta("auxiliary head after the second reduction cell"))
    auxiliary_weight: float = field(default=0.4, metadata=meta("weight of the auxiliary loss"))
    label_smoothing: float = field(default=0.0, metadata=meta("label smoothing of the training loss"))
    eval_every: int = field(default=1, metadata=meta(
        "evaluate on the validation part and the test split every K epochs (and the last)"))
    seed: int = 0
    device: str = field(default="auto", metadata=meta("auto, cpu, cuda or cuda:N"))
    amp: str = field(default="none", metadata=meta("mixed precision on CUDA", ("none", "bf16")))
    channels_last: Optional[bool] = field(default=None, metadata=meta(
        "channels_last (NHWC) memory format for model and batches (default auto: on on the CPU, off on CUDA)"))
    threads: Optional[int] = field(default=None, metadata=meta("CPU threads (torch.set_num_threads)"))

    @property
    def imagenet(self) -> bool:
        return self.dataset == "imagenet"

    @property
    def imagenet_size(self) -> int:
        """The ImageNet crop size (--image-size, default 224)."""
        return IMAGENET_SIZE if self.image_size is None else self.image_size

    def fit_to_given(self, preset: "TrainConfig") -> "TrainConfig":
        return own_subset(super().fit_to_given(preset), preset, "train_subset", "test_subset")

    def validate(self) -> None:
        if not self.space.startswith(MODULE_PREFIX):
            check_choice(self.space, SPACES, "--space")
        check_choice(self.dataset, TRAIN_DATASETS, "--dataset")
        if not self.imagenet:
            check_data_source(self)
        check_choice(self.schedule, SCHEDULES, "--schedule")
        for name in ("C", "N", "epochs", "batch_size", "eval_every"):
            value = getattr(self, name)
            check(value >= 1, f"{_opt(name)} must be at least 1, got {value}")
        check(self.space != "darts" or self.C % 2 == 0, f"--C must be even (factorized reductions halve it), got {self.C}")
        for name in ("eval_batch_size", "steps_per_epoch", "train_subset", "test_subset"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"{_opt(name)} must be at least 1, got {value}")
        check(self.valid_portion is None or 0 < self.valid_portion < 1,
              f"--valid-portion must be in (0, 1), or none for no validation part; got {self.valid_portion}")
        check(self.lr > 0 and 0 <= self.lr_min <= self.lr,
              f"need --lr > 0 and 0 <= --lr-min <= --lr, got {self.lr} and {self.lr_min}")
        check(0 < self.lr_gamma <= 1, f"--lr-gamma must be in (0, 1], got {self.lr_gamma}")
        check(self.momentum >= 0 and self.weight_decay >= 0 and self.grad_clip >= 0,
              "--momentum, --weight-decay and --grad-clip must be >= 0")
        check(not self.nesterov or self.momentum > 0, "--nesterov needs --momentum > 0")
        check(0 <= self.drop_path_prob < 1, f"--drop-path-prob must be in [0, 1), got {self.drop_path_prob}")
        check(0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        check(self.auxiliary_weight >= 0, f"--auxiliary-weight must be >= 0, got {self.auxiliary_weight}")
        check(self.crop_padding >= 0 and self.cutout >= 0, "--crop-padding and --cutout must be >= 0")
        check(self.synthetic_train >= 1 and self.synthetic_test >= 1,
              "--synthetic-train and --synthetic-test must be at least 1")
        check(self.space != "nb201" or not (self.auxiliary or self.imagenet),
              "NAS-Bench-201 networks have no auxiliary head and no ImageNet layout; pass --no-auxiliary and an "
              "image dataset such as cifar10 or imagenet16-120 (the nb201-* presets do)")
        if self.imagenet:
            check(self.data_dir is not None, "--dataset imagenet needs --data-dir DIR (the folder with train/ and "
                                             "val/, one sub-folder of JPEGs per class)")
            check(self.train_subset is None and self.test_subset is None,
                  "--train-subset/--test-subset work on tensor datasets; for ImageNet cap --steps-per-epoch")
            check(self.valid_portion is None, "--valid-portion splits tensor datasets; ImageNet folders are not "
                                              "supported, drop it (the run then keeps its last weights)")
            check(self.workers >= 0, f"--workers must be >= 0, got {self.workers}")
            check(self.imagenet_size >= 32, f"--image-size must be at least 32, got {self.image_size}")
            check(not self.auxiliary or self.imagenet_size >= MIN_IMAGENET_AUX_SIZE,
                  f"the auxiliary head needs --image-size >= {MIN_IMAGENET_AUX_SIZE} on ImageNet (a 6x6 map after "
                  f"the second reduction), got {self.image_size}; raise it or pass --no-auxiliary")
        validate_runtime(self.device, self.amp, self.threads)


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


# Paper (mobile setting): C=50, N=4, 250 epochs, batch 128, nesterov SGD 0.1 x0.97 per epoch, wd 3e-5,
# label smoothing 0.1, aux 0.4, clip 5; random-resized crop, flip and colour jitter.
_IMAGENET = TrainConfig(dataset="imagenet", C=50, N=4, epochs=250, batch_size=128, lr=0.1, schedule="exp",
                        lr_gamma=0.97, nesterov=True, weight_decay=3e-5, label_smoothing=0.1, drop_path_prob=0.0,
                        cutout=0, crop_padding=0)
_NB201_TRAIN = TrainConfig(space="nb201", genotype="nb201-best-cifar100", C=16, N=5, epochs=200, batch_size=256,
                           lr=0.1, lr_min=0.0, nesterov=True, weight_decay=5e-4, grad_clip=0.0, cutout=0,
                           drop_path_prob=0.0, auxiliary=False)
# 200 epochs on 32 px images at MobileNetV2 1.0's widths (C=32), four blocks per stage; SGD 0.05 cosine, wd 4e-5.
_MOBILENET_TRAIN = TrainConfig(space="mobilenet", genotype="mobilenet-v2", C=32, N=4, epochs=200, batch_size=128,
                               lr=0.05, weight_decay=4e-5, drop_path_prob=0.0, auxiliary=False)
TRAIN_PRESETS: dict[str, TrainConfig] = {
    # Paper: C=36, N=6, 600 epochs, batch 96, SGD 0.025 cosine to 0, cutout 16, drop-path 0.2, aux 0.4
    # (the defaults of the fields).
    "cifar10": TrainConfig(),
    "cifar100": TrainConfig(dataset="cifar100"),
    "imagenet": _IMAGENET,
    # The FRC cell on ImageNet uses C=52 in the paper (2C must split into the fixed cell's 8 groups).
    "imagenet-frc": replace(_IMAGENET, genotype="GDAS_FRC", C=52),
    # The CPU demo: train a cell (e.g. --genotype runs/demo) in a few minutes, on 5,000 Fashion-MNIST images
    # measured on 2,000 test images (a preset's subsets belong to its dataset: other data is used whole).
    "demo": TrainConfig(dataset="fashion-mnist", C=8, N=1, epochs=5, batch_size=64, lr=0.05,
                        train_subset=5000, test_subset=2000, crop_padding=2, cutout=0,
                        drop_path_prob=0.1, eval_batch_size=250, channels_last=True),
    # NAS-Bench-201's 200-epoch recipe: nesterov SGD 0.1 cosine to 0, wd 5e-4, batch 256, crop + flip; C=16, N=5.
    "nb201-cifar10": _NB201_TRAIN,
    "nb201-cifar100": replace(_NB201_TRAIN, dataset="cifar100"),
    "nb201-imagenet16": replace(_NB201_TRAIN, dataset="imagenet16-120", crop_padding=2),
    # The NAS-Bench-201 CPU demo: train a cell (e.g. --genotype runs/nb201-demo) as the darts demo does.
    "nb201-demo": replace(_NB201_TRAIN, dataset="fashion-mnist", C=8, N=1, epochs=5, batch_size=64, lr=0.05,
                          train_subset=5000, test_subset=2000, crop_padding=2, eval_batch_size=250,
                          channels_last=True),
    "nb201-smoke": replace(_NB201_TRAIN, dataset="synthetic", synthetic_train=64, synthetic_test=32, C=8, N=1,
                           epochs=2, batch_size=16),
    # The MobileNet-style space (module spaces on images train with these too): no auxiliary head or drop-path.
    # ImageNet: MobileNetV2's recipe (300 epochs, SGD 0.045 x 0.98 per epoch, wd 4e-5, batch 256).
    "mobilenet-imagenet": replace(_MOBILENET_TRAIN, dataset="imagenet", epochs=300, batch_size=256, lr=0.045,
                                  schedule="exp", lr_gamma=0.98, cutout=0, workers=16),
    "mobilenet-cifar10": _MOBILENET_TRAIN,
    "mobilenet-demo": replace(_MOBILENET_TRAIN, dataset="fashion-mnist", C=8, N=2, epochs=5, batch_size=64,
                              train_subset=5000, test_subset=2000, crop_padding=2, cutout=0, eval_batch_size=250,
                              channels_last=True),
    "mobilenet-smoke": replace(_MOBILENET_TRAIN, dataset="synthetic", synthetic_train=64, synthetic_test=32, C=8,
                               N=2, epochs=2, batch_size=16),
    # Seconds: for tests and for checking an installation (every part of the recipe switched on).
    "smoke": TrainConfig(dataset="synthetic", synthetic_train=64, synthetic_test=32, C=8, N=1, epochs=2,
                         batch_size=16, label_smoothing=0.1, cutout=8),
}
# Other names of presets, as for the search presets.
TRAIN_ALIASES: dict[str, str] = {"paper": "cifar10", "nb201-paper": "nb201-cifar10", "mobilenet-paper": "mobilenet-cifar10",
                                 "fashion-mnist": "demo", "nb201-fashion-mnist": "nb201-demo"}
# `gdas train` and `gdas.train` start from the CPU demo (its counterpart in the genotype's space).
TRAIN_TABLE = Presets(TRAIN_PRESETS, "demo", TRAIN_ALIASES)


def final_size(space: str, dataset: str, fixed_reduction: bool = False) -> tuple[int, int]:
    """(C, N) of the paper's training preset for this space and dataset (CIFAR-10's for the other image sets:
    Fashion-MNIST, synthetic, a user's folder or npz data), the size `gdas info` and `--cost` count at."""
    if space == "nb201":
        preset = TRAIN_PRESETS["nb201-cifar10"]
    elif space == "mobilenet" or space.startswith(MODULE_PREFIX):
        preset = TRAIN_PRESETS["mobilenet-imagenet" if dataset == "imagenet" else "mobilenet-cifar10"]
    elif dataset == "imagenet":
        preset = TRAIN_PRESETS["imagenet-frc" if fixed_reduction else "imagenet"]
    else:
        preset = TRAIN_PRESETS.get(dataset if dataset.startswith("cifar") else "cifar10", TRAIN_PRESETS["cifar10"])
    return preset.C, preset.N
