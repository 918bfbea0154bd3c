"""The choices a user writes into a plain PyTorch module: among candidate modules, among inputs, over depth."""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from gdas.errors import GdasError
from gdas.sampler import CellArch, candidate_output, detached, idle_output

REDUCTIONS = ("sum", "mean", "concat")


class ChoiceBlock(nn.Module):
    """What every choice shares: its `label` (None: named by its path in the model), its candidates' names, how
    many it picks, and the draw it follows in the current forward pass (set by the search network)."""

    names: tuple[str, ...]
    n_chosen: int = 1

    def __init__(self, label: Optional[str]):
        super().__init__()
        if label is not None and (not isinstance(label, str) or not label):
            raise GdasError(f"a choice's label must be a non-empty string, got {label!r}")
        self.label = label
        self.arch: Optional[CellArch] = None  # a plain attribute: never in the state dict

    def signature(self) -> tuple[Any, ...]:
        """What every choice under one label must share: its kind, candidates and how many it picks."""
        return type(self).__name__, self.names, self.n_chosen

    def describe(self) -> str:
        """The candidates in words, for error messages."""
        return ", ".join(self.names) + (f" (picks {self.n_chosen})" if self.n_chosen > 1 else "")

    def current(self) -> CellArch:
        if self.arch is None:
            raise GdasError(f"choice {self.label!r} has no architecture to follow: run the model through "
                            "gdas.search, or gdas.freeze it with a choice map for a plain module")
        return self.arch


def _names(candidates: Union[Mapping[str, nn.Module], Sequence[nn.Module]]) -> tuple[tuple[str, ...], list]:
    items = list(candidates.items()) if isinstance(candidates, Mapping) else [
        (str(i), m) for i, m in enumerate(candidates)]
    for name, module in items:
        if not isinstance(name, str) or not name or "." in name:
            raise GdasError(f"candidate name {name!r} must be a non-empty string without dots")
        if not isinstance(module, nn.Module):
            raise GdasError(f"candidate {name!r} must be an nn.Module, got a {type(module).__name__}")
    return tuple(name for name, _ in items), [m for _, m in items]


class Choice(ChoiceBlock):
    """One of several candidate modules, each called with the choice's own arguments: a dict {name: module}
    (or a list, named "0", "1", ...). Choices with the same `label` follow one distribution."""

    def __init__(self, candidates: Union[Mapping[str, nn.Module], Sequence[nn.Module]], *,
                 label: Optional[str] = None):
        super().__init__(label)
        self.names, modules = _names(candidates)
        if len(self.names) < 2:
            raise GdasError(f"a Choice needs at least two candidates, got {len(self.names)}"
                            f"{f' (label {label!r})' if label else ''}")
        self.candidates = nn.ModuleDict(dict(zip(self.names, modules)))

    @classmethod
    def from_values(cls, build: Callable[[Any], nn.Module], values: Iterable[Any], *,
                    label: Optional[str] = None) -> "Choice":
        """A choice among `build(value)` for each value (a choice among a constructor's values), named str(value)."""
        return cls({str(v): build(v) for v in values}, label=label)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = candidate_output(list(self.candidates.values()), lambda op: op(*args, **kwargs), self.current(), 0,
                               idle_run=lambda op: op(*detached(args), **detached(kwargs)))
        assert out is not None
        return out


