"""Tests of --cost: per-op costs counted from the real ops, the expected cost's gradient, the penalty."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import gdas
from cli_helpers import expect_error, kill_after_checkpoints, run_cli
from gdas.budget import INFO_KEYS, Budget, expected_cost
from gdas.configs.search import SEARCH_PRESETS, SearchConfig
from gdas.engine.rundir import stored_config
from gdas.errors import GdasError
from gdas.data.images import ImageDataset
from gdas.data.search import ImageSearchData, split_indices
from gdas.flops import count_mult_adds
from gdas.genotypes import load_genotype
from gdas.reporting import plots
from gdas.reporting.runview import load_run
from gdas.search import SearchTask
from gdas.spaces import get_space
from gdas.spaces.darts.genotype import Genotype, random_genotype
from gdas.spaces.darts.ops import PRIMITIVES
from gdas.spaces.nb201 import NB201_OPS, NB201Genotype


def _chosen_cost(costs: dict[str, torch.Tensor], genotype: Genotype) -> float:
    """The cost matrices summed over the (edge, op) pairs a DARTS genotype keeps."""
    total = 0.0
    for name, nodes in (("normal", genotype.normal), ("reduce", genotype.reduce)):
        for i, node in enumerate(nodes or ()):
            start = sum(2 + k for k in range(i))
            total += sum(costs[name][start + src, PRIMITIVES.index(op)].item() for op, src in node)
    return total


# A user's own data has no fixed shape: (channels, side, classes) come from the images (odd sides too).
OWN_SHAPES = [("cifar10", None), ("fashion-mnist", None), ("folder", (1, 28, 5)), ("npz", (3, 13, 4))]


@pytest.mark.parametrize("kind, key", [("mult-adds", "mult_adds_M"), ("params", "params_M")])
@pytest.mark.parametrize("dataset, shape", OWN_SHAPES)
def test_darts_op_costs_account_for_the_real_network(kind, key, dataset, shape):
    """Swapping the ops of a genotype changes the real network's cost by exactly the change in op costs."""
    space, cfg = get_space("darts"), SEARCH_PRESETS["smoke"]
    costs = space.op_costs(cfg, dataset, 8, 2, kind, shape=shape)
    assert set(costs) == {"normal", "reduce"} and costs["normal"].shape == (14, len(PRIMITIVES))
    base = load_genotype("DARTS_V2")  # skips (stride 2 in the reduction cell: a FactorizedReduce) and pools

    def swap(nodes, op):
        return tuple(tuple((op, src) for _, src in node) for node in nodes)

    for op in ("sep_conv_5x5", "dil_conv_3x3", "avg_pool_3x3"):
        other = Genotype(swap(base.normal, op), base.normal_concat, swap(base.reduce, op), base.reduce_concat)
        real = (space.info(other, dataset, 8, 2, shape=shape)[key]
                - space.info(base, dataset, 8, 2, shape=shape)[key])
        assert real == pytest.approx(_chosen_cost(costs, other) - _chosen_cost(costs, base), rel=1e-5, abs=1e-6)
    assert costs["normal"][:, PRIMITIVES.index("none")].sum() == 0
    assert (costs["normal"][:, PRIMITIVES.index("sep_conv_5x5")] > costs["normal"][:, PRIMITIVES.index("sep_conv_3x3")]).all()
    frc = space.op_costs(dataclasses.replace(cfg, frc=True), dataset, 8, 2, kind, shape=shape)
    assert set(frc) == {"normal"}


@pytest.mark.parametrize("kind, key", [("mult-adds", "mult_adds_M"), ("params", "params_M")])
@pytest.mark.parametrize("dataset, shape", [("cifar10", None), ("folder", (1, 28, 5))])
def test_nb201_op_costs_account_for_the_real_network(kind, key, dataset, shape):
    space, cfg = get_space("nb201"), SEARCH_PRESETS["nb201-smoke"]
    costs = space.op_costs(cfg, dataset, 16, 5, kind, shape=shape)["cell"]
    assert costs.shape == (6, len(NB201_OPS))
    empty = NB201Genotype.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    for op in ("nor_conv_3x3", "nor_conv_1x1"):
        full = NB201Genotype.parse(str(empty).replace("none", op))
        real = space.info(full, dataset, 16, 5, shape=shape)[key] - space.info(empty, dataset, 16, 5, shape=shape)[key]
        assert real == pytest.approx(costs[:, NB201_OPS.index(op)].sum().item(), rel=1e-5)
    # The NB201 benchmark's own count of its all-conv3x3 cell's network (CIFAR-10): 1.5312 M params.
    if kind == "params" and shape is None:
        assert space.info(NB201Genotype.parse(str(empty).replace("none", "nor_conv_3x3")), "cifar10", 16, 5)[
            key] == pytest.approx(1.5312, abs=1e-3)


