"""A module space as a `SearchSpace`: any nn.Module (or factory) holding gdas.nn choices, by name or import path;
its supernet, derivation (the choice map), frozen network, sizes, per-candidate costs and sampled child."""

from __future__ import annotations

import copy
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn

from gdas.errors import GdasError
from gdas.flops import count_mult_adds, count_parameters
from gdas.nn.blocks import Choice, Repeat
from gdas.nn.freeze import freeze_choices
from gdas.nn.labels import Places, index_of, value_of
from gdas.spaces.base import SearchSpace
from gdas.spaces.module import factory as factories
from gdas.spaces.module.genotype import KIND, ChoiceMap
from gdas.spaces.module.probe import probe
from gdas.spaces.module.supernet import ModuleSupernet, derive_choices, random_choices

_RESOLVED: dict[tuple[str, int], SearchSpace] = {}


def _param_free(block: Any, index: Any) -> bool:
    """A chosen candidate without parameters (a skip, a pool, depth 0); input choices have no candidates of their own."""
    if isinstance(block, Choice):
        return next(block.candidates[block.names[index]].parameters(), None) is None
    if isinstance(block, Repeat):
        return block.depths[index] == 0 or all(next(b.parameters(), None) is None
                                               for b in block.blocks[:block.depths[index]])
    return False


Sizes = Callable[[str, int, int], dict[str, Any]]  # (dataset, C, N) -> the factory's size keywords


