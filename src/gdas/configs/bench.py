"""The configs of `gdas bench search|data` (which space and supernet size, how many samples are timed) and of `gdas bench lm`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from gdas.configs.base import check, check_choice, meta
from gdas.configs.search import IMAGE_SPACES, MODULE_PREFIX, SEARCH_PRESETS, SearchConfig
from gdas.configs.runtime import validate_runtime


def _check_samples(samples: int, warmup: int) -> None:
    check(samples >= 1 and warmup >= 0, f"--samples must be >= 1 and --warmup >= 0, got {samples} and {warmup}")


@dataclass(frozen=True)
class BenchConfig:
    """What `gdas bench search|data` measures on: space, supernet size, batch, samples, device settings."""

    space: str = field(default="darts", metadata=meta(
        f"search space of the measured supernet: {', '.join(IMAGE_SPACES)} or module:package.module:Factory"))
    device: str = field(default="auto", metadata=meta("auto, cpu, cuda or cuda:N"))
    C: Optional[int] = field(default=None, metadata=meta("initial channels (default: the space's CIFAR-10 search)"))
    N: Optional[int] = field(default=None, metadata=meta("cells per block (default: the space's CIFAR-10 search)"))
    batch: int = field(default=64, metadata=meta("images per step"))
    samples: int = field(default=10, metadata=meta("architecture samples timed (one step per kind each)"))
    warmup: int = field(default=2, metadata=meta("untimed samples per kind before timing"))
    threads: Optional[int] = field(default=2, metadata=meta("CPU threads (torch.set_num_threads)"))
    frc: bool = field(default=False, metadata=meta("darts space: fixed reduction cell (search the normal cell only)"))
    amp: str = field(default="none", metadata=meta("mixed precision on CUDA", ("none", "bf16")))
    channels_last: Optional[bool] = field(default=None, metadata=meta(
        "channels_last memory format (default auto: on on the CPU, off on CUDA)"))
    seed: int = field(default=0, metadata=meta("seed of weights, data and samples"))
    memory: bool = field(default=True, metadata=meta("measure peak memory (CPU: one child process per kind)"))

    def search_config(self, sampler: str) -> SearchConfig:
        """The search config `gdas search` would run: the space's CIFAR-10 preset at this size, synthetic data."""
        base = SEARCH_PRESETS[{"nb201": "nb201-cifar10", "darts": "cifar10"}.get(self.space, "mobilenet-cifar10")]
        return SearchConfig(preset="bench", space=self.space, dataset="synthetic", synthetic_train=2 * self.batch,
                            C=base.C if self.C is None else self.C, N=base.N if self.N is None else self.N,
                            steps=base.steps, w_nesterov=base.w_nesterov, w_weight_decay=base.w_weight_decay,
                            frc=self.frc, sampler=sampler, batch_size=self.batch, epochs=1, seed=self.seed,
                            device=self.device, amp=self.amp, channels_last=self.channels_last, threads=self.threads)

    def validate(self) -> None:
        if not self.space.startswith(MODULE_PREFIX):
            check_choice(self.space, IMAGE_SPACES, "--space")
        _check_samples(self.samples, self.warmup)
        validate_runtime(self.device, self.amp, self.threads)
        self.search_config("gdas").validate()


@dataclass(frozen=True)
class LMBenchConfig:
    """What `gdas bench lm` measures on: the vocabulary, sizes (default: each demo preset's), samples, device."""

    vocab: int = field(default=10000, metadata=meta("vocabulary size (the Shakespeare corpus's by default)"))
    genotype: str = field(default="GDAS_RNN", metadata=meta("recurrent genotype of the measured language model"))
    nhid: Optional[int] = field(default=None, metadata=meta(
        "embedding = hidden size (default: train-lm's and search-rnn's shakespeare presets)"))
    batch: Optional[int] = field(default=None, metadata=meta("batch (default: each shakespeare preset's)"))
    bptt: Optional[int] = field(default=None, metadata=meta("window length (default: each shakespeare preset's)"))
    samples: int = field(default=10, metadata=meta("timed steps of each kind"))
    warmup: int = field(default=3, metadata=meta("untimed steps of each kind before timing"))
    threads: Optional[int] = field(default=1, metadata=meta("CPU threads (torch.set_num_threads)"))
    device: str = field(default="auto", metadata=meta("auto, cpu, cuda or cuda:N"))
    seed: int = field(default=0, metadata=meta("seed of weights, tokens and samples"))
    autograd: bool = field(default=False, metadata=meta(
        "time the autograd reference path of the cells and the decoder (what they ran before the fused window)"))

    def validate(self) -> None:
        check(self.vocab >= 2, f"--vocab must be at least 2, got {self.vocab}")
        for name in ("nhid", "batch"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"--{name} must be at least 1, got {value}")
        check(self.bptt is None or self.bptt >= 2, f"--bptt must be at least 2, got {self.bptt}")
        _check_samples(self.samples, self.warmup)
        validate_runtime(self.device, "none", self.threads)
