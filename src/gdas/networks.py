"""Final networks of any image space from a genotype: the genotype check, building, rebuilding from a checkpoint."""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from torch import nn

from gdas.errors import GdasError
from gdas.genotypes import AnyGenotype, genotype_from_json, load_genotype
from gdas.spaces import space_of


def image_genotype(spec: str, space: Optional[str] = None) -> AnyGenotype:
    """The genotype `spec` names, which must belong to an image space (to `space` when given)."""
    genotype = load_genotype(spec)
    owner = space_of(genotype)
    if owner.data != "image":
        raise GdasError(f"--genotype {spec} is a {genotype.kind} genotype; a CNN needs a CNN one (e.g. GDAS, "
                        "GDAS_FRC or a `gdas search` run directory); recurrent cells train with gdas train-lm")
    if space is not None and owner.name != space:
        hint = "--preset nb201-cifar10 (or --space nb201)" if owner.name == "nb201" else "--preset cifar10"
        raise GdasError(f"--genotype {spec[:80]} is a {owner.name} genotype, but this run builds {space} networks; "
                        f"train it with {hint}")
    return genotype


def split_output(out: Union[torch.Tensor, tuple]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(logits, auxiliary logits or None) of a final network's forward: the logits alone, or the pair (a space
    registered from outside may still give the older (logits, None))."""
    if isinstance(out, torch.Tensor):
        return out, None
    logits, logits_aux = out
    return logits, logits_aux


def network_from(genotype: AnyGenotype, args: dict[str, Any]) -> nn.Module:
    """The network described by `args` (the `network` entry of a checkpoint), in the genotype's space."""
    return space_of(genotype).build_network(genotype, dataset=args["dataset"], C=args["C"], N=args["N"],
                                            num_classes=args["num_classes"], auxiliary=args["auxiliary"],
                                            in_channels=args["in_channels"])


def load_network(state: dict[str, Any]) -> tuple[nn.Module, AnyGenotype, dict[str, Any]]:
    """(network with its weights, genotype, network args) from the `task` entry of best.pt or checkpoint.pt."""
    genotype = genotype_from_json(state["genotype"])
    if space_of(genotype).data != "image":
        raise GdasError("the checkpoint holds a recurrent genotype; it is not a CNN training run")
    model = network_from(genotype, state["network"])
    model.load_state_dict(state["model"])
    return model, genotype, state["network"]


def check_sizes(genotype: AnyGenotype, C: int) -> None:
    """Checks of C that depend on the genotype (the fixed reduction cell's groups), before anything is built."""
    space = space_of(genotype)
    if space.name == "darts":
        from gdas.spaces.darts.space import check_channels
        check_channels(genotype, C)