def test_expected_cost_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(0)
    costs = {"normal": 10 * torch.rand(14, 8, generator=g, dtype=torch.float64),
             "reduce": torch.rand(14, 8, generator=g, dtype=torch.float64)}
    logits = {"normal": torch.randn(14, 8, generator=g, dtype=torch.float64, requires_grad=True),
              "reduce": torch.randn(14, 8, generator=g, dtype=torch.float64, requires_grad=True)}
    expected_cost(logits, costs).backward()
    eps = 1e-6
    for name in ("normal", "reduce"):
        for e, k in ((0, 0), (3, 5), (13, 7), (7, 2)):
            with torch.no_grad():
                logits[name][e, k] += eps
                up = expected_cost(logits, costs).item()
                logits[name][e, k] -= 2 * eps
                down = expected_cost(logits, costs).item()
                logits[name][e, k] += eps
            assert logits[name].grad[e, k].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-7)
    # Its value: the cost each edge's sampled op has on average under softmax(A).
    value = sum((torch.softmax(logits[n], -1) * costs[n]).sum() for n in costs)
    assert expected_cost(logits, costs).item() == pytest.approx(value.item())
    assert expected_cost({"normal": logits["normal"], "reduce": None}, costs).item() == pytest.approx(
        (torch.softmax(logits["normal"], -1) * costs["normal"]).sum().item())


def _one_hot_logits(space_name: str, genotype, steps: int) -> dict[str, torch.Tensor]:
    """A whose softmax is one-hot on the genotype's op of every kept edge and on `none` elsewhere."""
    if space_name == "nb201":
        logits = torch.zeros(len(genotype.edges), len(NB201_OPS))
        for e, (op, _, _) in enumerate(genotype.edges):
            logits[e, NB201_OPS.index(op)] = 200.0
        return {"cell": logits}
    cells = {"normal": genotype.normal, "reduce": genotype.reduce}
    out = {}
    for name, nodes in cells.items():
        if nodes is None:
            continue
        logits = torch.zeros(sum(2 + i for i in range(steps)), len(PRIMITIVES))
        logits[:, PRIMITIVES.index("none")] = 200.0
        for i, node in enumerate(nodes):
            for op, src in node:
                row = sum(2 + k for k in range(i)) + src
                logits[row] = 0.0
                logits[row, PRIMITIVES.index(op)] = 200.0
        out[name] = logits
    return out


@pytest.mark.parametrize("kind, key", [("mult-adds", "mult_adds_M"), ("params", "params_M")])
@pytest.mark.parametrize("preset, dataset, shape, frc", [("smoke", "synthetic", None, False),
                                                         ("smoke", "folder", (1, 28, 5), True),
                                                         ("nb201-smoke", "synthetic", None, False),
                                                         ("nb201-smoke", "npz", (3, 20, 4), False)])
def test_fixed_part_plus_one_hot_cells_is_the_derived_networks_own_count(kind, key, preset, dataset, shape, frc):
    """With softmax(A) one-hot, the expected whole-network cost (fixed part + cells) is what `info` counts on the
    derived genotype's final network, at the size --cost counts at."""
    cfg = dataclasses.replace(SEARCH_PRESETS[preset], dataset=dataset, frc=frc, cost=kind, cost_weight=1.0,
                              data_dir=None if shape is None else "unused")
    space = get_space(cfg.space)
    model = space.build_supernet(cfg, 10, 3)
    budget = Budget(cfg, space, model, torch.device("cpu"), shape=shape)
    g = torch.Generator().manual_seed(3)
    if cfg.space == "nb201":
        genotype = NB201Genotype(tuple(tuple((NB201_OPS[int(torch.randint(1, 5, (), generator=g))], j)
                                             for j in range(i)) for i in range(1, 4)))
    else:
        genotype = random_genotype(g, cfg.steps, fixed_reduction=frc)
    with torch.no_grad():
        for name, logits in _one_hot_logits(cfg.space, genotype, cfg.steps).items():
            model.arch_logits()[name].copy_(logits)
    derived = space.derive(model.probabilities(), cfg)
    assert {c: sorted(ops) for c, ops in derived.cell_ops().items()} == \
        {c: sorted(ops) for c, ops in genotype.cell_ops().items()}
    real = space.info(derived, dataset, budget.C, budget.N, shape=shape)[key]
    assert budget.fixed > 0 and budget.expected().item() > 0
    assert budget.expected_network().item() == pytest.approx(real, rel=1e-5)
    assert budget.metrics(derived)["expected_network_cost"] == pytest.approx(real, rel=1e-5)
    assert budget.derived(derived) == pytest.approx(real)


