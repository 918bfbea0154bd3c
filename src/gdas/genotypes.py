"""The genotype types (CNN and recurrent), their JSON and text forms, and the published cells."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from gdas.errors import GdasError
from gdas.spaces.darts.ops import PRIMITIVES

# One node of a cell: the (op, input-node) pairs summed into it.
Node = tuple[tuple[str, int], ...]
RNN_PRIMITIVES: tuple[str, ...] = ("none", "tanh", "relu", "sigmoid", "identity")
FIXED = "FIXED"  # text/JSON marker of the fixed reduction cell (FRC)


def _check_nodes(nodes: tuple[Node, ...], ops: tuple[str, ...], first_node: int, what: str) -> None:
    if not nodes:
        raise GdasError(f"{what} cell has no nodes; give at least one node of (op, input) pairs")
    for offset, node in enumerate(nodes):
        index = first_node + offset
        if not node:
            raise GdasError(f"{what} cell node {index} has no inputs; give at least one (op, input) pair")
        for op, src in node:
            if op not in ops:
                raise GdasError(f"{what} cell node {index}: unknown op {op!r}; known ops: {', '.join(ops)}")
            if op == "none":
                raise GdasError(f"{what} cell node {index}: op 'none' cannot appear in a genotype")
            if not isinstance(src, int) or isinstance(src, bool) or src < 0 or src >= index:
                raise GdasError(f"{what} cell node {index}: input {src!r} must be an earlier node "
                                f"(0..{index - 1})")


def _check_concat(concat: tuple[int, ...], n_nodes: int, what: str) -> None:
    if not concat or any(not isinstance(c, int) or c < 0 or c >= n_nodes for c in concat):
        raise GdasError(f"{what} concat {list(concat)} must list node indices in 0..{n_nodes - 1}")


@dataclass(frozen=True)
class Genotype:
    """A CNN cell pair. `reduce=None` means the fixed reduction cell (FRC / FIX-R)."""

    normal: tuple[Node, ...]
    normal_concat: tuple[int, ...] = (2, 3, 4, 5)
    reduce: tuple[Node, ...] | None = None
    reduce_concat: tuple[int, ...] | None = (2, 3, 4, 5)

    kind = "cnn"

    def __post_init__(self) -> None:
        _check_nodes(self.normal, PRIMITIVES, 2, "normal")
        _check_concat(self.normal_concat, len(self.normal) + 2, "normal")
        if self.reduce is not None:
            _check_nodes(self.reduce, PRIMITIVES, 2, "reduction")
            _check_concat(self.reduce_concat or (), len(self.reduce) + 2, "reduction")

    @property
    def fixed_reduction(self) -> bool:
        return self.reduce is None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "cnn",
            "normal": [[[op, src] for op, src in node] for node in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": FIXED if self.reduce is None else [[[op, src] for op, src in n] for n in self.reduce],
            "reduce_concat": None if self.reduce is None else list(self.reduce_concat or ()),
        }

    def __str__(self) -> str:
        reduce = FIXED if self.reduce is None else _nodes_text(self.reduce)
        return f"normal: {_nodes_text(self.normal)} ; reduce: {reduce}"


@dataclass(frozen=True)
class RecurrentGenotype:
    """A recurrent cell: node i (1..B) = one (activation, input) pair; h_t = mean of `concat`."""

    recurrent: tuple[Node, ...]
    concat: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)

    kind = "rnn"

    def __post_init__(self) -> None:
        _check_nodes(self.recurrent, RNN_PRIMITIVES, 1, "recurrent")
        _check_concat(self.concat, len(self.recurrent) + 1, "recurrent")

    def to_json(self) -> dict[str, Any]:
        return {"type": "rnn", "recurrent": [[[op, src] for op, src in n] for n in self.recurrent],
                "concat": list(self.concat)}

    def __str__(self) -> str:
        return f"recurrent: {_nodes_text(self.recurrent)}"


AnyGenotype = Union[Genotype, RecurrentGenotype]


def _nodes_text(nodes: tuple[Node, ...]) -> str:
    return " | ".join(" + ".join(f"{op}@{src}" for op, src in node) for node in nodes)


def _parse_nodes_text(text: str, what: str) -> tuple[Node, ...]:
    nodes = []
    for chunk in text.split("|"):
        pairs = []
        for item in chunk.split("+"):
            op, sep, src = item.strip().partition("@")
            if not sep or not src.strip().isdigit():
                raise GdasError(f"malformed {what} entry {item.strip()!r}; write op@input, e.g. sep_conv_3x3@0")
            pairs.append((op.strip(), int(src)))
        nodes.append(tuple(pairs))
    return tuple(nodes)


def _nodes_from_json(value: Any, what: str) -> tuple[Node, ...]:
    try:
        return tuple(tuple((str(op), src) for op, src in node) for node in value)
    except (TypeError, ValueError):
        raise GdasError(f"malformed genotype JSON: {what} must be a list of nodes, each a list of "
                        f"[op, input] pairs") from None


def _concat_from_json(data: dict, key: str, first: int, n_nodes: int) -> tuple[int, ...]:
    value = data.get(key)
    if value is None:
        return tuple(range(first, first + n_nodes))
    if not isinstance(value, list):
        raise GdasError(f"malformed genotype JSON: {key} must be a list of node indices, got {value!r}")
    return tuple(value)


def genotype_from_json(data: Any) -> AnyGenotype:
    """Build a genotype from its JSON object (as written by `to_json`)."""
    if not isinstance(data, dict):
        raise GdasError("malformed genotype JSON: expected an object with 'normal'/'reduce' or 'recurrent'")
    kind = data.get("type", "rnn" if "recurrent" in data else "cnn")
    if kind == "rnn":
        if "recurrent" not in data:
            raise GdasError("malformed genotype JSON: a recurrent genotype needs a 'recurrent' list")
        nodes = _nodes_from_json(data["recurrent"], "recurrent")
        return RecurrentGenotype(nodes, _concat_from_json(data, "concat", 1, len(nodes)))
    if kind != "cnn" or "normal" not in data:
        raise GdasError("malformed genotype JSON: a CNN genotype needs 'normal' (and 'reduce' or \"FIXED\")")
    normal = _nodes_from_json(data["normal"], "normal")
    reduce_raw = data.get("reduce", FIXED)
    reduce = None if reduce_raw in (None, FIXED) else _nodes_from_json(reduce_raw, "reduce")
    normal_concat = _concat_from_json(data, "normal_concat", 2, len(normal))
    reduce_concat = None if reduce is None else _concat_from_json(data, "reduce_concat", 2, len(reduce))
    return Genotype(normal, normal_concat, reduce, reduce_concat)


def parse_genotype_text(text: str) -> AnyGenotype:
    """Parse the text form (`str(genotype)`)."""
    parts = {}
    for section in text.split(";"):
        key, sep, value = section.partition(":")
        if not sep:
            raise GdasError(f"malformed genotype text {text.strip()[:60]!r}; expected "
                            "'normal: op@i + op@j | ... ; reduce: ...|FIXED' or 'recurrent: ...'")
        parts[key.strip()] = value.strip()
    if "recurrent" in parts:
        nodes = _parse_nodes_text(parts["recurrent"], "recurrent")
        return RecurrentGenotype(nodes, tuple(range(1, len(nodes) + 1)))
    if "normal" not in parts:
        raise GdasError("malformed genotype text: it needs a 'normal:' section or a 'recurrent:' section")
    normal = _parse_nodes_text(parts["normal"], "normal")
    reduce_text = parts.get("reduce", FIXED)
    reduce = None if reduce_text.upper() == FIXED else _parse_nodes_text(reduce_text, "reduce")
    return Genotype(normal, tuple(range(2, len(normal) + 2)), reduce,
                    None if reduce is None else tuple(range(2, len(reduce) + 2)))


def _n(*pairs: tuple[str, int]) -> Node:
    return tuple(pairs)


_GDAS_NORMAL = (
    _n(("skip_connect", 0), ("skip_connect", 1)), _n(("skip_connect", 0), ("sep_conv_5x5", 2)),
    _n(("sep_conv_3x3", 3), ("skip_connect", 0)), _n(("sep_conv_5x5", 4), ("sep_conv_3x3", 3)))
_GDAS_REDUCE = (
    _n(("sep_conv_5x5", 0), ("sep_conv_3x3", 1)), _n(("sep_conv_5x5", 2), ("sep_conv_5x5", 1)),
    _n(("dil_conv_5x5", 2), ("sep_conv_3x3", 1)), _n(("sep_conv_5x5", 0), ("sep_conv_5x5", 1)))
_FRC_NORMAL = (
    _n(("skip_connect", 0), ("skip_connect", 1)), _n(("skip_connect", 0), ("sep_conv_3x3", 2)),
    _n(("skip_connect", 0), ("sep_conv_3x3", 2)), _n(("skip_connect", 0), ("sep_conv_3x3", 2)))
_DARTS_V2_NORMAL = (
    _n(("sep_conv_3x3", 0), ("sep_conv_3x3", 1)), _n(("sep_conv_3x3", 0), ("sep_conv_3x3", 1)),
    _n(("sep_conv_3x3", 1), ("skip_connect", 0)), _n(("skip_connect", 0), ("dil_conv_3x3", 2)))
_DARTS_V2_REDUCE = (
    _n(("max_pool_3x3", 0), ("max_pool_3x3", 1)), _n(("skip_connect", 2), ("max_pool_3x3", 1)),
    _n(("max_pool_3x3", 0), ("skip_connect", 2)), _n(("skip_connect", 2), ("max_pool_3x3", 1)))
# DARTS (first order), from the DARTS paper's released genotypes.
_DARTS_V1_NORMAL = (
    _n(("sep_conv_3x3", 1), ("sep_conv_3x3", 0)), _n(("skip_connect", 0), ("sep_conv_3x3", 1)),
    _n(("skip_connect", 0), ("sep_conv_3x3", 1)), _n(("sep_conv_3x3", 0), ("skip_connect", 2)))
_DARTS_V1_REDUCE = (
    _n(("max_pool_3x3", 0), ("max_pool_3x3", 1)), _n(("skip_connect", 2), ("max_pool_3x3", 0)),
    _n(("max_pool_3x3", 0), ("skip_connect", 2)), _n(("skip_connect", 2), ("avg_pool_3x3", 0)))


def _rnn(*pairs: tuple[str, int]) -> RecurrentGenotype:
    return RecurrentGenotype(tuple((p,) for p in pairs), tuple(range(1, len(pairs) + 1)))


REGISTRY: dict[str, AnyGenotype] = {
    "GDAS": Genotype(_GDAS_NORMAL, (2, 3, 4, 5), _GDAS_REDUCE, (2, 3, 4, 5)),
    "GDAS_FRC": Genotype(_FRC_NORMAL, (2, 3, 4, 5), None, None),
    "DARTS_V1": Genotype(_DARTS_V1_NORMAL, (2, 3, 4, 5), _DARTS_V1_REDUCE, (2, 3, 4, 5)),
    "DARTS_V2": Genotype(_DARTS_V2_NORMAL, (2, 3, 4, 5), _DARTS_V2_REDUCE, (2, 3, 4, 5)),
    # Paper Table 5 combinations.
    "GDAS_N_FIX_R": Genotype(_GDAS_NORMAL, (2, 3, 4, 5), None, None),
    "FRC_N_GDAS_R": Genotype(_FRC_NORMAL, (2, 3, 4, 5), _GDAS_REDUCE, (2, 3, 4, 5)),
    "FRC_N_FIX_R": Genotype(_FRC_NORMAL, (2, 3, 4, 5), None, None),
    # Recurrent cells (paper Fig. 4 bottom; DARTS V2 from the DARTS paper).
    "GDAS_RNN": _rnn(("relu", 0), ("relu", 0), ("identity", 1), ("relu", 1), ("tanh", 0), ("relu", 2),
                     ("identity", 4), ("identity", 2)),
    "DARTS_V2_RNN": _rnn(("sigmoid", 0), ("relu", 1), ("relu", 1), ("identity", 1), ("tanh", 2),
                         ("sigmoid", 5), ("tanh", 3), ("relu", 5)),
}


def _path_is(path: Path, test: str) -> bool:
    """`path.exists()`/`is_dir()`/`is_file()`, False for strings no file system accepts as a name."""
    try:
        return getattr(path, test)()
    except OSError:  # e.g. ENAMETOOLONG for a long JSON or text genotype
        return False


def load_genotype(spec: str | Path) -> AnyGenotype:
    """Resolve a genotype from a registry name, a run directory, a .json file, JSON text or the text form."""
    text = str(spec).strip()
    if text in REGISTRY:
        return REGISTRY[text]
    if text.upper() in REGISTRY:
        return REGISTRY[text.upper()]
    path = Path(text)
    if not text.startswith("{") and ":" not in text or _path_is(path, "exists"):
        if _path_is(path, "is_dir"):
            path = path / "genotype.json"
        if not _path_is(path, "is_file"):
            raise GdasError(f"no genotype named {text!r}: not a registry name ({', '.join(REGISTRY)}), "
                            f"a run directory with genotype.json, or a .json file")
        text = path.read_text()
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GdasError(f"malformed genotype JSON ({exc.msg} at line {exc.lineno}); fix the file or "
                            "pass a registry name") from None
        return genotype_from_json(data.get("genotype", data) if isinstance(data, dict) else data)
    return parse_genotype_text(text)


def save_genotype(genotype: AnyGenotype, path: str | Path) -> None:
    """Write the genotype's JSON form (with its text form alongside for people)."""
    payload = dict(genotype.to_json(), text=str(genotype))
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")
