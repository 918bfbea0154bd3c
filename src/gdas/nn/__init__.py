"""Choices in plain PyTorch modules: `Choice` among candidate modules, `InputChoice` among inputs, `Repeat` over
depth. A module holding them is a search space for `gdas.search`; `gdas.freeze` turns it into a plain module."""

from gdas.nn.blocks import Choice, ChoiceBlock, InputChoice, Repeat
from gdas.nn.freeze import Select

__all__ = ["Choice", "ChoiceBlock", "InputChoice", "Repeat", "Select"]
