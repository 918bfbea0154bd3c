"""The options of Algorithm 1 that every search config extends (CNN and recurrent spaces alike), with their checks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from gdas.configs.base import RunConfig, adjust_unset, check, check_choice, meta
from gdas.configs.runtime import validate_runtime
from gdas.errors import GdasError
from gdas.sampler import SAMPLERS
from gdas.spaces import get_space

# What --cost counts: millions of mult-adds or parameters at the final network's size, or its latency (ms) as a
# table of the user's device predicts it (--latency-table).
COSTS = ("mult-adds", "params", "latency")
UNITS = {"mult-adds": "M mult-adds", "params": "M parameters", "latency": "ms"}
# The largest A lr `SearchBase.fit_a_lr` scales a preset's to: the CPU demos' A lr, with which softmax(A) learns at
# 49 to 875 A steps alike; larger ones only make A more erratic (docs/quality.md).
A_LR_MAX = 0.1
# The paper's A steps on CIFAR: 240 epochs x 390 (25,000 of the 50,000 training images in D_V, batch 64), for
# which its A lr, 3e-4, is set: the `a_lr_steps` of every preset that takes that lr.
PAPER_A_STEPS = 240 * (25_000 // 64)
# What --cost-target is compared with (config.json's `cost_target_of`): the whole final network; "cells" is the
# meaning of runs started before the field existed (their config.json lacks it), kept when they are continued.
TARGET_OF = ("network", "cells")


@dataclass(frozen=True)
class SearchBase(RunConfig):
    """Alternating W / A updates with Gumbel-max sampling, tau annealing, the guards and the budget: what
    `search.SearchTask`, `guards.CollapseGuard` and `budget.Budget` read. Defaults are SPEC's CNN search;
    the recurrent search config overrides the ones its paper recipe sets."""

    space: str = field(default="darts", metadata=meta("search space"))
    sampler: str = field(default="gdas", metadata=meta("edge mode: GDAS, GDAS without acceleration, DARTS",
                                                       SAMPLERS))
    epochs: int = field(default=240, metadata=meta("search epochs"))
    batch_size: int = field(default=64, metadata=meta("batch per step (global, over all ranks)",
                                                      aliases=("batch",)))
    steps_per_epoch: Optional[int] = field(default=None, metadata=meta("cap on W/A iterations per epoch"))
    w_lr: float = field(default=0.025, metadata=meta("SGD learning rate of the weights W"))
    w_lr_min: Optional[float] = field(default=0.001, metadata=meta(
        "cosine floor of the W learning rate (none: constant)"))
    w_momentum: float = 0.9
    w_nesterov: bool = False
    w_weight_decay: float = 3e-4
    grad_clip: float = field(default=5.0, metadata=meta("gradient-norm clip of W (0 disables)"))
    a_lr: float = field(default=3e-4, metadata=meta("Adam learning rate of A"))
    a_lr_steps: Optional[int] = field(default=None, metadata=meta(
        "the number of A steps --a-lr is set for (the paper presets: their own budget): a run that gives another "
        "number scales an --a-lr it did not set by a_lr_steps / its A steps (epochs after the warm-up x steps per "
        "epoch), at most to 0.1, so that a shorter or longer search, or one on more or fewer images, moves A as "
        "far; none: --a-lr as it is at any budget (the CPU demos)"))
    warmup_epochs: int = field(default=0, metadata=meta(
        "W-only epochs before A starts updating (P-DARTS, PC-DARTS); tau follows its schedule over all epochs. "
        "A preset's warm-up is scaled with --epochs when only --epochs is given"))
    a_beta1: float = 0.5
    a_beta2: float = 0.999
    a_weight_decay: float = 1e-3
    tau_max: float = field(default=10.0, metadata=meta("Gumbel temperature at the first epoch"))
    tau_min: float = field(default=0.1, metadata=meta("Gumbel temperature at the last epoch"))
    max_skip: Optional[int] = field(default=None, metadata=meta(
        "derivation keeps at most K skip_connect ops in the normal cell (nb201: the cell); each excess one, least "
        "likely first, becomes its node's best op with parameters (darts: on its input or an unused one; nb201: "
        "on its edge). After P-DARTS's limit of 2, loosely: P-DARTS re-derives, so a pool may replace a skip"))
    stop_on_collapse: Optional[int] = field(default=None, metadata=meta(
        "stop early, keeping the last healthy genotype, once the derived normal cell (nb201: the cell) has K or "
        "more parameter-free ops (pools and skips; nb201: none too) for --collapse-patience epochs. After DARTS+, "
        "loosely: DARTS+ stops at 2 skip connections"))
    collapse_patience: int = field(default=1, metadata=meta(
        "epochs in a row of collapse before --stop-on-collapse stops"))
    cost: Optional[str] = field(default=None, metadata=meta(
        "add --cost-weight x the final network's expected cost under softmax(A) to the A step's loss (millions, "
        "at its trained size: the fixed stem, preprocessing and classifier plus every searched edge's ops; "
        "latency: ms on the device of --latency-table, at the network size it was built for)",
        COSTS))
    cost_weight: Optional[float] = field(default=None, metadata=meta(
        "LAMBDA of --cost, per million mult-adds or parameters, or per ms of latency"))
    cost_target: Optional[float] = field(default=None, metadata=meta(
        "hinge of --cost: penalise only the whole final network's expected cost above this many millions (latency: "
        "ms) (fixed part included; a target below the fixed part is refused)"))
    latency_table: Optional[str] = field(default=None, metadata=meta(
        "--cost latency: the latency table of the device the network is for (gdas latency build)"))
    # Not an option: what --cost-target counts, recorded in config.json ("network"; "cells" in runs from before).
    cost_target_of: str = "network"
    seed: int = 0
    device: str = field(default="auto", metadata=meta("auto, cpu, cuda or cuda:N"))
    amp: str = field(default="none", metadata=meta("mixed precision on CUDA", ("none", "bf16")))
    channels_last: Optional[bool] = field(default=None, metadata=meta(
        "image spaces: channels_last (NHWC) memory format for model and batches (default auto: on on the CPU, "
        "off on CUDA)"))
    threads: Optional[int] = field(default=None, metadata=meta("CPU threads (torch.set_num_threads)"))
    benchmark: Optional[str] = field(default=None, metadata=meta(
        "nb201 space: the NATS-Bench topology benchmark (the extracted NATS-tss-v1_0-3ffb9-simple folder); the "
        "summary and report record the derived cell's true accuracies (needs pip install 'gdas-nas[nb201]')"))
    random_baseline: int = field(default=0, metadata=meta(
        "image spaces: also train K random cells of the space (drawn as derivation draws, seeds 0..K-1) with the "
        "searched cells' selection protocol (--select-epochs on D_T, measured on D_V) and report where each "
        "searched cell ranks among them"))

    def fit_to_given(self, preset: "SearchBase") -> "SearchBase":
        """A preset's warm-up is a share of its epochs: given --epochs alone, it keeps that share (rounded
        down, at most epochs - 1), so that a shortened run never fails on a warm-up the user did not set."""
        cfg = super().fit_to_given(preset)
        if preset.warmup_epochs and cfg.epochs != preset.epochs:
            scaled = min(preset.warmup_epochs * cfg.epochs // preset.epochs, cfg.epochs - 1)
            cfg = adjust_unset(cfg, {"warmup_epochs": max(scaled, 0)},
                               f"the preset's {preset.warmup_epochs} of {preset.epochs} epochs, scaled to "
                               f"--epochs {cfg.epochs}")
        return cfg

    def a_steps(self, steps_per_epoch: int) -> int:
        """The A updates of a run of `steps_per_epoch` iterations an epoch: one an iteration after the warm-up."""
        return (self.epochs - self.warmup_epochs) * steps_per_epoch

    def a_steps_line(self, steps_per_epoch: int) -> str:
        """What the log says at the start of a search of how far A can move."""
        return (f"A steps: {self._a_steps_words(steps_per_epoch)} (Adam, lr {self.a_lr:g})")

    def _a_steps_words(self, steps_per_epoch: int) -> str:
        return (f"{self.epochs - self.warmup_epochs} epochs with A steps x {steps_per_epoch:,} steps per epoch = "
                f"{self.a_steps(steps_per_epoch):,}")

    def fit_a_lr(self, steps_per_epoch: int) -> "SearchBase":
        """This config with an A lr it did not set fitted to the A steps of its run, once the data fix the steps of
        an epoch: a_lr x a_lr_steps / A steps, so that A can move as far as in the preset's own budget, at most
        `A_LR_MAX` (noted in `adjusted`); `a_lr_steps` then names the run's own A steps, so that fitting again
        changes nothing."""
        steps = self.a_steps(steps_per_epoch)
        if self.a_lr_steps is None or steps < 1 or steps == self.a_lr_steps or "a_lr" in self.given:
            return self
        scaled = self.a_lr * self.a_lr_steps / steps
        cap = max(self.a_lr, A_LR_MAX)
        a_lr = float(f"{min(scaled, cap):.3g}")
        cfg = adjust_unset(self, {"a_lr": a_lr}, f"set for {self.a_lr_steps:,} A steps; this run gives "
                                                 f"{self._a_steps_words(steps_per_epoch)}"
                                                 + (f"; at most {cap:g}" if scaled > cap else ""))
        note = f"a_lr_steps {self.a_lr_steps} -> {steps} (the A steps a_lr is set for now)"
        return dataclasses.replace(cfg, a_lr_steps=steps, adjusted=cfg.adjusted + (note,))

    def validate(self) -> None:
        super().validate()
        space = get_space(self.space)  # an unknown space fails with the list of spaces
        check_choice(self.sampler, SAMPLERS, "--sampler")
        check(self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}")
        check(self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}")
        check(0 <= self.warmup_epochs < self.epochs,
              f"--warmup-epochs must be in [0, --epochs), got {self.warmup_epochs} with {self.epochs} epochs")
        check(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "--steps-per-epoch must be >= 1")
        check(not self.w_nesterov or self.w_momentum > 0, "--w-nesterov needs --w-momentum > 0")
        check(self.w_lr > 0 and self.a_lr > 0, "--w-lr and --a-lr must be > 0")
        check(self.a_lr_steps is None or self.a_lr_steps >= 1,
              f"--a-lr-steps must be at least 1 (or none), got {self.a_lr_steps}")
        check(self.tau_max >= self.tau_min > 0, f"need --tau-max >= --tau-min > 0, got {self.tau_max}, "
                                                f"{self.tau_min}")
        check(self.max_skip is None or self.max_skip >= 0, f"--max-skip must be at least 0, got {self.max_skip}")
        check(self.max_skip is None or "skip_connect" in space.ops,
              f"--max-skip limits skip_connect ops, which the {space.name} space does not have; drop it")
        check(self.stop_on_collapse is None or self.stop_on_collapse >= 1,
              f"--stop-on-collapse must be at least 1, got {self.stop_on_collapse}")
        check(self.collapse_patience >= 1, f"--collapse-patience must be at least 1, got {self.collapse_patience}")
        self._validate_cost(space.layout is not None and space.choices is not None if self.cost == "latency"
                            else space.op_costs is not None, space.name)
        check(self.random_baseline >= 0, f"--random-baseline must be at least 0 (random cells to train), got "
                                         f"{self.random_baseline}")
        check(not self.random_baseline or space.data == "image",
              f"--random-baseline trains random cells as image networks on the search's D_T / D_V split; the "
              f"{space.name} space has no image retrain (its cells train as language models: gdas train-lm), "
              "drop it")
        check(not self.random_baseline or space.random_genotype is not None,
              f"--random-baseline: the {space.name} space draws no random cells; drop it")
        check(not self.channels_last or space.data == "image",
              f"--channels-last is a memory format of image networks; the {space.name} space has none, drop it")
        validate_runtime(self.device, self.amp, self.threads)
        if self.benchmark is not None:  # a missing file or package fails now, not after the search
            if space.benchmark is None:
                raise GdasError(f"--benchmark: the {space.name} space has no tabular benchmark; drop it "
                                "(NATS-Bench holds --space nb201 cells)")
            space.benchmark.check(self)

    def _validate_cost(self, available: bool, space: str) -> None:
        check(self.cost is None or self.cost in COSTS, f"--cost {self.cost!r} is not one of: {', '.join(COSTS)}")
        check(self.cost is None or available, f"--cost is not available in the {space} space; drop it")
        check(self.cost is not None or (self.cost_weight is None and self.cost_target is None),
              "--cost-weight and --cost-target need --cost mult-adds, params or latency")
        check(self.cost != "latency" or self.latency_table is not None,
              "--cost latency needs --latency-table FILE, a table of your device (gdas latency build)")
        check(self.latency_table is None or self.cost == "latency",
              "--latency-table is read by --cost latency; add --cost latency or drop --latency-table")
        check(self.cost != "latency" or self.cost_target is None or self.cost_target > 0,
              f"--cost-target must be a latency above 0 ms, got {self.cost_target}")
        check(self.cost is None or self.cost_weight is not None,
              f"--cost {self.cost} needs --cost-weight LAMBDA (>= 0; with --cost-target VALUE only the expected "
              "cost above the target is penalised)")
        check(self.cost_weight is None or self.cost_weight >= 0, f"--cost-weight must be >= 0, got {self.cost_weight}")
        check(self.cost_target is None or self.cost_target >= 0, f"--cost-target must be >= 0, got {self.cost_target}")
        check(self.cost_target_of in TARGET_OF,
              f"config field cost_target_of must be one of {', '.join(TARGET_OF)}, got {self.cost_target_of!r}")
