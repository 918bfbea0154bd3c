"""The registry of search spaces: name -> `SearchSpace`; each built-in space is one subpackage."""

from __future__ import annotations

import importlib
from typing import Any

from gdas.errors import GdasError
from gdas.spaces.base import SearchSpace

# Each module defines SPACE (a SearchSpace); adding a space is one subpackage plus one line here.
BUILTIN = ("gdas.spaces.darts.space", "gdas.spaces.nb201.space", "gdas.spaces.rnn.space")
_SPACES: dict[str, SearchSpace] = {}


def register_space(space: SearchSpace) -> SearchSpace:
    """Add a space (also for spaces defined outside gdas); a name can be registered once."""
    if space.name in _SPACES and _SPACES[space.name] is not space:
        raise ValueError(f"search space {space.name!r} is registered already")
    _SPACES[space.name] = space
    return space


def _load_builtin() -> None:
    if not _SPACES:
        for module in BUILTIN:
            register_space(importlib.import_module(module).SPACE)


def all_spaces() -> dict[str, SearchSpace]:
    _load_builtin()
    return dict(_SPACES)


def get_space(name: str) -> SearchSpace:
    spaces = all_spaces()
    if name not in spaces:
        raise GdasError(f"unknown search space {name!r}; choose one of: {', '.join(spaces)}")
    return spaces[name]


def space_of(genotype: Any) -> SearchSpace:
    """The space a genotype belongs to (by its JSON type)."""
    for space in all_spaces().values():
        if space.genotype_kind == genotype.kind:
            return space
    raise GdasError(f"no registered search space reads {genotype.kind!r} genotypes")


def space_names() -> tuple[str, ...]:
    return tuple(all_spaces())
