"""The search-space contract (`SearchSpace`) and the node-list form shared by cell genotypes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Protocol, Union

import torch
from torch import nn

from gdas.errors import GdasError

# One node of a cell: the (op, input-node) pairs summed into it.
Node = tuple[tuple[str, int], ...]
# What a final image network's forward gives: the logits, or (logits, auxiliary logits) while it trains with
# an auxiliary head (as torchvision's Inception networks do).
Output = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]


class GenotypeLike(Protocol):
    """What every space's genotype type provides."""

    kind: str  # the "type" of its JSON form; names its space (see `SearchSpace.genotype_kind`)

    def to_json(self) -> dict[str, Any]: ...

    def param_free_count(self) -> int: ...

    def cell_ops(self) -> dict[str, list[str]]: ...  # the chosen ops of each cell, by cell name


class Supernet(Protocol):
    """What Algorithm 1 needs from a space's search network (the same in every space)."""

    def arch_parameters(self) -> list[nn.Parameter]: ...

    def weight_parameters(self) -> list[nn.Parameter]: ...

    def sample_arch(self, tau: float, *, arch_grad: bool, generator: Optional[torch.Generator] = None
                    ) -> list: ...

    def probabilities(self) -> dict[str, Optional[torch.Tensor]]: ...


@dataclass(frozen=True)
class Benchmark:
    """A tabular benchmark of a space's cells (NB201: NATS-Bench): true accuracies by look-up, no training.

    `check(cfg)` fails with one line when a search config's `benchmark` cannot be used (file, reader, cell
    size), before a run starts; `query(genotype, path)` returns the cell's recorded accuracies.
    """

    name: str
    check: Callable[[Any], None]
    query: Callable[[Any, str], dict[str, Any]]


@dataclass(frozen=True)
class SearchSpace:
    """One registered search space: everything the algorithm, the CLI and the reports ask of it.

    `data` names the kind of data its networks read ("image" or "lm"); `build_supernet(cfg, num_classes,
    in_channels)` makes the search network (for "lm": `num_classes` is the vocabulary size);
    `derive(probabilities, cfg)` turns softmax(A) into a genotype; `parse(text)` reads the space's own
    text form or returns None when the text is not in it; `from_json` reads its JSON form;
    `build_network(genotype, **sizes)` the final network (forward: `Output`); `dot(genotype)` {cell name: DOT source};
    `published` its named cells; `info(genotype, dataset, C, N, shape=None)` the final network's size;
    `child(supernet, archs)` a GDAS sample as a static network (`gdas bench`'s lower bound); `benchmark` a
    tabular benchmark of its cells, which `gdas search --benchmark PATH` queries for the derived cell;
    `op_costs(cfg, dataset, C, N, kind, shape=None)` {A matrix name: (edges, ops) tensor} of each candidate
    op's mult-adds or params (millions) at the final network's size, summed over the cells that use that
    matrix (`gdas search --cost`); `fixed_cost(cfg, dataset, C, N, kind, shape=None)` the same count (a float)
    of what no choice of ops changes in that network (stem, classifier, ...); for all three, `shape`
    (channels, side, classes: `spaces.shapes`) replaces the dataset's own, e.g. the shape of a user's folder
    or npz images;
    `check_input(image_size, auxiliary)` raises a one-line GdasError when the CIFAR-layout networks of the
    space (search and final) cannot read square images of that side;
    `random_genotype(generator, cfg)` draws a random genotype by the rule `derive` follows under the search config
    `cfg` (its --steps, --frc, --max-skip), with `generator` its only source of randomness: the cells
    `gdas search --random-baseline` trains; `check_model(cfg, num_classes, in_channels, example)` runs the search
    network once on a batch of the data before any run folder exists and raises a one-line GdasError on what it
    cannot run (module spaces: candidates whose output shapes differ); it returns the search network it ran.
    """

    name: str
    description: str
    data: str
    ops: tuple[str, ...]
    param_free: frozenset[str]
    genotype_kind: str
    build_supernet: Callable[..., nn.Module]
    derive: Callable[[Mapping[str, Optional[torch.Tensor]], Any], Any]
    parse: Callable[[str], Optional[Any]]
    from_json: Callable[[dict], Any]
    build_network: Callable[..., nn.Module]
    dot: Callable[[Any], dict[str, str]]
    published: Mapping[str, Any] = field(default_factory=dict)
    info: Optional[Callable[..., dict[str, Any]]] = None
    child: Optional[Callable[..., nn.Module]] = None  # (supernet, archs) -> the sampled child as a static network
    benchmark: Optional[Benchmark] = None
    op_costs: Optional[Callable[..., dict[str, torch.Tensor]]] = None
    fixed_cost: Optional[Callable[..., float]] = None
    check_input: Optional[Callable[[int, bool], None]] = None
    random_genotype: Optional[Callable[[torch.Generator, Any], Any]] = None
    check_model: Optional[Callable[[Any, Optional[int], Optional[int], Any], Any]] = None

    def param_free_share(self, probs: Mapping[str, Optional[torch.Tensor]]) -> float:
        """Share of A's probability mass on parameter-free ops, over every searched edge."""
        columns = [i for i, op in enumerate(self.ops) if op in self.param_free]
        mats = [p.float() for p in probs.values() if p is not None]
        total = sum(m.sum().item() for m in mats)
        return sum(m[:, columns].sum().item() for m in mats) / total if total else 0.0


