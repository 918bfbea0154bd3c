"""Config files (`--config FILE`, `config=` in Python) and the one resolution of a run's config: preset, then
the file's fields, then the options or keyword arguments given with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, TypeVar

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


def resolve_config(cls: type[C], presets: Mapping[str, C], default_preset: str, *, kind: str,
                   preset: Optional[str] = None, config: Optional[str | Path] = None,
                   overrides: Optional[Mapping[str, Any]] = None, where: str = "") -> C:
    """The config of a new run: `preset` (else the file's `preset`, else `default_preset`), then the fields of
    the `config` file, then `overrides`; every name and type checked, the result validated.

    `where` says in errors where the overrides came from (e.g. "in gdas.search()")."""
    from_file: dict[str, Any] = {}
    if config is not None:
        from_file = base.check_fields(cls, read_config_file(config, kind), f"in {Path(config).name}")
    given = base.check_fields(cls, dict(overrides or {}), where or "given")
    file_preset = from_file.pop("preset", None)
    given.pop("preset", None)
    cfg = base.resolve(presets, preset or file_preset or default_preset, {**from_file, **given})
    cfg.validate()
    return cfg
