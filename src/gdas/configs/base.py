"""Typed dataclass configs: presets, CLI overrides, validation helpers and the JSON form."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
import re
import difflib
import types
import typing
from typing import Any, Mapping, Optional, TypeVar, Union, get_args, get_origin, get_type_hints

from gdas.errors import GdasError

C = TypeVar("C")

# Fields that are never options: what a run records of its config (the preset's name, the fields the user set
# over it, the preset values fitted to them, what its --cost-target counts). Never compared when a run is
# continued; a new run records them anew.
RECORD_FIELDS = ("preset", "given", "adjusted", "cost_target_of")
_NOT_OPTIONS = frozenset(RECORD_FIELDS)


@dataclass(frozen=True)
class RunConfig:
    """The record every run config starts with: where its values came from (config.json keeps it)."""

    preset: str = "custom"
    # The fields set over the preset by a config file, options or keyword arguments.
    given: tuple[str, ...] = ()
    # Preset values the resolution changed to fit what the user set, in words ("warmup_epochs 3 -> 0 (...)").
    adjusted: tuple[str, ...] = ()

    def fit_to_given(self: C, preset: C) -> C:
        """This config with the values of `preset` (the one it started from) that the user did not set made to
        fit the ones they did (see `adjust_unset`); the resolution of a new run calls it before `validate`."""
        return self

    def validate(self) -> None:
        """Raise a one-line GdasError on a value or combination the run cannot use."""


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _parser_for(tp: Any, optional: bool, name: str):
    def parse(text: str):
        if optional and text.lower() in ("none", "null", ""):
            return None
        try:
            return tp(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} expects {tp.__name__}, got {text!r}") from None
    parse.__name__ = tp.__name__
    return parse


def add_config_options(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = (),
                       title: Optional[str] = None) -> None:
    """Add one `--field-name` option per dataclass field (under `title`, by default the class's fields as
    overrides of a preset); unset options keep the preset's value (or the field's default)."""
    hints = get_type_hints(cls)
    group = parser.add_argument_group(title or f"{cls.__name__} fields (override the preset)")
    for field in dataclasses.fields(cls):
        if field.name in _NOT_OPTIONS or field.name in skip:
            continue
        tp, optional = _unwrap_optional(hints[field.name])
        help_text = field.metadata.get("help", "")
        choices = field.metadata.get("choices")
        flag = option_name(field.name)
        aliases = [option_name(a) for a in field.metadata.get("aliases", ())]
        if tp is bool:
            group.add_argument(flag, *aliases, dest=field.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        elif get_origin(tp) is tuple:
            inner = get_args(tp)[0]
            group.add_argument(flag, *aliases, dest=field.name, nargs="+", type=_parser_for(inner, False, flag),
                               default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(flag, *aliases, dest=field.name, type=_parser_for(tp, optional, flag),
                               choices=choices, default=argparse.SUPPRESS, help=help_text,
                               metavar=field.name.upper() if choices is None else None)


def apply_overrides(config: C, values: Mapping[str, Any]) -> C:
    """A copy of `config` with every field present in `values` replaced (tuples kept as tuples)."""
    names = {f.name for f in dataclasses.fields(config)}
    changes = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in names}
    return dataclasses.replace(config, **changes)


@dataclass(frozen=True)
class Presets(typing.Generic[C]):
    """A config class's named presets, the other names some of them go by, and the one a command starts from."""

    configs: Mapping[str, C]
    default: str
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def names(self) -> list[str]:
        return [*self.configs, *self.aliases]

    def canonical(self, name: str) -> str:
        """The preset `name` names (an alias gives its canonical name); an unknown name is a one-line error."""
        canonical = self.aliases.get(name, name)
        if canonical not in self.configs:
            raise GdasError(f"unknown preset {name!r}{closest_hint(name, self.names())}; choose one of: "
                            f"{', '.join(self.names())}")
        return canonical

    def in_space(self, name: str, space: str) -> str:
        """The preset `name`, or its counterpart in `space` when it is a preset of another space: "demo" ->
        "nb201-demo", "nb201-smoke" -> "smoke" (darts presets have no prefix)."""
        name = self.canonical(name)
        own = self.configs[name].space
        if own == space:
            return name
        spaces = list(dict.fromkeys(p.space for p in self.configs.values()))
        if space not in spaces:
            raise GdasError(f"unknown search space {space!r}{closest_hint(space, spaces)}; choose one of: "
                            f"{', '.join(spaces)}")
        stem = name[len(own) + 1:] if own != "darts" and name.startswith(own + "-") else name
        candidate = stem if space == "darts" else f"{space}-{stem}"
        if candidate in self.configs and self.configs[candidate].space == space:
            return candidate
        choices = ", ".join(n for n, p in self.configs.items() if p.space == space)
        raise GdasError(f"preset {name!r} is a {own} preset with no {space} counterpart; pass one of the {space} "
                        f"presets: {choices}")


