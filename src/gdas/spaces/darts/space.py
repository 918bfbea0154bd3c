"""The DARTS CNN space's registration: supernet, derivation, final networks, drawing and sizes of its genotypes."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

import torch
from torch import nn

from gdas.errors import GdasError
from gdas.flops import count_mult_adds, count_parameters
from gdas.reporting.draw import INPUT, NODE, OUTPUT, DotGraph
from gdas.spaces.base import Node, SearchSpace
from gdas.spaces.darts.child import child_network
from gdas.spaces.darts.cost import fixed_cost, op_costs
from gdas.spaces.darts.derive import derive_genotype
from gdas.spaces.darts.fixed_cell import FRC_GROUPS
from gdas.spaces.darts.genotype import PUBLISHED, Genotype, random_genotype
from gdas.spaces.darts.networks import build_network as _build_network
from gdas.spaces.darts.ops import PARAMETER_FREE, PRIMITIVES
from gdas.spaces.darts.supernet import SearchNetwork
from gdas.spaces.shapes import dataset_shape


def check_channels(genotype: Genotype, C: int) -> None:
    """The fixed reduction cell runs at 2C and 4C channels in FRC_GROUPS groups: 2C must divide by them."""
    if genotype.fixed_reduction and (2 * C) % FRC_GROUPS:
        raise GdasError(f"the fixed reduction cell needs 2C divisible by {FRC_GROUPS} (its convolutions use "
                        f"{FRC_GROUPS} groups), so --C must be divisible by {FRC_GROUPS // 2}; got C={C}")


# The auxiliary head pools 5x5 (stride 3) on the map after the second reduction: it needs 6x6 there.
MIN_AUX_INPUT = 21


def check_input(image_size: int, auxiliary: bool) -> None:
    """Any side works (the reductions pad odd maps); the auxiliary head needs a 6x6 map after two halvings."""
    if image_size < 1:
        raise GdasError(f"images must be at least 1x1, got {image_size}x{image_size}")
    if auxiliary and image_size < MIN_AUX_INPUT:
        raise GdasError(f"the auxiliary head needs images of at least {MIN_AUX_INPUT}x{MIN_AUX_INPUT} (a 6x6 map "
                        f"after two reductions), got {image_size}x{image_size}; raise --image-size or pass "
                        "--no-auxiliary")


def build_supernet(cfg: Any, num_classes: int, in_channels: int) -> SearchNetwork:
    return SearchNetwork(cfg.C, cfg.N, num_classes, in_channels=in_channels, steps=cfg.steps, frc=cfg.frc,
                         sampler=cfg.sampler, sample_scope=cfg.sample_scope)


def derive(probs: Mapping[str, Optional[torch.Tensor]], cfg: Any) -> Genotype:
    normal = probs["normal"]
    assert normal is not None
    return derive_genotype(normal, probs.get("reduce"), steps=cfg.steps, max_skip=cfg.max_skip)


def draw_random(generator: torch.Generator, cfg: Any) -> Genotype:
    """A random cell pair as derivation yields them: the fixed reduction cell with --frc, --max-skip honoured."""
    return random_genotype(generator, cfg.steps, fixed_reduction=cfg.frc, max_skip=cfg.max_skip)


def build_network(genotype: Genotype, *, dataset: str, C: int, N: int, num_classes: int, auxiliary: bool = False,
                  in_channels: int = 3) -> nn.Module:
    """The CIFAR layout (ImageNet-mobile for dataset "imagenet"); forward gives an `Output` (spaces/base.py)."""
    check_channels(genotype, C)
    return _build_network(genotype, dataset, C, N, num_classes, auxiliary, in_channels)


def auxiliary_fits(dataset: str, image_size: int) -> bool:
    """Whether the auxiliary head can run on images of this side (a 6x6 map after the second reduction)."""
    if dataset.lower() == "imagenet":
        from gdas.configs.train import MIN_IMAGENET_AUX_SIZE  # configs import the data modules: not at import time
        return image_size >= MIN_IMAGENET_AUX_SIZE
    return image_size >= MIN_AUX_INPUT


def info(genotype: Genotype, dataset: str, C: int, N: int, *,
         shape: Optional[Sequence[int]] = None) -> dict[str, Any]:
    """Size of the final network on `dataset` (or on `shape` = (channels, side, classes)): params (M, without
    and, when the input is large enough for the auxiliary head, with it) and mult-adds (M, one image)."""
    key = dataset.lower()
    channels, size, classes = dataset_shape(key, shape)
    auxiliary = auxiliary_fits(key, size)
    model = build_network(genotype, dataset=key, C=C, N=N, num_classes=classes, auxiliary=auxiliary,
                          in_channels=channels)
    sizes = {"params_M": count_parameters(model) / 1e6}
    if auxiliary:
        sizes["params_aux_M"] = count_parameters(model, exclude=()) / 1e6
    return {**sizes, "mult_adds_M": count_mult_adds(model, (channels, size, size)) / 1e6, "C": C, "N": N,
            "dataset": key, "input_size": size, "channels": channels, "num_classes": classes, "auxiliary": auxiliary}


# FIX-R (SPEC / paper Fig. 3): each input feeds one conv branch and one pool branch, all concatenated.
_FIXR_CONV = f"conv_1x3_3x1 (groups {FRC_GROUPS}, stride 2)\nconv_1x1"
_FIXR_POOL = "max_pool_3x3 (stride 2)"



def _cnn_dot(nodes: Sequence[Node], concat: Iterable[int], title: str) -> str:
    inputs = ("c_{k-2}", "c_{k-1}")

    def name(index: int) -> str:  # genotype node index -> drawn name (intermediates count from 0)
        return inputs[index] if index < 2 else str(index - 2)

    g = DotGraph(title)
    for inp in inputs:
        g.node(inp, INPUT)
    for i in range(len(nodes)):
        g.node(str(i), NODE)
    for i, node in enumerate(nodes):
        for op, src in node:
            g.edge(name(src), str(i), op)
    g.node("c_{k}", OUTPUT)
    for index in concat:
        g.edge(name(index), "c_{k}")
    return g.text()


def _fixed_reduce_dot() -> str:
    g = DotGraph("reduce")
    for inp in ("c_{k-2}", "c_{k-1}"):
        g.node(inp, INPUT)
    branches = [("c_{k-2}", _FIXR_CONV), ("c_{k-1}", _FIXR_CONV),
                ("c_{k-2}", _FIXR_POOL), ("c_{k-1}", _FIXR_POOL)]
    for i, (src, op) in enumerate(branches):
        g.node(str(i), NODE)
        g.edge(src, str(i), op)
    g.node("c_{k}", OUTPUT, label="c_{k} (concat, FIX-R)")
    for i in range(len(branches)):
        g.edge(str(i), "c_{k}")
    return g.text()



def dot(genotype: Genotype) -> dict[str, str]:
    reduce = (_fixed_reduce_dot() if genotype.reduce is None
              else _cnn_dot(genotype.reduce, genotype.reduce_concat or (), "reduce"))
    return {"normal": _cnn_dot(genotype.normal, genotype.normal_concat, "normal"), "reduce": reduce}


SPACE = SearchSpace(
    name="darts", description="DARTS CNN cells: normal + reduction (or the fixed reduction cell), 8 ops, 14 edges",
    data="image", ops=PRIMITIVES, param_free=PARAMETER_FREE, genotype_kind=Genotype.kind,
    build_supernet=build_supernet, derive=derive, parse=Genotype.parse, from_json=Genotype.from_json,
    build_network=build_network, dot=dot, published=PUBLISHED, info=info, child=child_network,
    op_costs=op_costs, fixed_cost=fixed_cost, check_input=check_input, random_genotype=draw_random)
