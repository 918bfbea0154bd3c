"""The NB201 cell genotype: its string form `|op~j|+|op~j|op~j|+...`, JSON form, parsing and named cells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from gdas.errors import GdasError
from gdas.spaces.nb201.ops import NB201_OPS, PARAM_FREE

_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
_FIX = f"write it as NB201 does, e.g. {_EXAMPLE}"


@dataclass(frozen=True)
class NB201Genotype:
    """Node i (1-based) is the sum of one op on every earlier node: nodes[i-1] = ((op, 0), ..., (op, i-1)).

    The last node is the cell's output. Pairs are kept in input order, NB201's canonical form, so that
    `str()` matches the benchmark's architecture strings.
    """

    nodes: tuple[tuple[tuple[str, int], ...], ...]
    kind = "nb201"  # class attribute (no annotation, so not a field): lets generic code route genotypes

    def __post_init__(self) -> None:
        nodes = tuple(tuple(sorted(((str(op), int(j)) for op, j in node), key=lambda p: p[1]))
                      for node in self.nodes)
        if not nodes:
            raise GdasError(f"an NB201 genotype needs at least one node; {_FIX}")
        for i, node in enumerate(nodes, start=1):
            inputs = [j for _, j in node]
            if inputs != list(range(i)):
                raise GdasError(f"NB201 node {i} needs one edge from each of nodes {list(range(i))}, got "
                                f"inputs {inputs}; {_FIX}")
            for op, _ in node:
                if op not in NB201_OPS:
                    raise GdasError(f"unknown NB201 op {op!r} in node {i}; choose one of {', '.join(NB201_OPS)}")
        object.__setattr__(self, "nodes", nodes)

    def __str__(self) -> str:
        return "+".join("|" + "|".join(f"{op}~{j}" for op, j in node) + "|" for node in self.nodes)

    @property
    def edges(self) -> list[tuple[str, int, int]]:
        """(op, from node, to node) for every edge, in NB201's edge order (by target, then source)."""
        return [(op, j, i) for i, node in enumerate(self.nodes, start=1) for op, j in node]

    def param_free_count(self) -> int:
        """Edges whose op has no weights (none, skip_connect, avg_pool_3x3): a collapse indicator."""
        return sum(op in PARAM_FREE for op, _, _ in self.edges)

    def cell_ops(self) -> dict[str, list[str]]:
        """The op of every edge of the cell (`none` included: NB201 keeps it)."""
        return {"cell": [op for op, _, _ in self.edges]}

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "arch": str(self)}

    @classmethod
    def from_json(cls, obj: Any) -> "NB201Genotype":
        if not isinstance(obj, dict) or obj.get("type") != cls.kind or not isinstance(obj.get("arch"), str):
            raise GdasError(f"not an NB201 genotype: want {{\"type\": \"nb201\", \"arch\": \"{_EXAMPLE}\"}}")
        return cls.parse(obj["arch"])

    @staticmethod
    def looks_like(text: str) -> bool:
        """A cheap test that `text` is meant as an NB201 string (it may still be malformed)."""
        text = text.strip()
        return len(text) > 2 and text[0] == "|" and text[-1] == "|" and "~" in text

    @classmethod
    def parse(cls, text: str) -> "NB201Genotype":
        """Parse NB201's string form (nodes joined by '+', each `|op~input|...|`); accepts registry names too."""
        text = text.strip()
        if text in NB201_REGISTRY:
            text = NB201_REGISTRY[text]
        if not cls.looks_like(text):
            raise GdasError(f"{text!r} is not an NB201 architecture string; {_FIX}")
        nodes = []
        for i, part in enumerate(text.split("+"), start=1):
            if len(part) < 2 or part[0] != "|" or part[-1] != "|":
                raise GdasError(f"NB201 node {i} ({part!r}) must start and end with '|'; {_FIX}")
            pairs = []
            for item in part[1:-1].split("|"):
                op, sep, src = item.partition("~")
                if not sep or not src.isdigit():
                    raise GdasError(f"NB201 edge {item!r} in node {i} is not op~input (e.g. nor_conv_3x3~0); {_FIX}")
                pairs.append((op, int(src)))
            nodes.append(tuple(pairs))
        return cls(tuple(nodes))


# A few named cells as NB201 strings. "nb201-best-cifar100": the topology-space optimum on CIFAR-100 (the authors'
# word, D-X-Y/AutoDL-Projects issue #103; exps/NATS-Bench/main-sss.py trains it). The others are the reference
# package's named cells (models/cell_searchs/genotypes.py: resnet, all_c3x3, all_idnt) in NB201's full form, with
# `none` on the edges they leave out (as its Structure.str2fullstructure writes them).
NB201_REGISTRY: dict[str, str] = {
    "nb201-best-cifar100": _EXAMPLE,
    "nb201-resnet": "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
    "nb201-all-conv3x3": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                         "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "nb201-all-skip": "|skip_connect~0|+|skip_connect~0|skip_connect~1|"
                      "+|skip_connect~0|skip_connect~1|skip_connect~2|",
}


def random_genotype(generator: torch.Generator, steps: int = 3, max_skip: Optional[int] = None) -> NB201Genotype:
    """A random cell of what NB201's derivation yields: on every edge a uniform op, `none` included; with `max_skip`
    (derivation's --max-skip) drawn again until it has at most that many skip_connect edges."""
    edges = steps * (steps + 1) // 2
    while True:
        picks = [NB201_OPS[k] for k in torch.randint(len(NB201_OPS), (edges,), generator=generator).tolist()]
        if max_skip is None or picks.count("skip_connect") <= max_skip:
            break
    nodes, e = [], 0
    for i in range(1, steps + 1):
        nodes.append(tuple((picks[e + j], j) for j in range(i)))
        e += i
    return NB201Genotype(tuple(nodes))
