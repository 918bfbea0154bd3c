"""The CNN search config (Algorithm 1's options with SPEC's defaults, and the image side) and its named presets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar, Optional

from gdas.configs.algorithm import COSTS, PAPER_A_STEPS, UNITS, SearchBase
from gdas.configs.base import Presets, check, check_choice, meta, own_data_field, own_subset
from gdas.configs.train import final_size
from gdas.data.images import IMAGE_DATASETS
from gdas.data.own import USER_DATASETS, check_data_source
from gdas.errors import GdasError
from gdas.latency.table import LatencyTable, load_table
from gdas.sampler import SAMPLE_SCOPES
from gdas.spaces import get_space
from gdas.spaces.module.factory import PREFIX as MODULE_PREFIX
from gdas.spaces.module.factory import load as load_factory
from gdas.spaces.darts.fixed_cell import FRC_GROUPS
from gdas.spaces.module.genotype import KIND as MODULE_KIND
from gdas.spaces.shapes import Shape, dataset_shape

__all__ = ["COSTS", "IMAGE_SPACES", "MODULE_PREFIX", "SEARCH_ALIASES", "SEARCH_PRESETS", "SEARCH_TABLE", "SELECT_BY", "SearchConfig"]

IMAGE_SPACES = ("darts", "nb201", "mobilenet")  # the registered spaces whose networks read images
SELECT_BY = ("retrain", "search")


@dataclass(frozen=True)
class SearchConfig(SearchBase):
    """Everything a CNN search run depends on (Algorithm 1's options and the image side); written to the run
    directory as config.json."""

    # What a config.json written before a field existed stands for (`configs.base.from_json`).
    ABSENT_IN_OLD_RUNS: ClassVar[dict[str, str]] = {"cost_target_of": "cells"}

    space: str = field(default="darts", metadata=meta(
        f"search space: {', '.join(IMAGE_SPACES)}, or a module of your own as {MODULE_PREFIX}package.module:Factory "
        "(searched as a classifier of the images)"))
    dataset: str = field(default="cifar10", metadata=meta("dataset to search on", IMAGE_DATASETS))
    data_dir: Optional[str] = field(default=None, metadata=meta("folder holding the dataset files"))
    train_subset: Optional[int] = field(default=None, metadata=meta(
        "use a seeded random subset of this many training images (before the D_T/D_V split); a preset's subset "
        "belongs to its own dataset: on other data every image is used unless this is given"))
    synthetic_train: int = field(default=512, metadata=meta("images of the synthetic dataset"))
    image_size: Optional[int] = own_data_field("image_size")
    channels: Optional[int] = own_data_field("channels")
    skip_bad_images: bool = own_data_field("skip_bad_images", False)
    stream: Optional[bool] = own_data_field("stream")
    C: int = field(default=16, metadata=meta("initial channels of the supernet"))
    N: int = field(default=2, metadata=meta("normal cells per block (3N+2 cells)"))
    steps: int = field(default=4, metadata=meta("intermediate nodes per cell (B; NAS-Bench-201: 3)"))
    frc: bool = field(default=False, metadata=meta("darts space: search the normal cell only; fixed reduction cell"))
    sample_scope: str = field(default="network", metadata=meta(
        "one draw per cell type per forward (network) or one per cell (cell)", SAMPLE_SCOPES))
    reference_grad: bool = field(default=False, metadata=meta(
        "nb201 space, --sampler gdas: A's gradient as the reference's NB201 code computes it (each unsampled op's "
        "zero-valued straight-through weight is added to the edge, so it gets the edge output's gradient, summed); "
        "default off: only the sampled op's weight gets a gradient, the paper's estimator (and the reference's "
        "DARTS-space code)"))
    train_portion: float = field(default=0.5, metadata=meta("share of the training set used as D_T"))
    split_seed: Optional[int] = field(default=None, metadata=meta(
        "seed of the images (synthetic data, --train-subset) and of the D_T/D_V split; default: --seed for one "
        "run; with --seeds every seed shares one split, this seed's or else the first seed's"))
    select_by: str = field(default="retrain", metadata=meta(
        "with several --seeds, keep the cell of the best retrain (trained from scratch for --select-epochs on "
        "D_T, measured on D_V) or of the best final search accuracy on D_V", SELECT_BY))
    select_epochs: int = field(default=100, metadata=meta(
        "epochs of each seed's retrain (DARTS: 100 epochs of an 8-cell network)"))
    crop_padding: int = 4
    flip: bool = True
    cutout: int = 0

    @property
    def data_seed(self) -> int:
        """The seed of the images and the D_T/D_V split (shared by every seed of a multi-seed search)."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def final_size(self) -> tuple[int, int]:
        """(C, N) of the final network `--cost`, `--random-baseline` and `gdas info` count at: a cell space's
        training preset's (its cells stacked deeper and wider); a module space's own (its choice map names every
        block of the network it searched, so the network it describes is that one)."""
        if get_space(self.space).genotype_kind == MODULE_KIND:
            return self.C, self.N
        return final_size(self.space, self.dataset, self.frc)

    def latency(self, shape: Shape) -> LatencyTable:
        """--latency-table, read and checked against this search's final network on images of `shape`: the same
        space, cells and images (its C and N are the final network's: the one the table was built for)."""
        table = load_table(self.latency_table)
        space = get_space(self.space)
        if space.genotype_kind == MODULE_KIND and table.size != self.final_size:  # it derives the network it searched
            raise GdasError(f"the latency table {table.path} was built for C={table.size[0]}, N={table.size[1]}; the "
                            f"{self.space} space derives the network it searches, C={self.C}, N={self.N}: build one "
                            f"at its size with gdas latency build --C {self.C} --N {self.N}")
        table.check_network(space, self, shape)
        return table

    def fixed_cost(self, shape: Shape) -> float:
        """Millions (of --cost's kind) of the final network that no choice of ops changes: stem, preprocessing,
        classifier, the fixed reduction cells of --frc (at `final_size`, on images of `shape`); latency: the
        table's fixed part and overhead (ms)."""
        if self.cost == "latency":
            return self.latency(shape).constant_ms
        space = get_space(self.space)
        if space.fixed_cost is None:
            raise GdasError(f"--cost is not available in the {space.name} space; drop it")
        C, N = self.final_size
        return float(space.fixed_cost(self, self.dataset, C, N, self.cost, shape=shape))

    def check_cost_target(self, shape: Optional[Shape] = None) -> None:
        """A --cost-target of the whole network below its fixed part could never be met: one line that says so;
        --cost latency: a missing or damaged table, or one of another space, cells or images, too.
        `shape`: (channels, side, classes) of the searched images; None checks a named dataset's own shape now
        and leaves a folder or npz file to its search, once its images are read."""
        if self.cost is None:
            return
        if shape is None:
            if self.dataset in USER_DATASETS:
                if self.cost == "latency":
                    load_table(self.latency_table)  # a missing or damaged file fails now, its shape with the data
                return
            shape = dataset_shape(self.dataset, network=self.space)
        table = self.latency(shape) if self.cost == "latency" else None
        if self.cost_target is None or self.cost_target_of != "network":
            return
        self.check_fixed_part(table.constant_ms if table is not None else self.fixed_cost(shape))

    def check_fixed_part(self, fixed: float) -> None:
        """A --cost-target of the whole network at or above `fixed`, its fixed part (--cost's units)."""
        if self.cost_target is None or self.cost_target_of != "network":
            return
        check(self.cost_target >= fixed,
              f"--cost-target {self.cost_target:g} is below the fixed part of the final network ({fixed:.4g} "
              f"{UNITS[self.cost]}: stem, classifier and all else but the searched ops), which no choice of ops "
              f"removes: the target counts the whole network; raise it above {fixed:.4g} (a run started when the "
              "target counted the cells alone continues with --resume RUN_DIR)")

    def fit_to_given(self, preset: "SearchConfig") -> "SearchConfig":
        cfg = super().fit_to_given(preset)
        return own_subset(cfg, preset, "train_subset")

    def validate(self) -> None:
        if self.space.startswith(MODULE_PREFIX):
            load_factory(self.space)  # a path that names nothing fails now, before any data is read
        else:
            check_choice(self.space, IMAGE_SPACES, "--space")
        super().validate()
        module = get_space(self.space).genotype_kind == "module"
        check(not module or self.sample_scope == "network",
              f"--sample-scope cell draws once per cell; the {self.space} space draws once per label: drop it")
        check_choice(self.select_by, SELECT_BY, "--select-by")
        check(self.select_epochs >= 1, f"--select-epochs must be at least 1, got {self.select_epochs}")
        check_choice(self.dataset, IMAGE_DATASETS, "--dataset")
        check_data_source(self)
        check_choice(self.sample_scope, SAMPLE_SCOPES, "--sample-scope")
        check(not self.reference_grad or (self.space == "nb201" and self.sampler == "gdas"),
              f"--reference-grad is for the nb201 supernet under GDAS (--space nb201 --sampler gdas); with "
              f"--space {self.space} --sampler {self.sampler} it means nothing: drop it")
        check(self.C >= 1 and self.N >= 1 and self.steps >= 2,
              f"--C and --N must be at least 1 and --steps at least 2 (got C={self.C}, N={self.N}, "
              f"steps={self.steps})")
        check(self.space != "darts" or self.C % 2 == 0,
              f"--C must be even (factorized reductions halve it), got {self.C}")
        check(not self.frc or self.space == "darts", "--frc is an option of the darts space; drop it")
        check(not self.frc or self.C % 8 == 0,
              f"--frc needs --C divisible by {FRC_GROUPS} (the fixed reduction cell uses {FRC_GROUPS} groups), got C={self.C}")
        check(0.0 < self.train_portion < 1.0, f"--train-portion must be in (0, 1), got {self.train_portion}")
        check(self.train_subset is None or self.train_subset >= 2,
              "--train-subset must be at least 2 images")
        check(self.crop_padding >= 0 and self.cutout >= 0, "--crop-padding and --cutout must be >= 0")
        self.check_cost_target()  # before a run folder exists, when the dataset's name fixes the images' shape


_NB201_SEARCH = SearchConfig(space="nb201", C=16, N=5, steps=3, w_nesterov=True, w_weight_decay=5e-4)
# The paper's A steps: 240 epochs x 390 (25,000 of CIFAR's 50,000 training images in D_V, batch 64). Its A lr,
# 3e-4, is scaled by them to the A steps of a run that gives another number (`SearchBase.fit_a_lr`): at 310 A steps
# it leaves softmax(A) uniform (0.205 against 0.200 on the NAS-Bench-201 demo, docs/quality.md).
_CIFAR_A_STEPS = PAPER_A_STEPS
_IMAGENET16_A_STEPS = 240 * (75_850 // 64)  # ImageNet16-120: 151,700 training images

# Presets name a budget (the paper's recipe, a CPU demo, seconds of smoke) and the data it was set for; a
# preset's subset belongs to that data (`own_subset`): on any other data, a user's own above all, every image
# is used unless --train-subset is given. Each states the A steps it gives (Adam steps of A: the epochs after
# the warm-up x the steps of an epoch); every search logs them at its start.
SEARCH_PRESETS: dict[str, SearchConfig] = {
    # The paper's CIFAR-10 search (SPEC defaults): 93,600 A steps at 3e-4.
    "cifar10": SearchConfig(a_lr_steps=_CIFAR_A_STEPS),
    "cifar10-frc": SearchConfig(frc=True, a_lr_steps=_CIFAR_A_STEPS),
    "cifar100": SearchConfig(dataset="cifar100", a_lr_steps=_CIFAR_A_STEPS),
    # The CPU demo: a small supernet, minutes on two cores on 4,000 Fashion-MNIST images. A gets 217 Adam steps
    # (7 epochs after the warm-up x 31), not the paper's 93,600: at an A lr of 0.003 / 0.01 / 0.03 the mean top-op
    # probability of softmax(A) ends at 0.15 / 0.18 / 0.23 (uniform: 0.125), at 0.1 at 0.25 or more (3 seeds;
    # docs/quality.md). At 0.1, A learns alike at 49 to 875 A steps (the NAS-Bench-201 demo): a shorter or longer
    # search, or one on other data, keeps it (no a_lr_steps).
    # The first 3 epochs train W alone (P-DARTS, PC-DARTS): A starts once the convolutions have learnt something.
    "demo": SearchConfig(dataset="fashion-mnist", C=8, N=1, epochs=10, batch_size=64,
                         train_subset=4000, w_lr_min=0.0, tau_max=10.0, crop_padding=2, a_lr=0.1,
                         warmup_epochs=3, channels_last=True, select_epochs=3),  # NHWC halves the step on CPU
    # NAS-Bench-201 with the reference's GDAS settings: 240 epochs, batch 64, nesterov SGD 0.025 cosine to
    # 0.001, wd 5e-4; A by Adam 3e-4 (0.5, 0.999), wd 1e-3; tau 10 -> 0.1; C=16, N=5, 4-node cells. 93,600 A
    # steps on CIFAR, 284,400 on ImageNet16-120.
    "nb201-cifar10": replace(_NB201_SEARCH, a_lr_steps=_CIFAR_A_STEPS),
    "nb201-cifar100": replace(_NB201_SEARCH, dataset="cifar100", a_lr_steps=_CIFAR_A_STEPS),
    "nb201-imagenet16": replace(_NB201_SEARCH, dataset="imagenet16-120", a_lr_steps=_IMAGENET16_A_STEPS),
    # The NAS-Bench-201 CPU demo: C=8, N=1 on 4,000 Fashion-MNIST images; a minute or two on two cores. The darts
    # demo's A: 217 steps at 0.1 after 3 W-only epochs (at 3e-4 softmax(A) stayed uniform; docs/quality.md).
    "nb201-demo": replace(_NB201_SEARCH, dataset="fashion-mnist", C=8, N=1, epochs=10, train_subset=4000,
                          crop_padding=2, a_lr=0.1, warmup_epochs=3, channels_last=True, select_epochs=3),
    # Seconds: for tests and for checking an installation.
    "smoke": SearchConfig(dataset="synthetic", synthetic_train=128, C=8, N=1, epochs=2, batch_size=16,
                          steps_per_epoch=4, select_epochs=1),
    "nb201-smoke": replace(_NB201_SEARCH, dataset="synthetic", synthetic_train=128, C=8, N=1, epochs=2,
                           batch_size=16, steps_per_epoch=4, select_epochs=1),
}
_MOBILENET_SEARCH = SearchConfig(space="mobilenet", C=32, N=4, w_weight_decay=4e-5, a_lr_steps=_CIFAR_A_STEPS)
SEARCH_PRESETS.update({
    # The MobileNet-style space on 32 px images at MobileNetV2 1.0's widths (C=32), four blocks per stage; the
    # paper's A (3e-4 for 93,600 A steps, scaled to other budgets).
    "mobilenet-cifar10": _MOBILENET_SEARCH,
    # Its CPU demo: a quarter of the widths (C=8), two blocks per stage, on 4,000 Fashion-MNIST images.
    "mobilenet-demo": replace(_MOBILENET_SEARCH, dataset="fashion-mnist", C=8, N=2, epochs=10, train_subset=4000,
                              crop_padding=2, channels_last=True, select_epochs=3, a_lr=0.01, a_lr_steps=None),
    "mobilenet-smoke": replace(_MOBILENET_SEARCH, dataset="synthetic", synthetic_train=128, C=8, N=2, epochs=2,
                               batch_size=16, steps_per_epoch=4, select_epochs=1, a_lr_steps=None),
})
# Other names of presets: the budgets by what they are for ("paper"), the demos by the data they were set for.
SEARCH_ALIASES: dict[str, str] = {"paper": "cifar10", "nb201-paper": "nb201-cifar10", "mobilenet-paper": "mobilenet-cifar10",
                                  "fashion-mnist": "demo", "nb201-fashion-mnist": "nb201-demo"}
# `gdas search` and `gdas.search` start from the CPU demo.
SEARCH_TABLE = Presets(SEARCH_PRESETS, "demo", SEARCH_ALIASES)
