"""The registry of search spaces: name -> `SearchSpace`; each built-in space is one subpackage."""

from __future__ import annotations

import importlib
from typing import Any

from gdas.errors import GdasError
from gdas.spaces.base import SearchSpace
from gdas.spaces.module.factory import PREFIX as MODULE_PREFIX
from gdas.spaces.module.space import space_for

# Each module defines SPACE (a SearchSpace); adding a space is one subpackage plus one line here.
BUILTIN = ("gdas.spaces.darts.space", "gdas.spaces.nb201.space", "gdas.spaces.rnn.space", "gdas.spaces.mobilenet.space")
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
    """A registered space by name, or the module space of a `module:package.module:Factory` path."""
    if isinstance(name, str) and name.startswith(MODULE_PREFIX):
        return space_for(name)
    spaces = all_spaces()
    if name not in spaces:
        raise GdasError(f"unknown search space {name!r}; choose one of: {', '.join(spaces)}, or a module of your "
                        f"own as {MODULE_PREFIX}package.module:Factory")
    return spaces[name]


def space_of(genotype: Any) -> SearchSpace:
    """The space a genotype belongs to (by its JSON type; a module space's choice map names its space)."""
    named = getattr(genotype, "space", None)
    if isinstance(named, str):
        return get_space(named)
    for space in all_spaces().values():
        if space.genotype_kind == genotype.kind:
            return space
    raise GdasError(f"no registered search space reads {genotype.kind!r} genotypes")


def space_names() -> tuple[str, ...]:
    return tuple(all_spaces())
