"""Freezing a model's choices: each replaced by what was chosen, leaving a plain module (ordinary state_dict,
TorchScript and ONNX export)."""

from __future__ import annotations

from typing import List, Mapping, Union

import torch
from torch import nn

from gdas.nn.blocks import Choice, ChoiceBlock, InputChoice, Repeat
from gdas.nn.labels import Places, check_choice_map, labelled


class Select(nn.Module):
    """A frozen InputChoice: the fixed inputs it picked, combined as it did (nothing is sampled)."""

    def __init__(self, indices: List[int], reduction: str):
        super().__init__()
        self.indices: List[int] = list(indices)
        self.reduction = reduction

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        chosen = [inputs[i] for i in self.indices]
        if self.reduction == "concat":
            return torch.cat(chosen, dim=1)
        total = chosen[0]
        for x in chosen[1:]:
            total = total + x
        return total / len(chosen) if self.reduction == "mean" else total

    def extra_repr(self) -> str:
        return f"indices={self.indices}, reduction={self.reduction!r}"


def _frozen(block: ChoiceBlock, index: Union[int, List[int]]) -> nn.Module:
    if isinstance(block, Choice):
        return block.candidates[block.names[index]]
    if isinstance(block, Repeat):
        depth = block.depths[index]
        return nn.Sequential(*block.blocks[:depth]) if depth else nn.Identity()
    assert isinstance(block, InputChoice)
    return Select(index if isinstance(index, list) else [index], block.reduction)


def freeze_choices(model: nn.Module, choices: Mapping[str, object], what: str = "the model") -> nn.Module:
    """`model` with every choice replaced, in place, by its chosen candidate (a choice map {label: value});
    choices inside candidates that were not chosen vanish with them. Returns the model (or the root's
    replacement when the model is itself a choice)."""
    groups = labelled(model, what)
    indices = check_choice_map(groups, choices)
    label_of = {id(block): label for label, places in groups.items() for _, block in places}

    def replace(module: nn.Module) -> nn.Module:
        if isinstance(module, ChoiceBlock):
            module = _frozen(module, indices[label_of[id(module)]])
            return replace(module) if not isinstance(module, Select) else module
        for name, child in list(module.named_children()):
            new = replace(child)
            if new is not child:
                setattr(module, name, new)
        return module

    return replace(model)


__all__ = ["Places", "Select", "freeze_choices"]
