"""Tests of --cost: per-op costs counted from the real ops, the expected cost's gradient, the penalty."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gdas.budget import Budget, expected_cost
from gdas.configs.search import SEARCH_PRESETS
from gdas.data.images import ImageDataset
from gdas.data.search import ImageSearchData, split_indices
from gdas.flops import count_mult_adds
from gdas.genotypes import load_genotype
from gdas.search import SearchTask
from gdas.spaces import get_space
from gdas.spaces.darts.genotype import Genotype
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


def test_penalty_is_linear_or_a_hinge_above_the_target():
    cfg = dataclasses.replace(SEARCH_PRESETS["nb201-smoke"], cost="mult-adds", cost_weight=2.0)
    space = get_space("nb201")
    model = space.build_supernet(cfg, 10, 3)
    budget = Budget(cfg, space, model, torch.device("cpu"))
    assert (budget.C, budget.N) == (16, 5)  # the final network's size (NB201's training preset), not the supernet's
    expected = budget.expected().item()
    assert budget.penalty().item() == pytest.approx(2.0 * expected)
    budget.cfg = dataclasses.replace(cfg, cost_target=expected + 1)
    assert budget.penalty().item() == 0.0
    budget.cfg = dataclasses.replace(cfg, cost_target=expected - 1)
    budget.penalty().backward()
    assert budget.penalty().item() == pytest.approx(2.0, rel=1e-4)
    # The gradient pushes A towards cheap ops: it is largest on the dearest op (nor_conv_3x3).
    assert model.arch.grad[:, NB201_OPS.index("nor_conv_3x3")].min() > 0
    assert model.arch.grad[:, NB201_OPS.index("none")].max() < 0


@pytest.mark.parametrize("preset", ["smoke", "nb201-smoke"])
def test_a_search_counts_costs_at_its_images_shape(preset):
    """--cost on a user's data (1-channel 28x28 images, 5 classes): the Budget of the search takes the shape from
    the data object, its op costs differ from CIFAR-10's, and the derived cost is a direct count of the final
    network built at that shape."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 256, (48, 1, 28, 28), dtype=torch.uint8, generator=g), torch.arange(48) % 5
    images = ImageDataset("own", x, y, x[:8].clone(), y[:8].clone(), 5, (0.5,), (0.25,))
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
