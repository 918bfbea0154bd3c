"""Guards against skip-connect collapse: the `--max-skip` record, the early stop after DARTS+ (`--stop-on-collapse`)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import torch

from gdas.configs.algorithm import SearchBase
from gdas.spaces.base import SearchSpace


def guarded_cell(genotype: Any) -> tuple[str, list[str]]:
    """(name, ops) of the cell the guards judge and --max-skip limits, `param_free_count`'s: the first of
    `cell_ops()` (darts: the normal cell; nb201: the cell)."""
    return next(iter(genotype.cell_ops().items()))


def skip_count(genotype: Any) -> int:
    """skip_connect ops of the guarded cell alone (the darts reduction cell is neither limited nor counted)."""
    return guarded_cell(genotype)[1].count("skip_connect")


def first_cell(genotype: Any) -> str:
    """How the reports name the guarded cell: "normal cell", "cell" (nb201) or "model" (a module space)."""
    name = guarded_cell(genotype)[0]
    return name if name in ("cell", "model") else f"{name} cell"


class CollapseGuard:
    """Watches the genotype derived after every epoch; its state travels in the search checkpoint.

    Collapse is judged on A's own derivation (without --max-skip, which would hide it) by the guarded cell's
    parameter-free ops (`param_free_count`: pools and skips, nb201 `none` too; DARTS+ counts skip connections
    alone); the genotype kept is the (max-skip limited) one of the last epoch below the limit. `events` lists
    what the guards did.
    """

    def __init__(self, cfg: SearchBase, space: SearchSpace):
        self.cfg, self.space = cfg, space
        self.max_skip: Optional[int] = cfg.max_skip
        self.limit: Optional[int] = cfg.stop_on_collapse
        self.patience: int = cfg.collapse_patience
        self.streak = 0
        self.current: Optional[dict[str, Any]] = None  # the last epoch's {"epoch", "genotype", "replaced"}
        self.healthy: Optional[dict[str, Any]] = None  # the same, of the last epoch below the collapse limit
        self.stopped: Optional[dict[str, Any]] = None  # {"epoch", "reason", "kept_epoch"} once stopped
        self.events: list[dict[str, Any]] = []

    def observe(self, epoch: int, probs: Mapping[str, Optional[torch.Tensor]], genotype: Any) -> dict[str, Any]:
        """Record an epoch's genotype; returns the fields genotypes.jsonl adds for it."""
        raw = genotype
        record: dict[str, Any] = {}
        if self.max_skip is not None:
            raw = self.space.derive(probs, dataclasses.replace(self.cfg, max_skip=None))
            replaced = skip_count(raw) - skip_count(genotype)
            record["max_skip_replaced"] = replaced
            if replaced and not any(e["guard"] == "max-skip" for e in self.events):
                self.events.append(self._max_skip_event(epoch, first_cell(raw), skip_count(raw), replaced,
                                                        "first acted"))
        self.current = {"epoch": epoch, "genotype": genotype.to_json(), "replaced": record.get("max_skip_replaced", 0),
                        "raw_skips": skip_count(raw)}
        if self.limit is None:
            return record
        count = raw.param_free_count()
        self.streak = self.streak + 1 if count >= self.limit else 0
        if not self.streak:
            self.healthy = dict(self.current)
        if self.streak >= self.patience and self.stopped is None:
            kept = "no epoch was healthy: kept this epoch's genotype" if self.healthy is None else \
                f"kept the genotype of epoch {self.healthy['epoch']}"
            reason = (f"the derived {first_cell(raw)} had {count} parameter-free ops (limit {self.limit}) for "
                      f"{self.streak} epoch{'s' if self.streak > 1 else ''} in a row")
            self.stopped = {"epoch": epoch, "reason": reason,
                            "kept_epoch": None if self.healthy is None else self.healthy["epoch"]}
            self.events.append({"epoch": epoch, "guard": "stop-on-collapse", "why": f"{reason}; {kept}"})
        return record

    def _max_skip_event(self, epoch: int, cell: str, skips: int, replaced: int, when: str) -> dict[str, Any]:
        return {"epoch": epoch, "guard": "max-skip",
                "why": f"{when}: the derived {cell} had {skips} skip_connect ops (limit {self.max_skip}); the "
                       f"{replaced} least likely were replaced by the best ops with parameters"}

    @property
    def stop(self) -> bool:
        return self.stopped is not None

    def kept(self) -> Optional[dict[str, Any]]:
        """The epoch record whose genotype the run keeps (None before any epoch)."""
        return (self.healthy or self.current) if self.stopped else self.current

    def summary(self) -> dict[str, Any]:
        """The summary.json fields of the guards that were set."""
        out: dict[str, Any] = {}
        events = list(self.events)
        kept = self.kept()
        if self.max_skip is not None:
            out["max_skip"] = self.max_skip
            out["max_skip_replaced"] = kept["replaced"] if kept else 0
            if kept and kept["replaced"]:
                cell = first_cell(self.space.from_json(kept["genotype"]))
                event = self._max_skip_event(kept["epoch"], cell, kept["raw_skips"], kept["replaced"], "final genotype")
                if all(e["epoch"] != event["epoch"] for e in events if e["guard"] == "max-skip"):
                    events.append(event)
        if self.limit is not None:
            out["stop_on_collapse"] = self.limit
            if self.stopped:
                out["stopped_early"] = dict(self.stopped)
        if self.max_skip is not None or self.limit is not None:
            out["guards"] = sorted(events, key=lambda e: e["epoch"])
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"streak": self.streak, "current": self.current, "healthy": self.healthy, "stopped": self.stopped,
                "events": self.events}

    def load_state_dict(self, state: Optional[dict[str, Any]]) -> None:
        if state:  # checkpoints from before the guards have none
            self.streak, self.current, self.healthy = state["streak"], state["current"], state["healthy"]
            self.stopped, self.events = state["stopped"], list(state["events"])
