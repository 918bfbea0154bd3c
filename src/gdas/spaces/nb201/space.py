"""The NAS-Bench-201 space's registration: supernet, argmax derivation, network, drawing, sizes, NATS-Bench."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from gdas.errors import GdasError
from gdas.reporting.draw import INPUT, NODE, OUTPUT, DotGraph
from gdas.spaces.base import Benchmark, SearchSpace
from gdas.spaces.nb201.benchmark import check_benchmark, query
from gdas.spaces.nb201.child import child_network
from gdas.spaces.nb201.cost import fixed_cost, nb201_info, op_costs
from gdas.spaces.nb201.derive import derive_nb201
from gdas.spaces.nb201.genotype import NB201_REGISTRY, NB201Genotype, random_genotype
from gdas.spaces.nb201.networks import NB201Network
from gdas.spaces.nb201.ops import NB201_OPS, PARAM_FREE
from gdas.spaces.nb201.supernet import NB201SearchNetwork


def check_input(image_size: int, auxiliary: bool) -> None:
    """Both residual reductions add a stride-2 convolution to a 2x2 average pool: the side must divide by 4."""
    if auxiliary:
        raise GdasError("NAS-Bench-201 networks have no auxiliary head; pass --no-auxiliary")
    if image_size < 4 or image_size % 4:
        raise GdasError(f"NAS-Bench-201 networks halve the images twice with residual blocks, so their side must "
                        f"be a multiple of 4, got {image_size}x{image_size}; pass --image-size "
                        f"{max(4, image_size // 4 * 4)} (or {image_size // 4 * 4 + 4})")


def build_supernet(cfg: Any, num_classes: int, in_channels: int) -> NB201SearchNetwork:
    return NB201SearchNetwork(cfg.C, cfg.N, num_classes, in_channels=in_channels, steps=cfg.steps,
                              sampler=cfg.sampler, sample_scope=cfg.sample_scope, reference_grad=cfg.reference_grad)


def derive(probs: Mapping[str, Optional[torch.Tensor]], cfg: Any) -> NB201Genotype:
    cell = probs["cell"]
    assert cell is not None
    return derive_nb201(cell, cfg.max_skip)


def draw_random(generator: torch.Generator, cfg: Any) -> NB201Genotype:
    """A uniform op on every edge (`none` included), as the argmax derivation may yield; --max-skip honoured."""
    return random_genotype(generator, cfg.steps, max_skip=cfg.max_skip)


def parse(text: str) -> Optional[NB201Genotype]:
    """NB201's string form, or None when the text is not meant as one."""
    return NB201Genotype.parse(text) if NB201Genotype.looks_like(text) else None


def build_network(genotype: NB201Genotype, *, dataset: str = "cifar10", C: int = 16, N: int = 5,
                  num_classes: int = 10, auxiliary: bool = False, in_channels: int = 3) -> nn.Module:
    """The NB201 inference network; forward gives the logits. It has no auxiliary head."""
    if auxiliary:
        raise GdasError("NAS-Bench-201 networks have no auxiliary head; build them with auxiliary=False")
    return NB201Network(genotype, C, N, num_classes, in_channels)


def info(genotype: NB201Genotype, dataset: str, C: int, N: int, *,
         shape: Optional[Sequence[int]] = None) -> dict[str, Any]:
    return nb201_info(genotype, dataset, C=C, N=N, shape=shape)


def dot(genotype: NB201Genotype) -> dict[str, str]:
    """The cell: node 0 is its input, the last node its output; every edge drawn with its op (`none` too)."""
    g = DotGraph("cell")
    last = len(genotype.nodes)
    g.node("0", INPUT, label="in (0)")
    for i in range(1, last):
        g.node(str(i), NODE)
    g.node(str(last), OUTPUT, label=f"out ({last})")
    for op, src, dst in genotype.edges:
        g.edge(str(src), str(dst), op)
    return {"cell": g.text()}


def check_lookup(cfg: Any) -> None:
    """A search with `--benchmark` must derive cells NATS-Bench holds, and find nats_bench and the file."""
    if cfg.steps != 3:
        raise GdasError(f"--benchmark looks up NB201's 4-node cells (--steps 3), but this search derives "
                        f"{cfg.steps + 1}-node cells (--steps {cfg.steps}); drop one of the two options")
    check_benchmark(cfg.benchmark)


SPACE = SearchSpace(
    name="nb201", description="NAS-Bench-201 cells: 4 nodes, 6 edges, 5 ops; argmax on every edge",
    data="image", ops=NB201_OPS, param_free=PARAM_FREE, genotype_kind=NB201Genotype.kind,
    build_supernet=build_supernet, derive=derive, parse=parse, from_json=NB201Genotype.from_json,
    build_network=build_network, dot=dot,
    published={name: NB201Genotype.parse(arch) for name, arch in NB201_REGISTRY.items()}, info=info,
    child=child_network, op_costs=op_costs, fixed_cost=fixed_cost,
    benchmark=Benchmark(name="NATS-Bench", check=check_lookup, query=query),
    check_input=check_input, random_genotype=draw_random)