class InputChoice(ChoiceBlock):
    """`n_chosen` of `n_candidates` inputs (a list given to forward), combined by `reduction`: sum, mean or
    concat (along dim 1, in input order)."""

    def __init__(self, n_candidates: int, n_chosen: int = 1, *, reduction: str = "sum",
                 label: Optional[str] = None):
        super().__init__(label)
        if reduction not in REDUCTIONS:
            raise GdasError(f"reduction {reduction!r} is not one of: {', '.join(REDUCTIONS)}")
        if not (isinstance(n_candidates, int) and isinstance(n_chosen, int) and 1 <= n_chosen < n_candidates):
            raise GdasError(f"an InputChoice picks n_chosen of n_candidates inputs with 1 <= n_chosen < "
                            f"n_candidates, got {n_chosen} of {n_candidates}")
        self.names = tuple(str(i) for i in range(n_candidates))
        self.n_chosen, self.reduction = n_chosen, reduction

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        arch = self.current()
        if len(inputs) != len(self.names):
            raise GdasError(f"choice {self.label!r} chooses among {len(self.names)} inputs, but was given "
                            f"{len(inputs)}")
        if arch.indices is not None:  # GDAS: only the drawn inputs
            chosen = _as_list(arch.indices[0])
            terms = [inputs[i] if arch.weights is None else inputs[i] * arch.weights[0, i] for i in chosen]
        elif arch.sampled is not None:  # no acceleration: every input, weighted by the k-hot draw
            chosen = _as_list(arch.sampled[0])
            w = arch.weights[0]
            if self.reduction == "concat":
                terms = [inputs[i] * w[i] for i in chosen]
            else:
                return _reduce([sum(w[i] * x for i, x in enumerate(inputs))], self.reduction, len(chosen))
        else:  # DARTS: every input weighted by softmax(A); a sum of k inputs is k times the mixture
            if self.reduction == "concat":
                raise GdasError(f"choice {self.label!r}: --sampler darts mixes every input, which a concat of "
                                f"{self.n_chosen} of {len(self.names)} cannot hold; use sum or mean, or GDAS")
            w = arch.weights[0]
            mixed = sum(w[i] * x for i, x in enumerate(inputs))
            return mixed * self.n_chosen if self.reduction == "sum" else mixed
        return _reduce(terms, self.reduction, len(terms))


def _as_list(index: Union[int, list[int]]) -> list[int]:
    return list(index) if isinstance(index, list) else [index]


def _reduce(terms: list[torch.Tensor], reduction: str, k: int) -> torch.Tensor:
    if reduction == "concat":
        return torch.cat(terms, dim=1)
    total = sum(terms[1:], terms[0])
    return total / k if reduction == "mean" else total


class Repeat(ChoiceBlock):
    """A stack of blocks whose depth is chosen among `depth` (e.g. (1, 2, 3)): the first d blocks run in turn.
    `blocks`: a factory called with each block's index, or a list of max(depth) modules."""

    def __init__(self, blocks: Union[Callable[[int], nn.Module], Sequence[nn.Module]], depth: Sequence[int], *,
                 label: Optional[str] = None):
        super().__init__(label)
        depths = list(depth) if isinstance(depth, (list, tuple, range)) else None
        if (not depths or len(depths) < 2 or any(not isinstance(d, int) or d < 0 for d in depths)
                or depths != sorted(set(depths))):
            raise GdasError(f"Repeat depth must list at least two distinct depths >= 0 in ascending order, e.g. "
                            f"(1, 2, 3); got {depth!r}")
        self.depths = tuple(depths)
        self.names = tuple(str(d) for d in depths)
        deepest = depths[-1]
        if callable(blocks) and not isinstance(blocks, nn.Module):
            modules = [blocks(i) for i in range(deepest)]
        elif isinstance(blocks, nn.Module):
            modules = [blocks] + [copy.deepcopy(blocks) for _ in range(deepest - 1)]
        else:
            modules = list(blocks)
        if len(modules) != deepest or not all(isinstance(m, nn.Module) for m in modules):
            raise GdasError(f"Repeat needs {deepest} block modules for depth {depths[-1]}, got {len(modules)}")
        self.blocks = nn.ModuleList(modules)

    def forward(self, x: Any) -> Any:
        arch = self.current()
        if arch.indices is not None:  # GDAS: the sampled depth's blocks alone
            k = arch.indices[0]
            for block in self.blocks[:self.depths[k]]:
                x = block(x)
            return x if arch.weights is None else x * arch.weights[0, k]
        # DARTS or no acceleration: every depth's output, mixed; the no-acceleration draw's deeper blocks are idle
        w, sampled = arch.weights[0], None if arch.sampled is None else self.depths[arch.sampled[0]]
        outs = {0: x}
        for i, block in enumerate(self.blocks):
            if sampled is not None and i == sampled:  # the idle blocks pass W no gradient (see candidate_output)
                x = x.detach()
            x = block(x) if sampled is None or i < sampled else idle_output(block, lambda b=block, y=x: b(y), arch)
            outs[i + 1] = x
        return sum(w[k] * outs[d] for k, d in enumerate(self.depths))


def choice_blocks(model: nn.Module) -> list[tuple[str, ChoiceBlock]]:
    """The choices of `model` with their paths, in module order."""
    return [(path, m) for path, m in model.named_modules() if isinstance(m, ChoiceBlock)]
