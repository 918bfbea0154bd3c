"""Where a module space's choices run in its final network (each label's candidates at the input shape they see
there, from the probe's dry forward), the network with them replaced by zeros, and a choice map as one 0/1 row
per label: the `Layout` and `choices` of its latency tables."""

from __future__ import annotations

import copy
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from gdas.errors import GdasError
from gdas.nn.blocks import Choice, ChoiceBlock, Repeat
from gdas.nn.labels import index_of
from gdas.spaces.base import Layout, Place
from gdas.spaces.module.probe import probe
from gdas.spaces.module.supernet import ModuleSupernet

Groups = Mapping[str, list[tuple[str, ChoiceBlock]]]


class Zeros(nn.Module):
    """Zeros of a choice's output shape (one sample's) for a batch of its input: a choice that computes nothing."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor, *_args: Any, **_kwargs: Any) -> torch.Tensor:
        out = x.new_zeros((x.shape[0], *self.shape))
        if out.dim() == 4 and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)  # as the network's own tensors run
        return out


def _check_supported(groups: Groups, what: str) -> None:
    """Latency tables time a Choice's candidates and a Repeat's depths, each on its own, at its input's shape: an
    input choice (its cost is the layers it reads) or a choice inside another's candidate is one line."""
    inside: set[int] = set()
    for places in groups.values():
        for _, block in places:
            for sub in (block.candidates.values() if isinstance(block, Choice) else
                        block.blocks if isinstance(block, Repeat) else ()):
                inside.update(id(m) for m in sub.modules())
    for label, places in groups.items():
        for path, block in places:
            if not isinstance(block, (Choice, Repeat)):
                raise GdasError(f"{what}: choice {label!r} is a {type(block).__name__}; latency tables time Choice "
                                "candidates and Repeat depths only (--cost mult-adds or params count it)")
            if id(block) in inside:
                raise GdasError(f"{what}: choice {label!r} at {path} lies inside another choice's candidate; latency "
                                "tables time choices that are not nested (--cost mult-adds or params count it)")


def _candidate(block: ChoiceBlock, name: str) -> Optional[nn.Module]:
    """The final network's module of candidate `name` (a copy: timing may convert it); depth 0 runs nothing."""
    if isinstance(block, Repeat):
        depth = block.depths[block.names.index(name)]
        return nn.Sequential(*copy.deepcopy(list(block.blocks[:depth]))) if depth else None
    assert isinstance(block, Choice)
    return copy.deepcopy(block.candidates[name])


def _builder(block: ChoiceBlock) -> Callable[[str], Optional[nn.Module]]:
    return lambda name: _candidate(block, name)


def _sample_shape(shape: Any, label: str, what: str) -> tuple[int, ...]:
    if not (isinstance(shape, tuple) and len(shape) >= 2 and all(isinstance(d, int) for d in shape)):
        raise GdasError(f"{what}: choice {label!r} reads {shape!r}, not one tensor; latency tables time choices "
                        "whose input is one tensor")
    return shape[1:]


def module_layout(supernet: ModuleSupernet, example: torch.Tensor, what: str) -> Layout:
    """The places of `supernet.net` (one per choice, on the row of its label) at the shapes one dry forward of
    `example` (one sample) shows, and the network with every choice replaced by zeros of its output shape."""
    groups = supernet.groups
    _check_supported(groups, what)
    seen = probe(supernet, example)
    places = tuple(Place(label, 0, _sample_shape(seen.inputs.get(path or "root"), label, what), _builder(block),
                         ops=tuple(block.names))
                   for label, ps in groups.items() for path, block in ps)

    def free_network() -> nn.Module:
        net = copy.deepcopy(supernet.net)
        for label, ps in groups.items():
            for path, _ in ps:
                out = _sample_shape(next(iter(seen.shapes[path or "root"].values())), label, what)
                if not path:
                    return Zeros(out)
                net.set_submodule(path, Zeros(out))
        return net

    return Layout(places, free_network, tuple(example.shape[1:]))


def choice_rows(groups: Groups, choices: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """{label: (1, candidates)}: 1 at the candidate (or depth) the choice map picks."""
    rows = {}
    for label, value in choices.items():
        if label not in groups:
            raise GdasError(f"the choice map names {label!r}, which the space's network does not hold")
        block = groups[label][0][1]
        row = torch.zeros(1, len(block.names))
        row[0, index_of(block, label, value)] = 1
        rows[label] = row
    return rows
