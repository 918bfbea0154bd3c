"""Shared checks of latency layouts: the modules a layout says a genotype runs, and those a network does run."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import nn


def picked_modules(layout: Any, choices: dict, ops: Sequence[str] = ()) -> list[tuple[str, tuple]]:
    """(repr, input shape) of each module the layout builds for the ops `choices` picks (a place's own candidates,
    else `ops`), sorted; places where the op runs nothing are left out."""
    return sorted((repr(module), place.input_shape) for place in layout.places
                  for k, op in enumerate(place.ops or ops) if choices[place.matrix][place.row, k]
                  if (module := place.build(op)) is not None)


def modules_run(network: nn.Module, modules: Iterable[nn.Module], x: torch.Tensor) -> list[tuple[str, tuple]]:
    """(repr, input shape) of each of `modules` as `network` runs them on `x`, sorted."""
    seen: list[tuple[str, tuple]] = []
    hooks = [m.register_forward_hook(lambda m, inputs, _: seen.append((repr(m), tuple(inputs[0].shape[1:]))))
             for m in modules]
    try:
        with torch.no_grad():
            network(x)
    finally:
        for hook in hooks:
            hook.remove()
    return sorted(seen)
