"""Language-model configs: the recurrent-cell search and the final LM training, with their presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from gdas.configs.algorithm import SearchBase
from gdas.configs.base import Presets, RunConfig, adjust_unset, check, check_choice, meta
from gdas.configs.runtime import validate_runtime

CORPORA = ("ptb", "wt2", "shakespeare", "synthetic")


@dataclass(frozen=True)
class LMConfigBase(RunConfig):
    """Fields shared by the recurrent search and LM training: corpus, sizes, regularisation, runtime."""

    corpus: str = field(default="ptb", metadata=meta(
        "corpus: its folder defaults to data/<corpus> (synthetic: a tiny built-in corpus)", CORPORA))
    data_dir: Optional[str] = field(default=None, metadata=meta(
        "folder holding train.txt, valid.txt and test.txt (overrides data/<corpus>)"))
    train_tokens: Optional[int] = field(default=None, metadata=meta("use only the first N training tokens"))
    valid_tokens: Optional[int] = field(default=None, metadata=meta("use only the first N validation tokens"))
    emsize: int = field(default=300, metadata=meta("embedding size (tied decoder: must equal --nhid)"))
    nhid: int = field(default=300, metadata=meta("hidden size of the recurrent cell"))
    batch_size: int = field(default=128, metadata=meta("training batch (columns of the token stream)",
                                                       aliases=("batch",)))
    eval_batch_size: int = field(default=10, metadata=meta("batch of the validation evaluation"))
    bptt: int = field(default=35, metadata=meta("backpropagation-through-time window"))
    epochs: int = field(default=200, metadata=meta("epochs"))
    steps_per_epoch: Optional[int] = field(default=None, metadata=meta(
        "cap on BPTT windows per epoch (later epochs continue where the last one stopped)"))
    grad_clip: float = field(default=0.25, metadata=meta("gradient-norm clip of the weights (0 disables)"))
    alpha: float = field(default=0.0, metadata=meta("activation regularisation (AR) on the dropped outputs"))
    beta: float = field(default=1e-3, metadata=meta("temporal activation regularisation (TAR)"))
    dropout: float = field(default=0.75, metadata=meta("locked dropout on the cell output"))
    dropouth: float = field(default=0.25, metadata=meta("variational dropout on h inside the cell"))
    dropoutx: float = field(default=0.75, metadata=meta("variational dropout on x inside the cell"))
    dropouti: float = field(default=0.2, metadata=meta("locked dropout on the embedded input"))
    dropoute: float = field(default=0.0, metadata=meta("embedding (whole-word) dropout"))
    seed: int = 0
    device: str = field(default="auto", metadata=meta("auto, cpu, cuda or cuda:N"))
    amp: str = field(default="none", metadata=meta("mixed precision on CUDA", ("none", "bf16")))
    threads: Optional[int] = field(default=None, metadata=meta("CPU threads (torch.set_num_threads)"))

    def validate(self) -> None:
        check_choice(self.corpus, CORPORA, "--corpus")
        for name in ("emsize", "nhid", "batch_size", "eval_batch_size", "epochs"):
            value = getattr(self, name)
            check(value >= 1, f"--{name.replace('_', '-')} must be at least 1, got {value}")
        check(self.emsize == self.nhid, f"the tied decoder needs --emsize equal to --nhid (got {self.emsize} and "
                                        f"{self.nhid}); set both to the same value")
        check(self.bptt >= 2, f"--bptt must be at least 2, got {self.bptt}")
        check(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "--steps-per-epoch must be >= 1")
        for name in ("train_tokens", "valid_tokens"):
            value = getattr(self, name)
            check(value is None or value >= 2, f"--{name.replace('_', '-')} must be at least 2, got {value}")
        for name in ("dropout", "dropouth", "dropoutx", "dropouti", "dropoute"):
            value = getattr(self, name)
            check(0.0 <= value < 1.0, f"--{name} must be in [0, 1), got {value}")
        check(self.grad_clip >= 0 and self.alpha >= 0 and self.beta >= 0,
              "--grad-clip, --alpha and --beta must be >= 0")
        validate_runtime(self.device, self.amp, self.threads)
        super().validate()


# Options of Algorithm 1 that the recurrent space has nothing for: no skip_connect op, no mult-add budget, no
# image memory format, no tabular benchmark. `gdas search-rnn` does not offer them; a config file that sets them
# is refused by `validate` with one line.
RNN_SEARCH_UNSUPPORTED = ("max_skip", "cost", "cost_weight", "cost_target", "latency_table", "channels_last",
                          "benchmark")


@dataclass(frozen=True)
class RNNSearchConfig(LMConfigBase, SearchBase):
    """A recurrent-cell search (GDAS on the DARTS recurrent space): the language-model fields and Algorithm 1's
    options, with the paper's recurrent recipe as defaults; written to config.json."""

    space: str = field(default="rnn", metadata=meta("search space (the DARTS recurrent space)", ("rnn",)))
    steps: int = field(default=8, metadata=meta("nodes of the recurrent cell"))
    w_lr: float = field(default=20.0, metadata=meta("SGD learning rate of the weights W"))
    w_weight_decay: float = 5e-7
    w_momentum: float = field(default=0.0, metadata=meta("momentum of the W SGD"))
    w_lr_min: Optional[float] = field(default=None, metadata=meta(
        "cosine floor of the W learning rate (none: constant, as the paper's recurrent search)"))
    a_lr: float = field(default=3e-3, metadata=meta("Adam learning rate of A"))
    a_beta1: float = 0.9

    def validate(self) -> None:
        check_choice(self.space, ("rnn",), "--space")
        super().validate()  # the language-model fields, then Algorithm 1's options
        check(self.steps >= 1, f"--steps must be at least 1, got {self.steps}")


