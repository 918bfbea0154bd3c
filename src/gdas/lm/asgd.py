"""NT-ASGD (AWD-LSTM): SGD until validation stops improving, then averaged SGD; evaluation with averaged weights."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Optional

import torch
from torch import nn


class NTASGD:
    """Owns the language model's optimizer and the non-monotonic switch to torch.optim.ASGD.

    After each evaluation, `step_epoch(val_loss)` switches (AWD-LSTM's rule) once more than `nonmono` earlier
    losses are recorded and `val_loss` is worse than the best of all of them but the last `nonmono`.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.0, nonmono: int = 5):
        if nonmono < 0:
            raise ValueError(f"nonmono must be >= 0, got {nonmono}")
        self.params = list(params)
        self.lr, self.weight_decay, self.nonmono = lr, weight_decay, nonmono
        self.history: list[float] = []
        self.optimizer: torch.optim.Optimizer = torch.optim.SGD(self.params, lr=lr, weight_decay=weight_decay)

    @property
    def averaging(self) -> bool:
        return isinstance(self.optimizer, torch.optim.ASGD)

    def _make_asgd(self) -> torch.optim.ASGD:
        lr = self.optimizer.param_groups[0]["lr"]
        return torch.optim.ASGD(self.params, lr=lr, t0=0, lambd=0.0, weight_decay=self.weight_decay)

    def step(self) -> None:
        self.optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def step_epoch(self, val_loss: float, force: bool = False) -> bool:
        """Record a validation loss; True when this call switched SGD -> ASGD (by the rule, or because `force`)."""
        # AWD-LSTM checks before appending the new loss; the length guard keeps the slice end >= 1 (a shorter
        # history would make it negative and judge against its first losses only).
        n = len(self.history)
        switch = not self.averaging and (force or n > self.nonmono and val_loss > min(self.history[:n - self.nonmono]))
        if switch:
            self.optimizer = self._make_asgd()
        self.history.append(float(val_loss))
        return switch

    @contextmanager
    def swap_averaged(self) -> Iterator[None]:
        """Inside the block the parameters hold ASGD's running averages (no-op before the switch)."""
        saved: list[tuple[nn.Parameter, torch.Tensor]] = []
        if self.averaging:
            with torch.no_grad():
                for p in self.params:
                    ax: Optional[torch.Tensor] = self.optimizer.state.get(p, {}).get("ax")
                    if ax is not None:
                        saved.append((p, p.detach().clone()))
                        p.copy_(ax)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, value in saved:
                    p.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"averaging": self.averaging, "history": list(self.history), "nonmono": self.nonmono,
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [float(v) for v in state["history"]]
        self.nonmono = int(state.get("nonmono", self.nonmono))
        if state["averaging"] and not self.averaging:
            self.optimizer = self._make_asgd()
        elif not state["averaging"] and self.averaging:
            self.optimizer = torch.optim.SGD(self.params, lr=self.lr, weight_decay=self.weight_decay)
        self.optimizer.load_state_dict(state["optimizer"])
