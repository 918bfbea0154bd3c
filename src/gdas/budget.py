"""Search within a budget (`--cost`): the final network's expected cost under softmax(A) (its fixed part plus
the cells' differentiable part), the hinge at `--cost-target`, its penalty and the derived network's cost;
latency from a table of the user's device (`--latency-table`), and the derived network's measured latency."""

from __future__ import annotations

import sys
from typing import Any, Mapping, Optional, Sequence

import torch

from gdas.errors import GdasError
from gdas.latency.networks import network_ms
from gdas.latency.table import LatencyTable
from gdas.latency.timing import versions
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
    shape; latency: the table's, in ms at the C, N it was built for), the A step's penalty and the per-epoch cost
    metrics."""

    def __init__(self, cfg: Any, space: SearchSpace, model: torch.nn.Module, device: torch.device, *,
                 shape: Optional[Sequence[int]] = None):
        """`shape`: (channels, side, classes) of the searched images (default: the dataset's own)."""
        latency = cfg.cost == "latency"
        needs = (space.layout, space.choices) if latency else (space.op_costs, space.fixed_cost, space.info)
        if any(f is None for f in needs):
            raise GdasError(f"--cost {cfg.cost} is not available in the {space.name} space; drop it")
        self.cfg, self.space, self.kind = cfg, space, cfg.cost
        self.shape: Shape = dataset_shape(cfg.dataset, shape, network=space.name)
        self.table: Optional[LatencyTable] = cfg.latency(self.shape) if latency else None
        if self.table is not None:
            self.C, self.N = self.table.size
            costs, self.fixed = self.table.costs(), self.table.constant_ms
        else:
            self.C, self.N = cfg.final_size
            costs = space.op_costs(cfg, cfg.dataset, self.C, self.N, cfg.cost, shape=self.shape)
            self.fixed = cfg.fixed_cost(self.shape)
        cfg.check_fixed_part(self.fixed)  # the table read and the fixed part counted once
        self.costs = {name: cost.to(device) for name, cost in costs.items()}
        self.target_of = cfg.cost_target_of
        self.logits = model.arch_logits()
        self._derived: dict[str, float] = {}

    @property
    def size(self) -> dict[str, int]:
        """The final network the costs are counted on: C, N and its input."""
        channels, image_size, classes = self.shape
        return {"C": self.C, "N": self.N, "channels": channels, "input_size": image_size, "num_classes": classes}

    def expected(self) -> torch.Tensor:
        """The cells' expected cost: every searched edge's ops weighted by softmax(A); latency, in a space whose
        derivation is not every row's likeliest op: weighted by what it derives in expectation
        (`SearchSpace.expected_choices`, e.g. darts: two inputs per node, never `none`)."""
        if self.table is None or self.space.expected_choices is None:
            return expected_cost(self.logits, self.costs)
        shares = self.space.expected_choices({name: torch.softmax(logit, -1) for name, logit in self.logits.items()
                                              if logit is not None})
        return sum((shares[name] * cost.to(shares[name].dtype)).sum() for name, cost in self.costs.items())

    def expected_network(self) -> torch.Tensor:
        """The whole final network's expected cost: the fixed part plus the cells'."""
        return self.expected() + self.fixed

    def penalty(self) -> torch.Tensor:
        """LAMBDA x the expected cost, or LAMBDA x max(0, expected - target) with --cost-target; the expected
        cost is the whole network's (a run from before `cost_target_of`: the cells'). Both give A the same
        gradient without a target.

        Latency with --cost-target: the hinge is the derived network's, LAMBDA x max(0, its predicted latency -
        target), with the expected latency's gradient (straight-through): A is pushed towards faster ops exactly
        while the network it derives is too slow. A hinge on the expected latency stops at a mixture whose
        likeliest ops, the derived network, can be far faster than the target (docs/latency.md)."""
        cost = self.expected_network() if self.target_of == "network" else self.expected()
        target = self.cfg.cost_target
        if target is not None and self.table is not None:
            excess = self.derived(self.genotype()) - target
            return self.cfg.cost_weight * (cost - cost.detach() + excess) if excess > 0 else cost * 0.0
        if target is not None:
            cost = torch.relu(cost - target)
        return self.cfg.cost_weight * cost

    def genotype(self) -> Any:
        """The genotype A derives now (the search's own derivation)."""
        with torch.no_grad():
            probs = {name: None if logit is None else torch.softmax(logit, -1) for name, logit in self.logits.items()}
        return self.space.derive(probs, self.cfg)

    def derived(self, genotype: Any) -> float:
        """The real cost (millions) of the derived genotype's final network at the same size; latency: the
        table's prediction of it (ms)."""
        key = str(genotype)
        if key not in self._derived:
            if self.table is not None:
                assert self.space.choices is not None
                self._derived[key] = self.table.predict_ms(self.space.choices(genotype))
            else:
                info = self.space.info(genotype, self.cfg.dataset, self.C, self.N, shape=self.shape)
                self._derived[key] = float(info[INFO_KEYS[self.kind]])
        return self._derived[key]

    def measured(self, genotype: Any) -> dict[str, Any]:
        """Latency: the derived network measured end to end here under the table's settings, with this machine
        (`derived_measured_ms`), or why it could not be (another machine's GPU, no ONNX Runtime); {} otherwise."""
        if self.table is None:
            return {}
        try:
            self.table.settings.check()
            here = versions(self.table.settings)
            timing = network_ms(self.table, self.space, genotype)
        except GdasError as exc:
            print(f"gdas: warning: the derived network's latency was not measured: {exc}", file=sys.stderr)
            return {"derived_measured_error": str(exc)}
        warning = self.table.device_warning(here)
        if warning:
            print(warning, file=sys.stderr)
        return {"derived_measured_ms": timing.ms, "derived_measured_stable": timing.stable,
                "latency_measured_on": {k: here[k] for k in ("cpu_model", "gpu", "load_avg_1m") if k in here},
                "latency_table": self.table.describe()}

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
        self.target_of, self.table = "network", None
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
    if isinstance(model, ModuleSupernet) and cfg.cost != "latency":  # latency: the table's places, as cell spaces
        example = getattr(data, "example", None)
        if example is None:
            channels, side, _ = data_shape(data)
            example = torch.zeros(1, channels, side, side, device=device)
        return ModuleBudget(cfg, model, device, example)
    return Budget(cfg, space, model, device, shape=data_shape(data))
