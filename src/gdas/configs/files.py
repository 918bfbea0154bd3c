"""Config files (`--config FILE`, `config=` in Python) and the one resolution of a run's config: preset, then
the file's fields, then the options or keyword arguments given with it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, TypeVar

from gdas.configs import base
from gdas.errors import GdasError

C = TypeVar("C")
SUFFIXES = (".json", ".yaml", ".yml")


def _parse(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise GdasError(f"config file {path} must end in .json, .yaml or .yml (its format is read from the name)")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise GdasError(f"config file {path} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GdasError(f"cannot read config file {path} ({getattr(exc, 'strerror', None) or exc}); check the "
                        "file and its permissions") from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise GdasError(f"config file {path} is not valid JSON ({exc.msg} at line {exc.lineno}); fix "
                            "it") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise GdasError(f"config file {path} is not valid YAML{where}; fix it") from None


def read_config_file(path: str | Path, kind: str) -> dict[str, Any]:
    """The fields a config file sets (with `preset` when it names one): a mapping of fields, or a run's own
    config.json ({"kind", "config", "env"}), whose kind must be `kind`."""
    path = Path(path)
    data = _parse(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GdasError(f"config file {path} must hold a mapping of config fields (name: value), not a "
                        f"{type(data).__name__}")
    if "kind" in data and isinstance(data.get("config"), dict):  # a run's config.json, passed back
        if data["kind"] != kind:
            raise GdasError(f"config file {path} is the config of a {data['kind']} run, not a {kind} run; pass "
                            f"it to the matching command (gdas {data['kind']} --config {path})")
        data = data["config"]
    return {str(k): v for k, v in data.items()}


SpaceOf = Callable[[Mapping[str, Any]], Optional[str]]


def _named_space(fields: Mapping[str, Any]) -> Optional[str]:
    return fields.get("space")


def resolve_config(cls: type[C], presets: base.Presets[C], *, kind: str, preset: Optional[str] = None,
                   config: Optional[str | Path] = None, overrides: Optional[Mapping[str, Any]] = None,
                   where: str = "", space_of: SpaceOf = _named_space) -> C:
    """The config of a new run, one way for every source of settings: the preset (`preset`, else the file's,
    else the default one) in the space the settings name (`space_of(fields)`: the `space` field by default, a
    training run's genotype's space; the preset's counterpart in that space is taken), then the fields of the
    `config` file, then `overrides` (options or keyword arguments); every name and type checked. The fields
    set over the preset are recorded in `given`; preset values that do not fit them are adjusted
    (`fit_to_given`, noted in `adjusted`), then the result is validated.

    `where` says in errors where the overrides came from (e.g. "in gdas.search()")."""
    from_file: dict[str, Any] = {}
    recorded: dict[str, Any] = {}  # a run's config.json passed back: what it recorded of its own resolution
    if config is not None:
        raw = read_config_file(config, kind)
        recorded = {name: raw.pop(name) for name in base.RECORD_FIELDS[1:] if name in raw}
        from_file = base.check_fields(cls, raw, f"in {Path(config).name}")
    given = base.check_fields(cls, dict(overrides or {}), where or "given")
    file_preset = from_file.pop("preset", None)
    given.pop("preset", None)
    fields = {**from_file, **given}
    name = presets.canonical(preset or file_preset or presets.default)
    space = space_of(fields)
    if space is not None:
        name = presets.in_space(name, space)
    start = presets.configs[name]
    # Repeating a run keeps its record: what its user set, and what was fitted to it, plus the new options.
    names = set(recorded["given"]) | set(given) if "given" in recorded else set(fields)
    record = {"preset": name, "given": tuple(sorted(names)), "adjusted": tuple(recorded.get("adjusted", ()))}
    cfg = base.apply_overrides(dataclasses.replace(start, **record), fields)
    cfg = cfg.fit_to_given(start)
    cfg.validate()
    return cfg
