"""The user's objective on tensors: a loss (a callable of output and target), an optional metric with its
direction, the defaults for integer labels (cross-entropy, accuracy), and their checks on a first batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from gdas.errors import GdasError

Fn = Callable[[Any, Any], torch.Tensor]
METRIC_MODES = ("higher", "lower")
CROSS_ENTROPY, ACCURACY = "cross-entropy", "accuracy"


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The default loss for integer labels: cross-entropy over dim 1 (logits (N, C, ...), labels (N, ...))."""
    return F.cross_entropy(output.float(), target)


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The default metric for integer labels: the share of argmax(dim 1) equal to the label (per pixel for masks)."""
    return (output.argmax(1) == target).float().mean()


def name_of(fn: Optional[Fn]) -> Optional[str]:
    """How config.json and the reports name a loss or metric: its function or class name."""
    if fn is None:
        return None
    if fn is cross_entropy:
        return CROSS_ENTROPY
    if fn is accuracy:
        return ACCURACY
    return getattr(fn, "__name__", None) or type(fn).__name__


@dataclass(frozen=True)
class Objective:
    """What a search or training run on tensors minimises (`loss`) and reports / selects by (`metric`, whose
    `mode` says whether higher or lower is better; no metric: the loss, lower is better)."""

    loss: Fn
    metric: Optional[Fn] = None
    mode: str = "higher"

    @property
    def loss_name(self) -> str:
        return name_of(self.loss) or "loss"

    @property
    def metric_name(self) -> Optional[str]:
        return name_of(self.metric)

    def score_key(self) -> str:
        """The metrics.jsonl field that selection reads: valid_<metric>, else valid_loss."""
        return f"valid_{self.metric_name}" if self.metric is not None else "valid_loss"

    def better(self) -> str:
        """"higher" or "lower": the direction of `score_key`."""
        return self.mode if self.metric is not None else "lower"


def integer_labels(target: Any) -> bool:
    return isinstance(target, torch.Tensor) and not target.is_floating_point() and not target.is_complex() \
        and target.dtype != torch.bool


def make_objective(loss: Optional[Fn], metric: Optional[Fn], mode: str, sample_target: Any) -> Objective:
    """The objective of a run: the user's loss and metric, or cross-entropy and accuracy for integer labels."""
    if mode not in METRIC_MODES:
        raise GdasError(f"--metric-mode {mode!r} is not one of: {', '.join(METRIC_MODES)}")
    for what, fn in (("loss", loss), ("metric", metric)):
        if fn is not None and not callable(fn):
            raise GdasError(f"{what} must be a callable of (output, target), got a {type(fn).__name__}")
    if loss is None:
        if not integer_labels(sample_target):
            raise GdasError("the targets are not integer labels, so there is no default loss; pass "
                            "loss=fn(output, target), e.g. loss=torch.nn.MSELoss()")
        return Objective(cross_entropy, accuracy if metric is None else metric, mode if metric is not None else "higher")
    return Objective(loss, metric, mode)


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def check_on_batch(objective: Objective, output: Any, target: Any) -> None:
    """One-line errors for a loss or metric that cannot be used with the model's output and the targets, found
    on a first batch before any run folder exists."""
    if (isinstance(output, torch.Tensor) and isinstance(target, torch.Tensor) and target.is_floating_point()
            and output.shape != target.shape):
        raise GdasError(f"the model's output {_shape(output)} and the targets {_shape(target)} differ in shape, so "
                        "an elementwise loss would broadcast them; reshape the output or the targets to match")
    for what, fn in (("loss", objective.loss), ("metric", objective.metric)):
        if fn is None:
            continue
        try:
            value = fn(output, target)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise GdasError(f"the {what} cannot compare the model's output {_shape(output)} with the targets "
                            f"{_shape(target)} ({first}); make the output match the targets or pass another "
                            f"{what}") from None
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise GdasError(f"the {what} must return a scalar tensor, but returned {_shape(value)} for a batch; "
                            "reduce it (e.g. reduction='mean')")
        if what == "loss" and not value.is_floating_point():
            raise GdasError(f"the loss must return a floating-point scalar, got {value.dtype}")
