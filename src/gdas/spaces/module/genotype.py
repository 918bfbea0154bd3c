"""The genotype of a module space: its choice map (label -> the chosen candidate, depth or inputs), JSON and text."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from gdas.errors import GdasError

KIND = "module"
TEXT_PREFIX = "choices of "  # the text form: "choices of SPACE: label=value, ..."


@dataclass(frozen=True)
class ChoiceMap:
    """What a search of a module space derived: `choices` {label: value} (a candidate's name, a depth, an input
    index or a list of k of them), the `space` it belongs to (a registered name, or module:package.module:Factory)
    and the labels whose chosen candidate has no parameters (`param_free`, the collapse guard's measure)."""

    space: str
    items: tuple[tuple[str, Any], ...]
    param_free: tuple[str, ...] = field(default=())
    kind = KIND

    @classmethod
    def of(cls, space: str, choices: Mapping[str, Any], param_free: tuple[str, ...] = ()) -> "ChoiceMap":
        for label, value in choices.items():
            ok = isinstance(value, (str, int)) or (isinstance(value, list) and all(isinstance(v, int) for v in value))
            if not isinstance(label, str) or not ok or isinstance(value, bool):
                raise GdasError(f"choice map entry {label!r}: {value!r} must map a label to a candidate name, a "
                                "depth, an input index or a list of input indices")
        return cls(space, tuple((label, _frozen(value)) for label, value in choices.items()), tuple(param_free))

    @property
    def choices(self) -> dict[str, Any]:
        """{label: value}, JSON-serialisable (lists for k of n inputs)."""
        return {label: list(value) if isinstance(value, tuple) else value for label, value in self.items}

    def to_json(self) -> dict[str, Any]:
        return {"type": KIND, "space": self.space, "choices": self.choices, "param_free": list(self.param_free)}

    @classmethod
    def from_json(cls, data: dict) -> "ChoiceMap":
        space, choices = data.get("space"), data.get("choices")
        if not isinstance(space, str) or not isinstance(choices, dict):
            raise GdasError("malformed module genotype JSON: it needs 'space' (a name or module:package.module:Factory) "
                            "and 'choices' (an object of label: choice)")
        return cls.of(space, choices, tuple(data.get("param_free", ())))

    def param_free_count(self) -> int:
        return len(self.param_free)

    def cell_ops(self) -> dict[str, list[str]]:
        """The chosen values, in label order, as one "cell" (what the guards and plots read)."""
        return {"model": [json.dumps(v) if not isinstance(v, str) else v for v in self.choices.values()]}

    def __str__(self) -> str:
        body = ", ".join(f"{label}={json.dumps(v) if not isinstance(v, str) else v}" for label, v in self.items)
        return f"{TEXT_PREFIX}{self.space}: {body}"

    @classmethod
    def parse(cls, text: str) -> Optional["ChoiceMap"]:
        """The text form (`str`), or None when the text is not in it."""
        text = text.strip()
        if not text.startswith(TEXT_PREFIX):
            return None
        space, sep, body = text[len(TEXT_PREFIX):].rpartition(": ")
        if not sep:
            raise GdasError(f"malformed choice map {text[:60]!r}; write 'choices of SPACE: label=value, ...'")
        choices: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in _split(body))):
            label, eq, value = item.partition("=")
            if not eq:
                raise GdasError(f"malformed choice {item!r}; write label=value")
            try:
                choices[label.strip()] = json.loads(value)
            except json.JSONDecodeError:
                choices[label.strip()] = value.strip()
        return cls.of(space, choices)


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _split(body: str) -> list[str]:
    """The `label=value` items of a text form (commas inside [...] belong to a list)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    return parts + [body[start:]]
