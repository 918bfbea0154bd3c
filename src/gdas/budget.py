"""Search within a budget (`--cost`): the final network's expected cost under softmax(A) (its fixed part plus
the cells' differentiable part), the hinge at `--cost-target`, its penalty and the derived network's cost."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch

from gdas.errors import GdasError
from gdas.spaces.base import SearchSpace
from gdas.spaces.module.probe import chosen_cost, probe
from gdas.spaces.module.supernet import ModuleSupernet
from gdas.spaces.shapes import Shape, data_shape, dataset_shape

INFO_KEYS = {"mult-adds": "mult_adds_M", "params": "params_M"}  # --cost -> the space's `info` field


def expected_cost(logits: Mapping[str, Optional[torch.Tensor]], costs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """sum over A matrices, edges and ops of softmax(A) x cost: differentiable in A."""
    total = torch.zeros((), device=next(iter(costs.values())).device)
    for name, cost in costs.items():
        logit = logits.get(name)
        if logit is not None:
            total = total + (torch.softmax(logit, -1) * cost.to(logit.dtype)).sum()
    return total


class Budget:
    """The cost term of one search (a `SearchConfig` with --cost): per-op costs and the fixed part counted once
    at the final network's size (the training preset's C, N for the space and dataset, on the searched images'
    shape), the A step's penalty and the per-epoch cost metrics."""

    def __init__(self, cfg: Any, space: SearchSpace, model: torch.nn.Module, device: torch.device, *,
                 shape: Optional[Sequence[int]] = None):
        """`shape`: (channels, side, classes) of the searched images (default: the dataset's own)."""
        if space.op_costs is None or space.fixed_cost is None or space.info is None:
            raise GdasError(f"--cost is not available in the {space.name} space; drop it")
        self.cfg, self.space, self.kind = cfg, space, cfg.cost
        self.C, self.N = cfg.final_size
        self.shape: Shape = dataset_shape(cfg.dataset, shape, network=space.name)
        cfg.check_cost_target(self.shape)
        self.costs = {name: cost.to(device) for name, cost in
                      space.op_costs(cfg, cfg.dataset, self.C, self.N, cfg.cost, shape=self.shape).items()}
        self.fixed = cfg.fixed_cost(self.shape)
        self.target_of = cfg.cost_target_of
        self.logits = model.arch_logits()
        self._derived: dict[str, float] = {}

    @property
    def size(self) -> dict[str, int]:
        """The final network the costs are counted on: C, N and its input."""
        channels, image_size, classes = self.shape
        return {"C": self.C, "N": self.N, "channels": channels, "input_size": image_size, "num_classes": classes}

    def expected(self) -> torch.Tensor:
        """The cells' expected cost: every searched edge's ops weighted by softmax(A)."""
        return expected_cost(self.logits, self.costs)

    def expected_network(self) -> torch.Tensor:
        """The whole final network's expected cost: the fixed part plus the cells'."""
        return self.expected() + self.fixed

    def penalty(self) -> torch.Tensor:
        """LAMBDA x the expected cost, or LAMBDA x max(0, expected - target) with --cost-target; the expected
        cost is the whole network's (a run from before `cost_target_of`: the cells'). Both give A the same
        gradient without a target."""
        cost = self.expected_network() if self.target_of == "network" else self.expected()
        if self.cfg.cost_target is not None:
            cost = torch.relu(cost - self.cfg.cost_target)
        return self.cfg.cost_weight * cost

    def derived(self, genotype: Any) -> float:
        """The real cost (millions) of the derived genotype's final network at the same size."""
        key = str(genotype)
        if key not in self._derived:
            info = self.space.info(genotype, self.cfg.dataset, self.C, self.N, shape=self.shape)
            self._derived[key] = float(info[INFO_KEYS[self.kind]])
        return self._derived[key]

    def metrics(self, genotype: Any) -> dict[str, float]:
        """`expected_network_cost` = `fixed_cost` + `expected_cost` (the cells'), and `derived_cost`."""
        with torch.no_grad():
            cells = self.expected().item()
        return {"expected_network_cost": self.fixed + cells, "fixed_cost": self.fixed, "expected_cost": cells,
                "derived_cost": self.derived(genotype)}


class ModuleBudget(Budget):
    """The cost term of a module space: each candidate's cost counted at the shapes it sees on one sample of the
    searched data (`spaces.module.probe`), the fixed part everything outside the choices; the derived cost is
    counted on the frozen model. A nested choice counts as if its enclosing candidate always ran."""

    def __init__(self, cfg: Any, model: ModuleSupernet, device: torch.device, example: Any):
        self.cfg, self.kind, self.model, self.example = cfg, cfg.cost, model, example
        seen = probe(model, example)
        self.costs = {name: cost.to(device) for name, cost in seen.costs(cfg.cost).items()}
        self.fixed = seen.fixed[cfg.cost]
        self.target_of = "network"
        self.logits = model.arch_logits()
        self._derived: dict[str, float] = {}

    @property
    def size(self) -> dict[str, Any]:
        """The input the costs are counted on: one sample's shape."""
        return {"input": list(self.example.shape[1:]) if isinstance(self.example, torch.Tensor) else None}

    def derived(self, genotype: Any) -> float:
        key = str(genotype)
        if key not in self._derived:
            self._derived[key] = chosen_cost(self.model.net, genotype.choices, self.example)[self.kind]
        return self._derived[key]


def make_budget(cfg: Any, space: SearchSpace, model: torch.nn.Module, device: torch.device, data: Any) -> Budget:
    """The budget of a search: a module space's counted on a sample of its data (tensors) or a zero image of the
    searched images' shape; a cell space's at its final network's size."""
    if isinstance(model, ModuleSupernet):
        example = getattr(data, "example", None)
        if example is None:
            channels, side, _ = data_shape(data)
            example = torch.zeros(1, channels, side, side, device=device)
        return ModuleBudget(cfg, model, device, example)
    return Budget(cfg, space, model, device, shape=data_shape(data))
