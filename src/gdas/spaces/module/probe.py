"""One dry forward of a module space with every candidate running: each candidate's output shape checked against
its siblings', and each candidate's parameters and mult-adds counted at the shapes it sees (`--cost`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
from torch import nn

from gdas.errors import GdasError
from gdas.flops import count_mult_adds_on, count_parameters, mult_adds_of
from gdas.nn.blocks import Choice, ChoiceBlock, Repeat
from gdas.nn.freeze import freeze_choices
from gdas.sampler import CellArch

Owner = tuple[str, tuple[int, ...]]  # (label, the candidates a module belongs to)


def shape_of(value: Any) -> Any:
    """A comparable description of an output's shape (tensors, tuples and lists of them)."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)):
        return tuple(shape_of(v) for v in value)
    return type(value).__name__


@dataclass
class Probe:
    """What a dry forward saw: each place's candidate output shapes, and per-candidate costs (millions) by label."""

    shapes: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> {candidate: shape}
    mult_adds: dict[str, list[float]] = field(default_factory=dict)
    params: dict[str, list[float]] = field(default_factory=dict)
    fixed: dict[str, float] = field(default_factory=lambda: {"mult-adds": 0.0, "params": 0.0})

    def costs(self, kind: str) -> dict[str, torch.Tensor]:
        """{label: (1, candidates)} of `kind` ("mult-adds" or "params"), the A matrices' shape."""
        table = self.mult_adds if kind == "mult-adds" else self.params
        return {label: torch.tensor([row], dtype=torch.float32) for label, row in table.items()}


def _owners(groups: Mapping[str, list[tuple[str, ChoiceBlock]]]) -> dict[int, Owner]:
    """Each module inside a candidate -> the innermost choice it belongs to (a Repeat's block i belongs to every
    depth above i); modules outside every choice are the fixed part."""
    owners: dict[int, Owner] = {}
    places = sorted(((path, label, block) for label, ps in groups.items() for path, block in ps),
                    key=lambda t: t[0].count(".") if t[0] else -1)  # outer choices first, inner ones overwrite
    for _, label, block in places:
        if isinstance(block, Choice):
            for k, cand in enumerate(block.candidates.values()):
                for m in cand.modules():
                    owners[id(m)] = (label, (k,))
        elif isinstance(block, Repeat):
            for i, b in enumerate(block.blocks):
                deeper = tuple(k for k, d in enumerate(block.depths) if d > i)
                for m in b.modules():
                    owners[id(m)] = (label, deeper)
    return owners


def _all_running(supernet: Any) -> list[CellArch]:
    """Archs under which every candidate runs (the no-acceleration form of a draw of the first candidates)."""
    archs = []
    device = next(iter(supernet.arch)).device
    for label, width, picks in zip(supernet.labels, supernet.widths, supernet.picks):
        first = list(range(picks))
        weights = torch.zeros(1, width, device=device)
        weights[0, first] = 1.0
        archs.append(CellArch(weights, None, [first if picks > 1 else 0]))
    return archs


def probe(supernet: Any, example: Any) -> Probe:
    """Run `supernet.net` once on `example` (eval mode, no gradients) with every candidate running; a candidate
    whose output shape differs from its siblings' is a one-line error naming the label, the place and the
    shapes."""
    result = Probe()
    groups = supernet.groups
    owners = _owners(groups)
    for label, width in zip(supernet.labels, supernet.widths):
        result.mult_adds[label], result.params[label] = [0.0] * width, [0.0] * width
    hooks = []

    def count(module: nn.Module, _inputs: Any, output: Any) -> None:
        _add(result.mult_adds, result.fixed, "mult-adds", owners.get(id(module)), mult_adds_of(module, output) / 1e6)

    for m in supernet.net.modules():
        own = sum(p.numel() for p in m.parameters(recurse=False)) / 1e6
        _add(result.params, result.fixed, "params", owners.get(id(m)), own)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(count))
    for label, places in groups.items():
        for path, block in places:
            hooks += _shape_hooks(path or "root", block, result.shapes)
    was_training = supernet.training
    supernet.eval()
    try:
        with torch.no_grad(), supernet.following(_all_running(supernet)):
            supernet.net(example)
    except RuntimeError as exc:
        _check_shapes(groups, result.shapes)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise GdasError(f"the model failed on a batch of the data ({first}); check that it reads inputs of shape "
                        f"{shape_of(example)}") from None
    finally:
        for h in hooks:
            h.remove()
        supernet.train(was_training)
    _check_shapes(groups, result.shapes)
    return result


def _add(table: dict[str, list[float]], fixed: dict[str, float], kind: str, owner: Optional[Owner],
         value: float) -> None:
    if owner is None:
        fixed[kind] += value
    else:
        for k in owner[1]:
            table[owner[0]][k] += value


def _shape_hooks(path: str, block: ChoiceBlock, shapes: dict[str, dict[str, Any]]) -> list:
    seen = shapes.setdefault(path, {})

    def record(name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, out: Any) -> None:  # None: the output is left as it is
            seen.setdefault(name, shape_of(out))
        return hook

    def record_input(_module: nn.Module, args: Any) -> None:
        seen.setdefault("0", shape_of(args[0]))

    if isinstance(block, Choice):
        return [cand.register_forward_hook(record(name)) for name, cand in block.candidates.items()]
    if isinstance(block, Repeat):
        hooks = [block.register_forward_pre_hook(record_input)]
        return hooks + [b.register_forward_hook(record(str(i + 1))) for i, b in enumerate(block.blocks)]
    return []


def _check_shapes(groups: Mapping[str, list[tuple[str, ChoiceBlock]]], shapes: dict[str, dict[str, Any]]) -> None:
    for label, places in groups.items():
        for path, block in places:
            seen = shapes.get(path or "root", {})
            names = block.names if isinstance(block, Choice) else (
                [str(d) for d in block.depths] if isinstance(block, Repeat) else [])
            found = [(n, seen[n]) for n in names if n in seen]
            odd = [(n, s) for n, s in found if s != found[0][1]]
            if odd:
                what = "depth" if isinstance(block, Repeat) else "candidate"
                raise GdasError(f"choice {label!r} at {path or 'the root'}: {what} {odd[0][0]} gives an output of "
                                f"shape {odd[0][1]}, but {what} {found[0][0]} gives {found[0][1]}; every {what} of a "
                                "choice must give the same shape (adjust its channels, stride or padding)")


def chosen_cost(net: nn.Module, choices: Mapping[str, Any], example: Any) -> dict[str, float]:
    """{"params": M, "mult-adds": M} of the plain model a choice map leaves (counted on a frozen copy)."""
    frozen = freeze_choices(copy.deepcopy(net), choices)
    return {"params": count_parameters(frozen, ()) / 1e6, "mult-adds": count_mult_adds_on(frozen, example) / 1e6}