@pytest.mark.parametrize("preset, kind", [("nb201-smoke", "mult-adds"), ("smoke", "params")])
def test_penalty_is_linear_or_a_hinge_at_the_whole_networks_target(preset, kind):
    """LAMBDA x the expected whole-network cost, or with a target LAMBDA x max(0, that - target); checked against a
    sum by hand of softmax(A) x each op's cost plus a fixed part measured apart (a network minus its ops)."""
    cfg = dataclasses.replace(SEARCH_PRESETS[preset], cost=kind, cost_weight=2.0)
    space = get_space(cfg.space)
    model = space.build_supernet(cfg, 10, 3)
    with torch.no_grad():
        for logits in model.arch_logits().values():
            if logits is not None:
                logits.normal_(0, 1, generator=torch.Generator().manual_seed(0))
    budget = Budget(cfg, space, model, torch.device("cpu"))
    assert (budget.C, budget.N) == ((16, 5) if cfg.space == "nb201" else (36, 6))  # the final network's size
    costs = space.op_costs(cfg, cfg.dataset, budget.C, budget.N, kind)
    cells = sum((torch.softmax(model.arch_logits()[n].double(), -1) * c.double()).sum().item()
                for n, c in costs.items())
    # The fixed part, apart: a published genotype's whole network minus the op costs of its kept edges.
    key = INFO_KEYS[kind]
    if cfg.space == "nb201":
        genotype = NB201Genotype.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|none~1|"
                                       "avg_pool_3x3~2|")
        chosen = sum(costs["cell"][e, NB201_OPS.index(op)].item() for e, (op, _, _) in enumerate(genotype.edges))
    else:
        genotype = load_genotype("DARTS_V2")
        chosen = _chosen_cost(costs, genotype)
    fixed = space.info(genotype, cfg.dataset, budget.C, budget.N)[key] - chosen
    whole = fixed + cells
    assert budget.fixed == pytest.approx(fixed, rel=1e-5)
    assert budget.penalty().item() == pytest.approx(2.0 * whole, rel=1e-5)
    for target in (whole + 1, whole + 0.01 * whole, fixed + 0.5 * cells, whole - 1):
        budget.cfg = dataclasses.replace(cfg, cost_target=target)
        assert budget.penalty().item() == pytest.approx(2.0 * max(0.0, whole - target), rel=1e-4, abs=1e-6)
    model.zero_grad()
    budget.penalty().backward()
    # The gradient pushes A towards cheap ops: it is largest on the dearest op, negative on `none`.
    for name, logits in model.arch_logits().items():
        if logits is not None:
            dearest = costs[name].sum(0).argmax()
            assert logits.grad[:, dearest].min() > 0 and logits.grad[:, space.ops.index("none")].max() < 0


def test_a_target_below_the_fixed_part_is_refused_before_a_run_folder(tmp_path, capsys):
    cfg = dataclasses.replace(SEARCH_PRESETS["smoke"], cost="mult-adds", cost_weight=1.0)
    fixed = Budget(cfg, get_space("darts"), get_space("darts").build_supernet(cfg, 10, 3), torch.device("cpu")).fixed
    out = tmp_path / "run"
    err = expect_error(capsys, "search", "--preset", "smoke", "--no-progress", "--cost", "mult-adds", "--cost-weight",
                       "1", "--cost-target", "60", "--out", out, contains="--cost-target 60 is below the fixed part")
    assert f"({fixed:.4g} M mult-adds: stem, classifier" in err and f"raise it above {fixed:.4g}" in err
    assert not out.exists()
    with pytest.raises(GdasError, match="cost_target=60 is below"):
        gdas.search("synthetic", preset="smoke", cost="mult-adds", cost_weight=1.0, cost_target=60, out=out)
    assert not out.exists()
    # --cost-target-of is no option: the run records it
    with pytest.raises(SystemExit) as stop:
        run_cli("search", "--preset", "smoke", "--cost-target-of", "cells", "--out", out)
    assert stop.value.code == 2 and "unrecognized arguments: --cost-target-of" in capsys.readouterr().err