def child_cells(cells: nn.ModuleList, archs: list, child_cell: Callable[[nn.Module, list[int]], nn.Module]
                ) -> nn.ModuleList:
    """The cells of a sampled child network: `child_cell(cell, indices)` for searched cells, copies of the others."""
    import copy

    if len(archs) != len(cells):
        raise ValueError(f"need one arch per cell ({len(cells)}), got {len(archs)}")
    out = []
    for cell, arch in zip(cells, archs):
        if arch is None:
            out.append(copy.deepcopy(cell))
        elif arch.indices is None:
            raise ValueError("a child network needs sampled op indices (a GDAS sample), not mixing weights")
        else:
            out.append(child_cell(cell, arch.indices))
    return nn.ModuleList(out)


# -- cell genotypes as lists of nodes (DARTS CNN and recurrent spaces) ---------------------------------
def check_nodes(nodes: tuple[Node, ...], ops: tuple[str, ...], first_node: int, what: str) -> None:
    """Every node has inputs, known non-`none` ops, and inputs from earlier nodes only."""
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


def check_concat(concat: tuple[int, ...], n_nodes: int, what: str) -> None:
    if not concat or any(not isinstance(c, int) or c < 0 or c >= n_nodes for c in concat):
        raise GdasError(f"{what} concat {list(concat)} must list node indices in 0..{n_nodes - 1}")


def nodes_text(nodes: tuple[Node, ...]) -> str:
    return " | ".join(" + ".join(f"{op}@{src}" for op, src in node) for node in nodes)


def nodes_json(nodes: tuple[Node, ...]) -> list:
    return [[[op, src] for op, src in node] for node in nodes]


def parse_nodes_text(text: str, what: str) -> tuple[Node, ...]:
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


def text_sections(text: str) -> Optional[dict[str, str]]:
    """`key: value ; key: value` sections of a text genotype, or None when the text is not in that form."""
    parts = {}
    for section in text.split(";"):
        key, sep, value = section.partition(":")
        if not sep:
            return None
        parts[key.strip()] = value.strip()
    return parts


def nodes_from_json(value: Any, what: str) -> tuple[Node, ...]:
    try:
        return tuple(tuple((str(op), src) for op, src in node) for node in value)
    except (TypeError, ValueError):
        raise GdasError(f"malformed genotype JSON: {what} must be a list of nodes, each a list of "
                        f"[op, input] pairs") from None


def concat_from_json(data: dict, key: str, first: int, n_nodes: int) -> tuple[int, ...]:
    value = data.get(key)
    if value is None:
        return tuple(range(first, first + n_nodes))
    if not isinstance(value, list):
        raise GdasError(f"malformed genotype JSON: {key} must be a list of node indices, got {value!r}")
    return tuple(value)


def count_param_free(nodes: tuple[Node, ...], param_free: frozenset[str]) -> int:
    return sum(op in param_free for node in nodes for op, _ in node)
