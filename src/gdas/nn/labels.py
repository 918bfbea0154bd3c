"""Labels and choice maps: a model's choices grouped by label (one distribution each), and the readable value of
a choice (a candidate's name, a depth, an input index or a list of them) in a JSON choice map."""

from __future__ import annotations

from typing import Any, Mapping, Union

from torch import nn

from gdas.configs.base import closest_hint
from gdas.errors import GdasError
from gdas.nn.blocks import Choice, ChoiceBlock, InputChoice, Repeat, choice_blocks

ChoiceValue = Union[str, int, list]  # a Choice's candidate name, a Repeat's depth, an InputChoice's input(s)
Places = list[tuple[str, ChoiceBlock]]


def labelled(model: nn.Module, what: str = "the model") -> dict[str, Places]:
    """{label: [(path, choice), ...]} in module order; a label's choices must share their candidates. A model
    without choices is a one-line error naming `what`."""
    groups: dict[str, Places] = {}
    for path, block in choice_blocks(model):
        groups.setdefault(block.label or path or "root", []).append((path, block))
    if not groups:
        raise GdasError(f"{what} has no choices to search: put gdas.nn.Choice, InputChoice or Repeat modules in "
                        "it (docs/spaces.md)")
    for label, places in groups.items():
        (first_path, first), *rest = places
        for path, block in rest:
            if block.signature() != first.signature():
                raise GdasError(f"the choices labelled {label!r} at {first_path or 'the root'} and {path} differ "
                                f"({type(first).__name__} of {first.describe()} vs {type(block).__name__} of "
                                f"{block.describe()}); give them the same candidates or different labels")
    return groups


def value_of(block: ChoiceBlock, index: Union[int, list[int]]) -> ChoiceValue:
    """The choice-map value of candidate `index` (a list of indices for an InputChoice of k > 1)."""
    if isinstance(block, Repeat):
        return block.depths[index]
    if isinstance(block, InputChoice):
        return sorted(index) if block.n_chosen > 1 else index
    return block.names[index]


def index_of(block: ChoiceBlock, label: str, value: Any) -> Union[int, list[int]]:
    """The candidate index (a sorted list for an InputChoice of k > 1) of a choice-map value; a value the choice
    does not hold is a one-line error naming the label and what it holds."""
    if isinstance(block, InputChoice):
        values = value if isinstance(value, list) else [value]
        ok = (len(values) == block.n_chosen and len(set(values)) == len(values)
              and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(block.names) for v in values))
        if not ok:
            want = "an input index" if block.n_chosen == 1 else f"a list of {block.n_chosen} distinct input indices"
            raise GdasError(f"choice {label!r} takes {want} in 0..{len(block.names) - 1}, got {value!r}")
        return sorted(values) if block.n_chosen > 1 else values[0]
    if isinstance(block, Repeat):
        value = int(value) if isinstance(value, str) and value.isdigit() else value  # a depth read from text
        if value not in block.depths or isinstance(value, bool):
            raise GdasError(f"choice {label!r} is a depth among {list(block.depths)}, got {value!r}")
        return block.depths.index(value)
    assert isinstance(block, Choice)
    value = str(value) if isinstance(value, int) and not isinstance(value, bool) else value  # "3" read as 3
    if value not in block.names:
        raise GdasError(f"choice {label!r} has no candidate {value!r}{closest_hint(str(value), block.names)}; its "
                        f"candidates: {', '.join(block.names)}")
    return block.names.index(value)


def check_choice_map(groups: Mapping[str, Places], choices: Mapping[str, Any]) -> dict[str, Union[int, list[int]]]:
    """{label: candidate index} of a choice map for a model's labelled choices: every label given, none unknown."""
    unknown = [label for label in choices if label not in groups]
    if unknown:
        raise GdasError(f"the choice map names {unknown[0]!r}, which is no label of the model"
                        f"{closest_hint(str(unknown[0]), groups)}; its labels: {', '.join(groups)}")
    missing = [label for label in groups if label not in choices]
    if missing:
        raise GdasError(f"the choice map has no choice for {', '.join(map(repr, missing))}; give one for every "
                        "label (a search's genotype.json has them all)")
    return {label: index_of(places[0][1], label, choices[label]) for label, places in groups.items()}