def test_own_data_with_a_target_below_the_fixed_part_is_refused_by_the_budget():
    """A folder's images give the shape only once read: the search's Budget refuses it, before any epoch."""
    images = _own_images()
    cfg = dataclasses.replace(SEARCH_PRESETS["nb201-smoke"], dataset="folder", data_dir="unused", cost="params",
                              cost_weight=1.0, cost_target=0.001, batch_size=8)
    cfg.validate()  # the shape is unknown until the images are read
    cpu = torch.device("cpu")
    with pytest.raises(GdasError, match=r"--cost-target 0.001 is below the fixed part .* M parameters"):
        SearchTask(cfg, get_space("nb201"), ImageSearchData(cfg, images, split_indices(48, 0.5, 0), cpu), cpu,
                   show_progress=False)


def _own_images() -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 256, (48, 1, 28, 28), dtype=torch.uint8, generator=g), torch.arange(48) % 5
    return ImageDataset("own", x, y, x[:8].clone(), y[:8].clone(), 5, (0.5,), (0.25,))


def test_a_run_started_when_the_target_counted_the_cells_resumes_with_that_meaning(tmp_path, monkeypatch, capsys):
    """A config.json without cost_target_of (written before it existed) and a target of the cells alone, below
    today's fixed part: --resume continues it with its own meaning; --auto-resume of it says in one line how."""
    out = tmp_path / "old"
    restore = kill_after_checkpoints(monkeypatch, 1)
    args = ["--preset", "smoke", "--no-progress", "--no-report", "--threads", "1", "--cost", "mult-adds",
            "--cost-weight", "0.01"]
    assert run_cli("search", *args, "--cost-target", "1000", "--out", out) == 130
    restore()
    capsys.readouterr()
    stored = json.loads((out / "config.json").read_text())
    assert stored["config"].pop("cost_target_of") == "network"
    stored["config"]["cost_target"] = 5.0
    (out / "config.json").write_text(json.dumps(stored))

    cfg = stored_config(out, "search", SearchConfig)
    assert cfg.cost_target_of == "cells"
    space = get_space("darts")
    model = space.build_supernet(cfg, 10, 3)
    budget = Budget(cfg, space, model, torch.device("cpu"))  # no refusal: the target is the cells'
    assert budget.penalty().item() == pytest.approx(0.01 * (budget.expected().item() - 5.0), rel=1e-5)
    # The same command with --auto-resume is a new run's config (the target counts the network): it says how
    expect_error(capsys, "search", *args, "--cost-target", "5", "--out", out, "--auto-resume",
                 contains="--resume RUN_DIR")

    assert run_cli("search", "--resume", out, "--no-progress", "--no-report") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cost_target_of"] == "cells" and summary["cost_target"] == 5.0
    assert "cost_target_of" not in json.loads((out / "config.json").read_text())["config"]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [0, 1]
    for m in metrics:
        assert m["expected_network_cost"] == pytest.approx(m["fixed_cost"] + m["expected_cost"])
    assert set(plots.curve_keys(load_run(out).metric_keys(), "cost")) == {"expected_network_cost", "expected_cost",
                                                                          "derived_cost"}


@pytest.mark.parametrize("preset", ["smoke", "nb201-smoke"])
def test_a_search_counts_costs_at_its_images_shape(preset):
    """--cost on a user's data (1-channel 28x28 images, 5 classes): the Budget of the search takes the shape from
    the data object, its op costs differ from CIFAR-10's, and the derived cost is a direct count of the final
    network built at that shape."""
    images = _own_images()
    cfg = dataclasses.replace(SEARCH_PRESETS[preset], dataset="folder", data_dir="unused", cost="mult-adds",
                              cost_weight=1.0, batch_size=8)
    space, cpu = get_space(cfg.space), torch.device("cpu")
    task = SearchTask(cfg, space, ImageSearchData(cfg, images, split_indices(48, 0.5, 0), cpu), cpu,
                      show_progress=False)
    budget = task.budget
    assert budget.shape == (1, 28, 5)
    assert budget.size == {"C": budget.C, "N": budget.N, "channels": 1, "input_size": 28, "num_classes": 5}
    cifar = Budget(dataclasses.replace(cfg, dataset="cifar10"), space, task.model, cpu)
    assert cifar.shape == (3, 32, 10) and (cifar.C, cifar.N) == (budget.C, budget.N)
    assert set(budget.costs) == set(cifar.costs)
    for name, cost in budget.costs.items():
        assert (cost <= cifar.costs[name]).all() and (cost < cifar.costs[name]).any()  # 28x28 maps: fewer mult-adds

    genotype = task.genotype()
    network = space.build_network(genotype, dataset="folder", C=budget.C, N=budget.N, num_classes=5, in_channels=1)
    assert budget.derived(genotype) == pytest.approx(count_mult_adds(network, (1, 28, 28)) / 1e6)
    assert budget.derived(genotype) < cifar.derived(genotype)
    assert budget.metrics(genotype)["expected_cost"] > 0
