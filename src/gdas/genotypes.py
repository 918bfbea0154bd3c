"""Genotypes of every space: the published-cell registry, loading from names/files/JSON/text, saving."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gdas.engine.rundir import atomic_write_bytes
from gdas.errors import GdasError
from gdas.spaces import all_spaces
from gdas.spaces.base import Node
from gdas.spaces.darts.genotype import FIXED, Genotype
from gdas.spaces.rnn.genotype import RNN_PRIMITIVES, RecurrentGenotype

__all__ = ["AnyGenotype", "FIXED", "Genotype", "Node", "RNN_PRIMITIVES", "RecurrentGenotype", "genotype_from_json",
           "load_genotype", "load_genotype_of", "parse_genotype_text", "published", "save_genotype"]

AnyGenotype = Any  # a genotype of any registered space (see spaces.base.GenotypeLike)
GENOTYPE_FILE = "genotype.json"


def published() -> dict[str, AnyGenotype]:
    """Named cells of every space (GDAS, GDAS_FRC, DARTS_V2, GDAS_RNN, ...)."""
    return {name: g for space in all_spaces().values() for name, g in space.published.items()}


def genotype_from_json(data: Any) -> AnyGenotype:
    """Build a genotype from its JSON object (as written by `to_json`); the "type" names its space."""
    if not isinstance(data, dict):
        raise GdasError("malformed genotype JSON: expected an object with 'normal'/'reduce', 'recurrent' or 'arch'")
    kind = data.get("type", "rnn" if "recurrent" in data else "cnn")  # files written before "type" existed
    for space in all_spaces().values():
        if space.genotype_kind == kind:
            return space.from_json(data)
    kinds = ", ".join(s.genotype_kind for s in all_spaces().values())
    raise GdasError(f"malformed genotype JSON: unknown type {kind!r}; known types: {kinds}")


def parse_genotype_text(text: str) -> AnyGenotype:
    """Parse the text form of any space (`str(genotype)`)."""
    for space in all_spaces().values():
        genotype = space.parse(text)
        if genotype is not None:
            return genotype
    raise GdasError(f"malformed genotype text {text.strip()[:60]!r}; expected 'normal: op@i + op@j | ... ; "
                    "reduce: ...|FIXED', 'recurrent: ...' or an NAS-Bench-201 string '|op~0|+|op~0|op~1|+...'")


def _path_is(path: Path, test: str) -> bool:
    """`path.exists()`/`is_dir()`/`is_file()`, False for strings no file system accepts as a name."""
    try:
        return getattr(path, test)()
    except OSError:  # e.g. ENAMETOOLONG for a long JSON or text genotype
        return False


def load_genotype(spec: str | Path) -> AnyGenotype:
    """Resolve a genotype from a registry name, a run directory, a .json file, JSON text or a text form."""
    text = str(spec).strip()
    names = published()
    if text in names:
        return names[text]
    if text.upper() in names:
        return names[text.upper()]
    path = Path(text)
    if not text.startswith(("{", "|")) and ":" not in text or _path_is(path, "exists"):
        if _path_is(path, "is_dir"):
            path = path / GENOTYPE_FILE
        if not _path_is(path, "is_file"):
            raise GdasError(f"no genotype named {text!r}: not a registry name ({', '.join(names)}), "
                            f"a run directory with {GENOTYPE_FILE}, or a .json file")
        text = path.read_text()
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GdasError(f"malformed genotype JSON ({exc.msg} at line {exc.lineno}); fix the file or "
                            "pass a registry name") from None
        return genotype_from_json(data.get("genotype", data) if isinstance(data, dict) else data)
    return parse_genotype_text(text)


def load_genotype_of(spec: str | Path, space: str, hint: str) -> AnyGenotype:
    """`load_genotype(spec)`, refused in one line (ending with `hint`) unless it belongs to `space`."""
    from gdas.spaces import space_of  # the registry loads the spaces, which import this module

    genotype = load_genotype(spec)
    owner = space_of(genotype).name
    if owner != space:
        raise GdasError(f"{str(spec)[:80]} is a {owner} genotype; {hint}")
    return genotype


def save_genotype(genotype: AnyGenotype, path: str | Path) -> None:
    """Write the genotype's JSON form (with its text form alongside for people), atomically."""
    payload = dict(genotype.to_json(), text=str(genotype))
    atomic_write_bytes(Path(path), (json.dumps(payload, indent=2) + "\n").encode())


def __getattr__(name: str) -> Any:
    """`REGISTRY`: the published cells of every space (built on first use: the spaces import this module)."""
    if name == "REGISTRY":
        return published()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
