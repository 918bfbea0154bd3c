"""The CNN search config (Algorithm 1 with SPEC's defaults) and its named presets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from gdas.configs.base import check, check_choice, meta, own_data_field
from gdas.configs.runtime import validate_runtime
from gdas.errors import GdasError
from gdas.sampler import SAMPLE_SCOPES, SAMPLERS
from gdas.spaces import get_space
from gdas.spaces.darts.fixed_cell import FRC_GROUPS

from gdas.data.images import IMAGE_DATASETS
from gdas.data.own import check_data_source

IMAGE_SPACES = ("darts", "nb201")  # the registered spaces whose networks read images
SELECT_BY = ("retrain", "search")
COSTS = ("mult-adds", "params")  # what --cost counts (in millions, at the final network's size)


@dataclass(frozen=True)
class SearchConfig:
    """Everything a CNN search run depends on; written to the run directory as config.json."""

    preset: str = "custom"
    space: str = field(default="darts", metadata=meta("search space", IMAGE_SPACES))
    dataset: str = field(default="cifar10", metadata=meta("dataset to search on", IMAGE_DATASETS))
    data_dir: Optional[str] = field(default=None, metadata=meta("folder holding the dataset files"))
    train_subset: Optional[int] = field(default=None, metadata=meta(
        "use a seeded random subset of this many training images (before the D_T/D_V split)"))
    synthetic_train: int = field(default=512, metadata=meta("images of the synthetic dataset"))
    image_size: Optional[int] = own_data_field("image_size")
    channels: Optional[int] = own_data_field("channels")
    skip_bad_images: bool = own_data_field("skip_bad_images", False)
    stream: Optional[bool] = own_data_field("stream")
    C: int = field(default=16, metadata=meta("initial channels of the supernet"))
    N: int = field(default=2, metadata=meta("normal cells per block (3N+2 cells)"))
    steps: int = field(default=4, metadata=meta("intermediate nodes per cell (B; NAS-Bench-201: 3)"))
    frc: bool = field(default=False, metadata=meta("darts space: search the normal cell only; fixed reduction cell"))
    sampler: str = field(default="gdas", metadata=meta("edge mode: GDAS, GDAS without acceleration, DARTS",
                                                       SAMPLERS))
    sample_scope: str = field(default="network", metadata=meta(
        "one draw per cell type per forward (network) or one per cell (cell)", SAMPLE_SCOPES))
    reference_grad: bool = field(default=False, metadata=meta(
        "nb201 space, --sampler gdas: A's gradient as the reference's NB201 code computes it (each unsampled op's "
        "zero-valued straight-through weight is added to the edge, so it gets the edge output's gradient, summed); "
        "default off: only the sampled op's weight gets a gradient, the paper's estimator (and the reference's "
        "DARTS-space code)"))
    epochs: int = field(default=240, metadata=meta("search epochs"))
    batch_size: int = field(default=64, metadata=meta("batch per step (global, over all ranks)",
                                                      aliases=("batch",)))
    train_portion: float = field(default=0.5, metadata=meta("share of the training set used as D_T"))
    split_seed: Optional[int] = field(default=None, metadata=meta(
        "seed of the images (synthetic data, --train-subset) and of the D_T/D_V split; default: --seed for one "
        "run; with --seeds every seed shares one split, this seed's or else the first seed's"))
    select_by: str = field(default="retrain", metadata=meta(
        "with several --seeds, keep the cell of the best retrain (trained from scratch for --select-epochs on "
        "D_T, measured on D_V) or of the best final search accuracy on D_V", SELECT_BY))
    select_epochs: int = field(default=100, metadata=meta(
        "epochs of each seed's retrain (DARTS: 100 epochs of an 8-cell network)"))
    steps_per_epoch: Optional[int] = field(default=None, metadata=meta("cap on W/A iterations per epoch"))
    w_lr: float = field(default=0.025, metadata=meta("SGD learning rate of the weights W"))
    w_lr_min: float = field(default=0.001, metadata=meta("cosine floor of the W learning rate"))
    w_momentum: float = 0.9
    w_nesterov: bool = False
    w_weight_decay: float = 3e-4
    grad_clip: float = field(default=5.0, metadata=meta("gradient-norm clip of W (0 disables)"))
    a_lr: float = field(default=3e-4, metadata=meta("Adam learning rate of A"))
    warmup_epochs: int = field(default=0, metadata=meta(
        "W-only epochs before A starts updating (P-DARTS, PC-DARTS); tau follows its schedule over all epochs"))
    a_beta1: float = 0.5
    a_beta2: float = 0.999
    a_weight_decay: float = 1e-3
    tau_max: float = field(default=10.0, metadata=meta("Gumbel temperature at the first epoch"))
    tau_min: float = field(default=0.1, metadata=meta("Gumbel temperature at the last epoch"))
    max_skip: Optional[int] = field(default=None, metadata=meta(
        "derivation keeps at most K skip_connect ops in the normal cell (nb201: the cell); the next best "
        "op with parameters replaces the least likely excess ones (P-DARTS: 2)"))
    stop_on_collapse: Optional[int] = field(default=None, metadata=meta(
        "stop early, keeping the last healthy genotype, once the derived normal cell (nb201: the cell) has K "
        "or more parameter-free ops for --collapse-patience epochs (DARTS+)"))
    collapse_patience: int = field(default=1, metadata=meta(
        "epochs in a row of collapse before --stop-on-collapse stops"))
    cost: Optional[str] = field(default=None, metadata=meta(
        "add --cost-weight x the expected cost of the cells under softmax(A) to the A step's loss", COSTS))
    cost_weight: Optional[float] = field(default=None, metadata=meta(
        "LAMBDA of --cost, per million mult-adds or parameters of the final network's cells"))
    cost_target: Optional[float] = field(default=None, metadata=meta(
        "hinge of --cost: penalise only the expected cost above this many millions"))
    crop_padding: int = 4
    flip: bool = True
    cutout: int = 0
    seed: int = 0
    device: str = field(default="auto", metadata=meta("auto, cpu, cuda or cuda:N"))
    amp: str = field(default="none", metadata=meta("mixed precision on CUDA", ("none", "bf16")))
    channels_last: Optional[bool] = field(default=None, metadata=meta(
        "channels_last (NHWC) memory format for model and batches (default auto: on on the CPU, off on CUDA)"))
    threads: Optional[int] = field(default=None, metadata=meta("CPU threads (torch.set_num_threads)"))
    benchmark: Optional[str] = field(default=None, metadata=meta(
        "nb201 space: the NATS-Bench topology benchmark (the extracted NATS-tss-v1_0-3ffb9-simple folder); the "
        "summary and report record the derived cell's true accuracies (needs pip install 'gdas-nas[nb201]')"))

    @property
    def data_seed(self) -> int:
        """The seed of the images and the D_T/D_V split (shared by every seed of a multi-seed search)."""
        return self.seed if self.split_seed is None else self.split_seed

    def validate(self) -> None:
        check_choice(self.space, IMAGE_SPACES, "--space")
        check_choice(self.select_by, SELECT_BY, "--select-by")
        check(self.select_epochs >= 1, f"--select-epochs must be at least 1, got {self.select_epochs}")
        check_choice(self.dataset, IMAGE_DATASETS, "--dataset")
        check_data_source(self)
        check_choice(self.sampler, SAMPLERS, "--sampler")
        check_choice(self.sample_scope, SAMPLE_SCOPES, "--sample-scope")
        check(not self.reference_grad or (self.space == "nb201" and self.sampler == "gdas"),
              f"--reference-grad is for the nb201 supernet under GDAS (--space nb201 --sampler gdas); with "
              f"--space {self.space} --sampler {self.sampler} it means nothing: drop it")
        check(self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}")
        check(self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}")
        check(0 <= self.warmup_epochs < self.epochs,
              f"--warmup-epochs must be in [0, --epochs), got {self.warmup_epochs} with {self.epochs} epochs")
        check(self.C >= 1 and self.N >= 1 and self.steps >= 2,
              f"--C and --N must be at least 1 and --steps at least 2 (got C={self.C}, N={self.N}, "
              f"steps={self.steps})")
        check(self.space != "darts" or self.C % 2 == 0,
              f"--C must be even (factorized reductions halve it), got {self.C}")
        check(not self.frc or self.space == "darts", "--frc is an option of the darts space; drop it")
        check(not self.frc or self.C % 8 == 0,
              f"--frc needs --C divisible by {FRC_GROUPS} (the fixed reduction cell uses {FRC_GROUPS} groups), got C={self.C}")
        check(not self.w_nesterov or self.w_momentum > 0, "--w-nesterov needs --w-momentum > 0")
        check(0.0 < self.train_portion < 1.0, f"--train-portion must be in (0, 1), got {self.train_portion}")
        check(self.tau_max >= self.tau_min > 0, f"need --tau-max >= --tau-min > 0, got {self.tau_max}, "
                                                f"{self.tau_min}")
        check(self.train_subset is None or self.train_subset >= 2,
              "--train-subset must be at least 2 images")
        check(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "--steps-per-epoch must be >= 1")
        check(self.crop_padding >= 0 and self.cutout >= 0, "--crop-padding and --cutout must be >= 0")
        check(self.max_skip is None or self.max_skip >= 0, f"--max-skip must be at least 0, got {self.max_skip}")
        check(self.stop_on_collapse is None or self.stop_on_collapse >= 1,
              f"--stop-on-collapse must be at least 1, got {self.stop_on_collapse}")
        check(self.collapse_patience >= 1, f"--collapse-patience must be at least 1, got {self.collapse_patience}")
        check(self.cost is None or self.cost in COSTS, f"--cost {self.cost!r} is not one of: {', '.join(COSTS)}")
        check(self.cost is not None or (self.cost_weight is None and self.cost_target is None),
              "--cost-weight and --cost-target need --cost mult-adds or --cost params")
        check(self.cost is None or self.cost_weight is not None,
              f"--cost {self.cost} needs --cost-weight LAMBDA (>= 0; with --cost-target VALUE only the expected "
              "cost above the target is penalised)")
        check(self.cost_weight is None or self.cost_weight >= 0, f"--cost-weight must be >= 0, got {self.cost_weight}")
        check(self.cost_target is None or self.cost_target >= 0, f"--cost-target must be >= 0, got {self.cost_target}")
        validate_runtime(self.device, self.amp, self.threads)
        if self.benchmark is not None:  # a missing file or package fails now, not after the search
            lookup = get_space(self.space).benchmark
            if lookup is None:
                raise GdasError(f"--benchmark: the {self.space} space has no tabular benchmark; drop it "
                                "(NATS-Bench holds --space nb201 cells)")
            lookup.check(self)


_NB201_SEARCH = SearchConfig(space="nb201", C=16, N=5, steps=3, w_nesterov=True, w_weight_decay=5e-4)

SEARCH_PRESETS: dict[str, SearchConfig] = {
    # The paper's CIFAR-10 search (SPEC defaults).
    "cifar10": SearchConfig(),
    "cifar10-frc": SearchConfig(frc=True),
    "cifar100": SearchConfig(dataset="cifar100"),
    # The CPU demo: a small supernet on a subset of Fashion-MNIST; minutes on two cores. A gets ~220 Adam steps
    # (7 epochs of 31), not the paper's ~90,000: at an A lr of 0.003 / 0.01 / 0.03 the mean top-op probability of
    # softmax(A) ends at 0.15 / 0.18 / 0.23 (uniform: 0.125), at 0.1 at 0.25 or more (3 seeds; docs/quality.md).
    # The first 3 epochs train W alone (P-DARTS, PC-DARTS): A starts once the convolutions have learnt something.
    "fashion-mnist": SearchConfig(dataset="fashion-mnist", C=8, N=1, epochs=10, batch_size=64,
                                  train_subset=4000, w_lr_min=0.0, tau_max=10.0, crop_padding=2, a_lr=0.1,
                                  warmup_epochs=3, channels_last=True, select_epochs=3),  # NHWC halves the step on CPU
    # NAS-Bench-201 with the reference's GDAS settings: 240 epochs, batch 64, nesterov SGD 0.025 cosine to
    # 0.001, wd 5e-4; A by Adam 3e-4 (0.5, 0.999), wd 1e-3; tau 10 -> 0.1; C=16, N=5, 4-node cells.
    "nb201-cifar10": _NB201_SEARCH,
    "nb201-cifar100": replace(_NB201_SEARCH, dataset="cifar100"),
    "nb201-imagenet16": replace(_NB201_SEARCH, dataset="imagenet16-120"),
    # The NAS-Bench-201 CPU demo: C=8, N=1 on 4,000 Fashion-MNIST images; minutes on two cores.
    "nb201-fashion-mnist": replace(_NB201_SEARCH, dataset="fashion-mnist", C=8, N=1, epochs=10, train_subset=4000,
                                   crop_padding=2, channels_last=True, select_epochs=3),
    # Seconds: for tests and for checking an installation.
    "smoke": SearchConfig(dataset="synthetic", synthetic_train=128, C=8, N=1, epochs=2, batch_size=16,
                          steps_per_epoch=4, select_epochs=1),
    "nb201-smoke": replace(_NB201_SEARCH, dataset="synthetic", synthetic_train=128, C=8, N=1, epochs=2,
                           batch_size=16, steps_per_epoch=4, select_epochs=1),
}
