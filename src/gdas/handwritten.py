"""The Python API for hand-written loops: a genotype's final network as a plain module, a space's supernet for
your own Algorithm 1, and the derivation of its genotype."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from torch import nn

from gdas.configs import base as cfgbase
from gdas.configs.search import SEARCH_PRESETS, SearchConfig
from gdas.errors import GdasError
from gdas.genotypes import AnyGenotype, load_genotype
from gdas.spaces import get_space, space_of

LAYOUTS = {"cifar": "cifar10", "imagenet": "imagenet"}  # the stem and reductions: CIFAR's or ImageNet-mobile's


def build_network(genotype: Any, *, num_classes: int, C: int, N: int, in_channels: int = 3,
                  auxiliary: bool = False, layout: str = "cifar") -> nn.Module:
    """The final network of a genotype (or of a name / path `load_genotype` reads), as a plain nn.Module: 3N
    cells ("cifar": a 3x3 stem, for any input size; "imagenet": the mobile setting's stride-8 stem). Its forward
    gives the logits, or (logits, auxiliary logits) with `auxiliary` in train mode (eval mode: the logits)."""
    if layout not in LAYOUTS:
        raise GdasError(f"layout {layout!r} is not one of: {', '.join(LAYOUTS)}")
    if not isinstance(genotype, (str, os.PathLike)) and not hasattr(genotype, "kind"):
        raise GdasError(f"genotype must be a genotype object, a registry name or a path; got a "
                        f"{type(genotype).__name__}")
    genotype = load_genotype(genotype) if isinstance(genotype, (str, os.PathLike)) else genotype
    space = space_of(genotype)
    if space.data != "image":
        raise GdasError(f"{genotype.kind} genotypes are recurrent cells; build_network builds CNNs")
    for name, value in (("num_classes", num_classes), ("C", C), ("N", N)):
        if not isinstance(value, int) or value < 1:
            raise GdasError(f"{name} must be a positive integer, got {value!r}")
    return space.build_network(genotype, dataset=LAYOUTS[layout], C=C, N=N, num_classes=num_classes,
                               auxiliary=auxiliary, in_channels=in_channels)


def build_supernet(space: str = "darts", *, num_classes: int, in_channels: int = 3, C: int = 16, N: int = 2,
                   steps: Optional[int] = None, sampler: str = "gdas", **fields: Any) -> nn.Module:
    """The search network of an image space, for a hand-written Algorithm 1. `steps` defaults to the space's
    (darts 4, nb201 3); `fields` are other search-config fields it reads (frc, sample_scope, reference_grad, max_skip).

    Its `sample_arch(tau, arch_grad=..., generator=...)` draws one architecture per cell, `model(x, archs)`
    gives logits, `weight_parameters()` / `arch_parameters()` are W and A, `probabilities()` softmax(A).
    """
    names = [n for n, p in SEARCH_PRESETS.items() if p.space == space]
    if not names:
        raise GdasError(f"space {space!r} has no CNN supernet; choose one of: "
                        f"{', '.join(sorted({p.space for p in SEARCH_PRESETS.values()}))}")
    own = SEARCH_PRESETS[names[0]]
    given = cfgbase.check_fields(SearchConfig, fields, "in gdas.build_supernet()")
    cfg = dataclasses.replace(own, preset="custom", C=C, N=N, steps=own.steps if steps is None else steps,
                              sampler=sampler, **given)
    try:
        cfg.validate()
    except GdasError as exc:  # worded for Python: C, not --C
        raise GdasError(cfgbase.python_wording(str(exc), [SearchConfig])) from None
    model = get_space(space).build_supernet(cfg, num_classes, in_channels)
    model.search_config = cfg  # what `derive` reads (a plain attribute: not in the state dict)
    return model


def derive(supernet: nn.Module, **fields: Any) -> AnyGenotype:
    """The genotype of a supernet from `build_supernet`: its space's derivation of softmax(A); `fields` may
    change what the derivation reads (max_skip=2)."""
    cfg = getattr(supernet, "search_config", None)
    if not isinstance(cfg, SearchConfig):
        raise GdasError("derive() takes a supernet made by gdas.build_supernet()")
    cfg = dataclasses.replace(cfg, **cfgbase.check_fields(SearchConfig, fields, "in gdas.derive()"))
    return get_space(cfg.space).derive(supernet.probabilities(), cfg)