def module_space(name: str, factory: Callable[..., nn.Module], *, description: str = "",
                 published: Optional[Mapping[str, ChoiceMap]] = None, sizes: Optional[Sizes] = None) -> SearchSpace:
    """The `SearchSpace` of a module factory, named `name` (a registered name, or its module:... path). `sizes`
    turns a config's dataset, C and N into the factory's own keywords (a registered space's sizes); without it
    the factory gets num_classes= / in_channels= when it takes them, nothing else."""
    structure: dict[str, Places] = {}  # the labels of the last model built: what derivation reads

    def make(num_classes: Optional[int] = None, in_channels: Optional[int] = None, dataset: Optional[str] = None,
             C: Optional[int] = None, N: Optional[int] = None) -> nn.Module:
        extra = sizes(dataset or "", C or 0, N or 0) if sizes is not None else {}
        return factories.build(factory, name, num_classes=num_classes, in_channels=in_channels, **extra)

    def groups() -> dict[str, Places]:
        if not structure:
            structure.update(ModuleSupernet(make(), what=f"space {name}").groups)
        return structure

    def build_supernet(cfg: Any, num_classes: Optional[int], in_channels: Optional[int]) -> ModuleSupernet:
        net = make(num_classes, in_channels, getattr(cfg, "dataset", None), getattr(cfg, "C", None),
                   getattr(cfg, "N", None))
        supernet = ModuleSupernet(net, sampler=cfg.sampler, what=f"space {name}")
        structure.clear()
        structure.update(supernet.groups)
        return supernet

    def choice_map(choices: Mapping[str, Any]) -> ChoiceMap:
        """The genotype of a choice map: with the labels whose choice has no parameters (the guards' measure)."""
        places = groups()
        free = tuple(label for label, ps in places.items()
                     if _param_free(ps[0][1], index_of(ps[0][1], label, choices[label])))
        return ChoiceMap.of(name, choices, free)

    def derive(probs: Mapping[str, Optional[torch.Tensor]], cfg: Any = None) -> ChoiceMap:
        return choice_map(derive_choices(groups(), probs))

    def random_genotype(generator: torch.Generator, cfg: Any) -> ChoiceMap:
        """A uniformly random choice map of the space at the config's size: what --random-baseline trains."""
        return choice_map(random_choices(build_supernet(cfg, None, None).groups, generator))

    def build_network(genotype: ChoiceMap, *, num_classes: Optional[int] = None, in_channels: Optional[int] = None,
                      auxiliary: bool = False, dataset: Optional[str] = None, C: Optional[int] = None,
                      N: Optional[int] = None) -> nn.Module:
        """The frozen model (forward as the space's); dataset, C and N size a registered space (`sizes`)."""
        if auxiliary:
            raise GdasError(f"space {name} has no auxiliary head; pass --no-auxiliary")
        return freeze_choices(make(num_classes, in_channels, dataset, C, N), genotype.choices, f"space {name}")

    def info(genotype: ChoiceMap, dataset: str, C: int, N: int, *, shape: Optional[Sequence[int]] = None
             ) -> dict[str, Any]:
        channels, side, classes = shape if shape is not None else (3, 32, 10)
        model = build_network(genotype, num_classes=classes, in_channels=channels, dataset=dataset, C=C, N=N)
        sized = {"C": C, "N": N} if sizes is not None else {}  # C and N size a registered space only
        return {"dataset": dataset, **sized, "channels": channels, "input_size": side, "num_classes": classes,
                "params_M": count_parameters(model, ()) / 1e6,
                "mult_adds_M": count_mult_adds(model, (channels, side, side)) / 1e6}

    def image_probe(cfg: Any, shape: Sequence[int]) -> Any:
        channels, side, classes = shape
        supernet = build_supernet(cfg, classes, channels)
        return probe(supernet, torch.zeros(1, channels, side, side))

    def op_costs(cfg: Any, dataset: str, C: int, N: int, kind: str, shape: Optional[Sequence[int]] = None
                 ) -> dict[str, torch.Tensor]:
        """Each label's candidates' cost (millions) at the shapes they see on images of `shape`."""
        return image_probe(cfg, shape or (3, 32, 10)).costs(kind)

    def fixed_cost(cfg: Any, dataset: str, C: int, N: int, kind: str, shape: Optional[Sequence[int]] = None) -> float:
        """What lies outside every choice (stem, head, ...), counted as `op_costs` counts."""
        return image_probe(cfg, shape or (3, 32, 10)).fixed[kind]

    def child(supernet: ModuleSupernet, archs: list) -> nn.Module:
        """The plain model a GDAS draw runs, with copies of the supernet's current weights."""
        choices = {label: value_of(supernet.block(label), arch.indices[0]) for label, arch in zip(supernet.labels, archs)}
        return freeze_choices(copy.deepcopy(supernet.net), choices)

    def check_model(cfg: Any, num_classes: Optional[int], in_channels: Optional[int], example: Any
                    ) -> ModuleSupernet:
        """A dry forward on a batch before any run folder exists: shapes, and a --cost-target above the fixed part.
        Returns the supernet it checked."""
        supernet = build_supernet(cfg, num_classes, in_channels)
        seen = probe(supernet, example[:1] if isinstance(example, torch.Tensor) else example)
        if cfg.cost is not None and cfg.cost_target is not None and cfg.cost_target < seen.fixed[cfg.cost]:
            raise GdasError(f"--cost-target {cfg.cost_target:g} is below the fixed part of the model "
                            f"({seen.fixed[cfg.cost]:.4g} M {cfg.cost}: everything outside the choices), which no "
                            f"choice removes; raise it above {seen.fixed[cfg.cost]:.4g}")
        return supernet

    return SearchSpace(
        name=name, description=description or f"the choices of {name}", data="image", ops=(), param_free=frozenset(),
        genotype_kind=KIND, build_supernet=build_supernet, derive=derive, parse=ChoiceMap.parse,
        from_json=ChoiceMap.from_json, build_network=build_network, dot=lambda genotype: {},
        published=dict(published or {}), info=info, child=child, op_costs=op_costs, fixed_cost=fixed_cost,
        check_model=check_model, random_genotype=random_genotype)


def _unavailable(reason: str) -> Callable[..., nn.Module]:
    def factory(**_sizes: Any) -> nn.Module:
        raise GdasError(reason)
    return factory


def space_for(path: str) -> SearchSpace:
    """The space of a `module:package.module:Factory` path (imported once per process)."""
    try:
        factory = factories.load(path)  # a notebook cell run again defines a new class under the same path
    except GdasError as exc:  # its runs can still be read and reported; building it says why it cannot
        return module_space(path, _unavailable(str(exc)), description=f"the module {path[len(factories.PREFIX):]}")
    key = (path, id(factory))
    if key not in _RESOLVED:
        _RESOLVED[key] = module_space(path, factory, description=f"the module {path[len(factories.PREFIX):]}")
    return _RESOLVED[key]
