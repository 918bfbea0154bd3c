"""`gdas.freeze`: a module space with its choices fixed by a choice map, as a plain nn.Module (the chosen
candidates only), fresh or with the trained supernet's weights of those candidates."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Optional

import torch
from torch import nn

from gdas.engine import rundir as files
from gdas.errors import GdasError
from gdas.genotypes import load_genotype
from gdas.nn.freeze import freeze_choices
from gdas.spaces import get_space
from gdas.spaces.base import SearchSpace
from gdas.spaces.module.factory import path_of
from gdas.spaces.module.genotype import ChoiceMap


def module_space_of(space: Any) -> SearchSpace:
    """The module space `space` names: a class or factory, module:package.module:Factory, or a registered name."""
    found = get_space(space if isinstance(space, str) else path_of(space))
    if found.genotype_kind != "module":
        raise GdasError(f"space {found.name!r} searches cells; freeze takes a module space (a module class or "
                        "factory holding gdas.nn choices, module:package.module:Factory, or mobilenet)")
    return found


def choice_map_of(genotype: Any) -> ChoiceMap:
    """The ChoiceMap of a ChoiceMap, a SearchResult, a search folder or a genotype.json."""
    if hasattr(genotype, "run_dir") and hasattr(genotype, "genotype"):  # a SearchResult
        genotype = genotype.genotype
    if isinstance(genotype, (str, os.PathLike)):
        genotype = load_genotype(genotype)
    if not isinstance(genotype, ChoiceMap):
        raise GdasError(f"freeze takes a choice map (a module space's genotype, a dict of label: choice, a "
                        f"SearchResult or a search folder); got a {type(genotype).__name__}")
    return genotype


def choices_of(genotype: Any) -> dict[str, Any]:
    """The choice map of a ChoiceMap, a {label: choice} dict, a SearchResult, a search folder or a genotype.json."""
    return dict(genotype) if isinstance(genotype, Mapping) else choice_map_of(genotype).choices


def _run_folder(weights: Any) -> Path:
    """The search folder whose supernet weights are carried over (a multi-seed folder: its kept seed's)."""
    folder = Path(weights.run_dir if hasattr(weights, "run_dir") else weights)
    if (folder / files.SEEDS).exists():
        folder = folder / f"seed-{files.read_json(folder / files.SEEDS)['best_seed']}"
    if not (folder / files.CHECKPOINT).exists():
        raise GdasError(f"{folder} holds no {files.CHECKPOINT}; pass a search run folder (or its SearchResult)")
    return folder


def _search_weights(weights: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(the supernet's weights, the sizes its model was built with) of a search folder."""
    folder = _run_folder(weights)
    state = torch.load(folder / files.CHECKPOINT, map_location="cpu", weights_only=False)
    config = files.read_json(folder / files.CONFIG).get("config", {})
    data = files.read_json(folder / files.DATA) if (folder / files.DATA).exists() else {}
    sizes = {"num_classes": data.get("num_classes"), "in_channels": data.get("channels"),
             **{k: config[k] for k in ("dataset", "C", "N") if k in config}}
    return state["task"]["model"], sizes


def freeze(space: Any, genotype: Any, *, weights: Any = None, num_classes: Optional[int] = None,
           in_channels: Optional[int] = None, **sizes: Any) -> nn.Module:
    """A plain nn.Module: `space` built and each of its choices replaced by the one `genotype` chose (see
    `choices_of`). `weights`: a search's SearchResult or run folder (its supernet's weights of the chosen
    candidates are carried over, at the sizes that search built) or a state_dict of the unfrozen module; None:
    fresh weights, to train from scratch. `num_classes`, `in_channels` (and a registered space's dataset, C, N)
    are passed to the factory when it takes them."""
    found = module_space_of(space)
    choices = choices_of(genotype)
    state: Optional[Mapping[str, Any]] = None
    if weights is not None and not isinstance(weights, Mapping):
        state, built = _search_weights(weights)
        num_classes = num_classes if num_classes is not None else built.pop("num_classes")
        in_channels = in_channels if in_channels is not None else built.pop("in_channels")
        sizes = {**{k: v for k, v in built.items() if k in ("dataset", "C", "N")}, **sizes}
    elif weights is not None:
        state = {f"net.{k}": v for k, v in weights.items()}
    cfg = SimpleNamespace(sampler="gdas", **sizes)
    supernet = found.build_supernet(cfg, num_classes, in_channels)
    if state is not None:
        own = {k: v for k, v in state.items() if k.startswith("net.")}
        missing, unexpected = supernet.load_state_dict(own, strict=False)
        missing = [k for k in missing if k.startswith("net.")]
        if missing or unexpected:
            raise GdasError(f"the weights do not fit space {found.name} ({len(missing)} missing, e.g. "
                            f"{(missing or unexpected)[0][4:]!r}); build it with the sizes the search used")
    return freeze_choices(supernet.net, choices, f"space {found.name}")