@dataclass(frozen=True)
class LMTrainConfig(LMConfigBase):
    """Training the language model of a recurrent genotype with NT-ASGD; written to config.json."""

    genotype: str = field(default="GDAS_RNN", metadata=meta(
        "recurrent genotype: registry name, genotype.json, genotype text, or a search-rnn RUN_DIR"))
    emsize: int = field(default=850, metadata=meta("embedding size (tied decoder: must equal --nhid)"))
    nhid: int = field(default=850, metadata=meta("hidden size of the recurrent cell"))
    batch_size: int = field(default=64, metadata=meta("training batch (columns of the token stream)",
                                                      aliases=("batch",)))
    test_batch_size: int = field(default=1, metadata=meta("batch of the final test evaluation"))
    epochs: int = field(default=2000, metadata=meta("epochs"))
    lr: float = field(default=20.0, metadata=meta("SGD / ASGD learning rate (scaled by window length / bptt)"))
    weight_decay: float = 8e-7
    nonmono: int = field(default=5, metadata=meta("NT-ASGD: epochs without improvement before averaging"))
    asgd_epoch: Optional[int] = field(default=None, metadata=meta(
        "average (ASGD) from this epoch on (0-based, as metrics.jsonl counts) at the latest; none: only once validation "
        "stops improving (--nonmono)"))
    dropoute: float = field(default=0.1, metadata=meta("embedding (whole-word) dropout"))

    def fit_to_given(self, preset: "LMTrainConfig") -> "LMTrainConfig":
        """A preset's --asgd-epoch is a share of its epochs: given --epochs alone, it keeps that share."""
        cfg = super().fit_to_given(preset)
        if preset.asgd_epoch is not None and cfg.epochs != preset.epochs:
            cfg = adjust_unset(cfg, {"asgd_epoch": max(1, preset.asgd_epoch * cfg.epochs // preset.epochs)},
                               f"the preset averages from epoch {preset.asgd_epoch} of {preset.epochs}, scaled to "
                               f"--epochs {cfg.epochs}")
        return cfg

    def validate(self) -> None:
        super().validate()
        check(self.test_batch_size >= 1, f"--test-batch-size must be at least 1, got {self.test_batch_size}")
        check(self.lr > 0, f"--lr must be > 0, got {self.lr}")
        check(self.nonmono >= 0, f"--nonmono must be >= 0, got {self.nonmono}")
        check(self.asgd_epoch is None or self.asgd_epoch >= 1, f"--asgd-epoch must be at least 1, got {self.asgd_epoch}")
        check(self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}")


# PTB's training text is 929,589 tokens (end-of-sentence marks included): 7,262 columns of batch 128, 208 windows
# of BPTT 35 an epoch, an A step each.
_PTB_A_STEPS = 200 * -(-(929_589 // 128 - 1) // 35)

_TINY = dict(corpus="synthetic", emsize=16, nhid=16, batch_size=4, eval_batch_size=4, bptt=8, epochs=2,
             steps_per_epoch=4)

RNN_SEARCH_PRESETS: dict[str, RNNSearchConfig] = {
    # The paper: PTB, embedding/hidden 300, batch 128, BPTT 35, 200 epochs: 41,600 A steps at 3e-3 (an A lr the
    # user did not set is scaled to another budget's A steps, at most to 0.1: `SearchBase.fit_a_lr`).
    "ptb": RNNSearchConfig(corpus="ptb", a_lr_steps=_PTB_A_STEPS),
    # The CPU demo on the Shakespeare corpus (`gdas data prepare shakespeare`): minutes on two cores. A
    # 64-unit model needs far lighter dropout and a lower W learning rate than the paper's 300 units (lr
    # 20 with clip 0.25 moves its few weights too far per step and diverges); one thread, since its small
    # matrices gain little from a second one and lose much when the other core is busy.
    "shakespeare": RNNSearchConfig(corpus="shakespeare", emsize=64, nhid=64, batch_size=32, eval_batch_size=32,
                                   bptt=20, epochs=10, steps_per_epoch=80, valid_tokens=20000, w_lr=10.0,
                                   dropout=0.25, dropouth=0.1, dropoutx=0.25, dropouti=0.1, threads=1),
    # Seconds, offline: the built-in synthetic corpus.
    "smoke": RNNSearchConfig(**_TINY),
}

LM_TRAIN_PRESETS: dict[str, LMTrainConfig] = {
    # The paper's PTB evaluation (DARTS / AWD-LSTM recipe).
    "ptb": LMTrainConfig(corpus="ptb"),
    # WikiText-2: 700 units, dropout-h 0.15, wd 5e-7, 3000 epochs.
    "wt2": LMTrainConfig(corpus="wt2", emsize=700, nhid=700, dropouth=0.15, weight_decay=5e-7, epochs=3000),
    # The CPU demo on the Shakespeare corpus: about 6 minutes on one thread (as the search demo), about two passes
    # over the training text. Measured (docs/quality.md): so short a run underfits, so dropout is light (the
    # earlier demo's .4/.1/.3/.1/.05 cost about 19 points of validation perplexity), and averaging (ASGD) over
    # its last third, which NT-ASGD's rule does not start while validation still improves, about 6 more.
    "shakespeare": LMTrainConfig(corpus="shakespeare", emsize=128, nhid=128, batch_size=32, eval_batch_size=32,
                                 test_batch_size=32, epochs=6, steps_per_epoch=270, dropout=0.1, dropouth=0.0,
                                 dropoutx=0.05, dropouti=0.0, dropoute=0.0, nonmono=2, asgd_epoch=4, threads=1),
    # Seconds, offline: the built-in synthetic corpus.
    "smoke": LMTrainConfig(genotype="GDAS_RNN", **{**_TINY, "epochs": 3}, test_batch_size=4, nonmono=0),
}

# `gdas search-rnn` and `gdas train-lm` start from the CPU demo on the Shakespeare corpus.
RNN_SEARCH_TABLE = Presets(RNN_SEARCH_PRESETS, "shakespeare")
LM_TRAIN_TABLE = Presets(LM_TRAIN_PRESETS, "shakespeare")
