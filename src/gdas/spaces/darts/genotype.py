"""The DARTS CNN genotype (normal + reduction cell, or the fixed reduction cell), its JSON and text forms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from gdas.errors import GdasError
from gdas.spaces.base import (Node, check_concat, check_nodes, concat_from_json, count_param_free, nodes_from_json,
                              nodes_json, nodes_text, parse_nodes_text, text_sections)
from gdas.spaces.darts.ops import PARAMETER_FREE, PRIMITIVES

FIXED = "FIXED"  # text/JSON marker of the fixed reduction cell (FRC)


@dataclass(frozen=True)
class Genotype:
    """A CNN cell pair. `reduce=None` means the fixed reduction cell (FRC / FIX-R)."""

    normal: tuple[Node, ...]
    normal_concat: tuple[int, ...] = (2, 3, 4, 5)
    reduce: tuple[Node, ...] | None = None
    reduce_concat: tuple[int, ...] | None = (2, 3, 4, 5)

    kind = "cnn"

    def __post_init__(self) -> None:
        check_nodes(self.normal, PRIMITIVES, 2, "normal")
        check_concat(self.normal_concat, len(self.normal) + 2, "normal")
        if self.reduce is not None:
            check_nodes(self.reduce, PRIMITIVES, 2, "reduction")
            check_concat(self.reduce_concat or (), len(self.reduce) + 2, "reduction")

    @property
    def fixed_reduction(self) -> bool:
        return self.reduce is None

    def param_free_count(self) -> int:
        """Parameter-free ops of the normal cell (the cell that collapses to skip connections)."""
        return count_param_free(self.normal, PARAMETER_FREE)

    def cell_ops(self) -> dict[str, list[str]]:
        """The chosen ops of each searched cell (the fixed reduction cell has none)."""
        cells = {"normal": self.normal} if self.reduce is None else {"normal": self.normal, "reduce": self.reduce}
        return {name: [op for node in nodes for op, _ in node] for name, nodes in cells.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "cnn",
            "normal": nodes_json(self.normal),
            "normal_concat": list(self.normal_concat),
            "reduce": FIXED if self.reduce is None else nodes_json(self.reduce),
            "reduce_concat": None if self.reduce is None else list(self.reduce_concat or ()),
        }

    def __str__(self) -> str:
        reduce = FIXED if self.reduce is None else nodes_text(self.reduce)
        return f"normal: {nodes_text(self.normal)} ; reduce: {reduce}"

    @classmethod
    def from_json(cls, data: dict) -> "Genotype":
        if "normal" not in data:
            raise GdasError("malformed genotype JSON: a CNN genotype needs 'normal' (and 'reduce' or \"FIXED\")")
        normal = nodes_from_json(data["normal"], "normal")
        reduce_raw = data.get("reduce", FIXED)
        reduce = None if reduce_raw in (None, FIXED) else nodes_from_json(reduce_raw, "reduce")
        normal_concat = concat_from_json(data, "normal_concat", 2, len(normal))
        reduce_concat = None if reduce is None else concat_from_json(data, "reduce_concat", 2, len(reduce))
        return cls(normal, normal_concat, reduce, reduce_concat)

    @classmethod
    def parse(cls, text: str) -> Optional["Genotype"]:
        """The text form (`str(genotype)`), or None when `text` has no `normal:` section."""
        parts = text_sections(text)
        if parts is None or "normal" not in parts:
            return None
        normal = parse_nodes_text(parts["normal"], "normal")
        reduce_text = parts.get("reduce", FIXED)
        reduce = None if reduce_text.upper() == FIXED else parse_nodes_text(reduce_text, "reduce")
        return cls(normal, tuple(range(2, len(normal) + 2)), reduce,
                   None if reduce is None else tuple(range(2, len(reduce) + 2)))


def random_cell(generator: torch.Generator, steps: int = 4) -> tuple[Node, ...]:
    """A uniformly random cell of what derivation can yield: per node 2 distinct earlier inputs, each with a
    uniform op other than `none` (DARTS's random-search baseline)."""
    ops = [op for op in PRIMITIVES if op != "none"]
    nodes = []
    for i in range(steps):
        inputs = sorted(torch.randperm(i + 2, generator=generator)[:2].tolist())
        picks = torch.randint(len(ops), (2,), generator=generator).tolist()
        nodes.append(tuple((ops[k], j) for k, j in zip(picks, inputs)))
    return tuple(nodes)


def random_genotype(generator: torch.Generator, steps: int = 4, fixed_reduction: bool = False,
                    max_skip: Optional[int] = None) -> Genotype:
    """A random genotype of the space (normal and reduction cell drawn independently): the baseline a search must
    beat. With `max_skip` (derivation's --max-skip) the normal cell is drawn again until it has at most that many
    skip_connect ops: uniform over the cells such a derivation can yield."""
    concat = tuple(range(2, steps + 2))
    normal = random_cell(generator, steps)
    while max_skip is not None and sum(op == "skip_connect" for node in normal for op, _ in node) > max_skip:
        normal = random_cell(generator, steps)
    if fixed_reduction:
        return Genotype(normal, concat, None, None)
    return Genotype(normal, concat, random_cell(generator, steps), concat)


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

PUBLISHED: dict[str, Genotype] = {
    "GDAS": Genotype(_GDAS_NORMAL, (2, 3, 4, 5), _GDAS_REDUCE, (2, 3, 4, 5)),
    "GDAS_FRC": Genotype(_FRC_NORMAL, (2, 3, 4, 5), None, None),
    "DARTS_V1": Genotype(_DARTS_V1_NORMAL, (2, 3, 4, 5), _DARTS_V1_REDUCE, (2, 3, 4, 5)),
    "DARTS_V2": Genotype(_DARTS_V2_NORMAL, (2, 3, 4, 5), _DARTS_V2_REDUCE, (2, 3, 4, 5)),
    # Paper Table 5 combinations.
    "GDAS_N_FIX_R": Genotype(_GDAS_NORMAL, (2, 3, 4, 5), None, None),
    "FRC_N_GDAS_R": Genotype(_FRC_NORMAL, (2, 3, 4, 5), _GDAS_REDUCE, (2, 3, 4, 5)),
    "FRC_N_FIX_R": Genotype(_FRC_NORMAL, (2, 3, 4, 5), None, None),
}