def resolve(presets: Mapping[str, C], preset: str, args: argparse.Namespace | Mapping[str, Any],
            aliases: Mapping[str, str] = {}) -> C:
    """Preset by name (or alias), then CLI overrides."""
    name = Presets(presets, preset, aliases).canonical(preset)
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    return apply_overrides(dataclasses.replace(presets[name], preset=name), values)


def adjust_unset(config: C, values: Mapping[str, Any], reason: str) -> C:
    """`config` with `values` applied to the fields the user did not give (`config.given`), each change noted
    in `config.adjusted` as "field old -> new (reason)"; a field the user gave is left as it is (its check in
    `validate` then names the user's own option)."""
    changes = {k: v for k, v in values.items() if k not in config.given and getattr(config, k) != v}
    if not changes:
        return config
    notes = tuple(f"{k} {getattr(config, k)} -> {v} ({reason})" for k, v in changes.items())
    return dataclasses.replace(config, **changes, adjusted=config.adjusted + notes)


def adjustment_lines(config: Any) -> list[str]:
    """The log lines of the preset values a run's resolution fitted to the user's settings (`adjusted`)."""
    return [f"preset {config.preset} adjusted: {note}" for note in config.adjusted]


def own_subset(config: C, preset: C, *fields: str) -> C:
    """A preset's subsets (`fields`: train_subset, test_subset) belong to the preset's own dataset: on other data
    (a user's own above all) they are dropped unless the user gave them, so every image is used."""
    if config.dataset == preset.dataset:
        return config
    return adjust_unset(config, {f: None for f in fields if getattr(preset, f) is not None},
                        f"the preset's subset is of {preset.dataset}; {config.dataset} data is used whole")


def closest_hint(name: str, known: typing.Iterable[str]) -> str:
    """"; did you mean 'x'?" for the known name nearest to `name`, or "" when none is near."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _type_name(tp: Any) -> str:
    if get_origin(tp) is tuple:
        return f"a list of {get_args(tp)[0].__name__}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _typed(tp: Any, value: Any) -> tuple[bool, Any]:
    """(whether `value` fits type `tp`, the value as the field stores it: ints as floats, lists as tuples)."""
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if get_origin(tp) is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        items = [_typed(get_args(tp)[0], v) for v in value]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    return isinstance(value, tp), value


def check_fields(cls: type, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`values` (config fields from a file or Python keywords) checked against `cls`: an unknown name or a
    value of the wrong type is a one-line GdasError naming the field and `where` it came from."""
    hints = get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    checked = {}
    for name, value in values.items():
        if name not in hints or name not in known:
            raise GdasError(f"unknown field {name!r} {where}{closest_hint(str(name), known)}")
        if name in RECORD_FIELDS and name != "preset":
            raise GdasError(f"field {name!r} {where} is what a run records of its config, not a setting; drop it")
        tp, optional = _unwrap_optional(hints[name])
        if value is None and optional:
            checked[name] = None
            continue
        ok, converted = _typed(tp, value)
        if not ok:
            raise GdasError(f"field {name!r} {where} must be {_type_name(tp)}{' or null' if optional else ''}, "
                            f"got {value!r}")
        checked[name] = converted
    return checked


