"""The recurrent genotype (one (activation, input) pair per node), its JSON and text forms, published cells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from gdas.errors import GdasError
from gdas.spaces.base import (Node, check_concat, check_nodes, concat_from_json, count_param_free, nodes_from_json,
                              nodes_json, nodes_text, parse_nodes_text, text_sections)

RNN_PRIMITIVES: tuple[str, ...] = ("none", "tanh", "relu", "sigmoid", "identity")
NONE_INDEX = RNN_PRIMITIVES.index("none")
# `none` and `identity` have no activation of their own (identity still has the node's projection).
RNN_PARAMETER_FREE = frozenset({"none", "identity"})


@dataclass(frozen=True)
class RecurrentGenotype:
    """A recurrent cell: node i (1..B) = one (activation, input) pair; h_t = mean of `concat`."""

    recurrent: tuple[Node, ...]
    concat: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)

    kind = "rnn"

    def __post_init__(self) -> None:
        check_nodes(self.recurrent, RNN_PRIMITIVES, 1, "recurrent")
        check_concat(self.concat, len(self.recurrent) + 1, "recurrent")

    def param_free_count(self) -> int:
        return count_param_free(self.recurrent, RNN_PARAMETER_FREE)

    def cell_ops(self) -> dict[str, list[str]]:
        return {"recurrent": [op for node in self.recurrent for op, _ in node]}

    def to_json(self) -> dict[str, Any]:
        return {"type": "rnn", "recurrent": nodes_json(self.recurrent), "concat": list(self.concat)}

    def __str__(self) -> str:
        return f"recurrent: {nodes_text(self.recurrent)}"

    @classmethod
    def from_json(cls, data: dict) -> "RecurrentGenotype":
        if "recurrent" not in data:
            raise GdasError("malformed genotype JSON: a recurrent genotype needs a 'recurrent' list")
        nodes = nodes_from_json(data["recurrent"], "recurrent")
        return cls(nodes, concat_from_json(data, "concat", 1, len(nodes)))

    @classmethod
    def parse(cls, text: str) -> Optional["RecurrentGenotype"]:
        """The text form (`str(genotype)`), or None when `text` has no `recurrent:` section."""
        parts = text_sections(text)
        if parts is None or "recurrent" not in parts:
            return None
        nodes = parse_nodes_text(parts["recurrent"], "recurrent")
        return cls(nodes, tuple(range(1, len(nodes) + 1)))


def _rnn(*pairs: tuple[str, int]) -> RecurrentGenotype:
    return RecurrentGenotype(tuple((p,) for p in pairs), tuple(range(1, len(pairs) + 1)))


# Paper Fig. 4 (bottom); DARTS V2 from the DARTS paper.
PUBLISHED: dict[str, RecurrentGenotype] = {
    "GDAS_RNN": _rnn(("relu", 0), ("relu", 0), ("identity", 1), ("relu", 1), ("tanh", 0), ("relu", 2),
                     ("identity", 4), ("identity", 2)),
    "DARTS_V2_RNN": _rnn(("sigmoid", 0), ("relu", 1), ("relu", 1), ("identity", 1), ("tanh", 2),
                         ("sigmoid", 5), ("tanh", 3), ("relu", 5)),
}