def to_json(config: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


def from_json(cls: type[C], data: Mapping[str, Any]) -> C:
    """Rebuild a config written by `to_json`; unknown keys mean another version or kind of run; a field missing
    from an older run's config reads as `cls.ABSENT_IN_OLD_RUNS` says (what that run did), else its default."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise GdasError(f"config has unknown fields {unknown}: it was written by another kind of run or "
                        f"an incompatible gdas version; start a new run instead of resuming")
    data = {**getattr(cls, "ABSENT_IN_OLD_RUNS", {}), **data}
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})


def check(condition: bool, message: str) -> None:
    """Raise a one-line GdasError unless `condition` holds (for `validate` methods)."""
    if not condition:
        raise GdasError(message)


def check_choice(value: Any, choices: typing.Iterable[Any], option: str) -> None:
    choices = tuple(choices)
    check(value in choices, f"{option} {value!r} is not one of: {', '.join(map(str, choices))}")


def meta(help: str = "", choices: typing.Iterable[str] | None = None, aliases: tuple[str, ...] = ()) -> dict:
    """Field metadata for `add_config_options`."""
    return {"help": help, "choices": tuple(choices) if choices is not None else None, "aliases": aliases}


# The options that shape a user's own data (folder / npz), shared by the search and train configs.
OWN_DATA_HELP = {
    "image_size": "folder / npz data: resize (folders: shorter side, then centre crop) to this square side "
                  "(default: folders 32, npz the arrays' own size); ignored by the built-in datasets",
    "channels": "folder / npz data: 1 (grayscale) or 3 (RGB) input channels (default: detected from the images)",
    "skip_bad_images": "folder data: leave out unreadable or corrupt images (counted in the log) instead of stopping",
    "stream": "folder data: decode batches with loader workers instead of holding the images in memory "
              "(default: auto, streaming above a size limit)",
}


def own_data_field(name: str, default: Any = None, *, help_prefix: str = "") -> Any:
    """The dataclass field of one own-data option (`OWN_DATA_HELP`)."""
    return dataclasses.field(default=default, metadata=meta(help_prefix + OWN_DATA_HELP[name]))


# An option as errors name it, with the placeholder or number that may follow it: "--valid-portion P".
_OPTION = re.compile(r"--(no-)?([A-Za-z][A-Za-z0-9-]*)(?: ([A-Z][A-Z_]*|\d+(?:\.\d+)?)\b)?")
# "--resume RUN_DIR": the run folder is `out` in Python; "gdas search --resume runs/x" is a call of gdas.search
# (the recurrent commands have no Python function: left as they are).
_RESUME = re.compile(r"(?:gdas (search|train|search-rnn|train-lm) )?--resume( \S+)?")
# "--image-size N (image_size=N in Python)": a message that already says it for Python callers
_IN_PYTHON = re.compile(r"--[A-Za-z][A-Za-z0-9-]*(?: [A-Z][A-Z_]*)? \(([^()]+?) in Python\)")
# Run options of the commands, as Python keyword arguments.
_RUN_KEYWORDS = {"auto-resume": 'resume="auto"', "out": "out", "seeds": "seeds", "parallel": "parallel",
                 "config": "config"}


def python_wording(message: str, classes: typing.Sequence[type]) -> str:
    """A user error worded for Python callers: the command-line options of `classes`' fields (and the run
    options) become keyword arguments: "pass --no-auxiliary" -> "pass auxiliary=False", "--valid-portion P" ->
    "valid_portion=P", "--epochs must be" -> "epochs must be"."""
    hints: dict[str, Any] = {}
    for cls in classes:
        hints.update(get_type_hints(cls))

    def keyword(match: re.Match) -> str:
        negated, option, value = match.group(1), match.group(2), match.group(3)
        name = option.replace("-", "_")
        if name not in hints:
            run = _RUN_KEYWORDS.get(option)
            return match.group(0) if run is None or negated else run + (f"={value}" if value else "")
        if _unwrap_optional(hints[name])[0] is bool and not value:
            return f"{name}={not negated}"
        return f"{name}={value}" if value else name

    def resume(match: re.Match) -> str:
        command, folder = match.group(1), (match.group(2) or "").strip()
        if command in ("search", "train") and folder:
            return f"gdas.{command}(out={folder!r}, resume=True)"
        return match.group(0) if command else "resume=True"

    message = _RESUME.sub(resume, _IN_PYTHON.sub(r"\1", message))
    return _OPTION.sub(keyword, message)
