"""Tests of latency tables over module spaces (the MobileNet-style space): each label's candidates at the shapes its
final network runs them, the network with them zeroed, the table's prediction on a clock that adds up, and
`--cost latency` over it."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from cli_helpers import expect_error, run_cli
from gdas.budget import Budget
from gdas.configs.latency import LatencyConfig
from gdas.configs.search import SEARCH_PRESETS
from gdas.latency import networks
from gdas.latency.build import build_table
from gdas.latency.check import check_table
from gdas.latency.table import load_table
from gdas.nn import Choice, InputChoice, Repeat
from gdas.spaces import get_space
from gdas.spaces.mobilenet.net import InvertedResidual
from gdas.spaces.module.places import Zeros, module_layout
from gdas.spaces.module.supernet import ModuleSupernet
from gdas.errors import GdasError
from latency_helpers import modules_run, picked_modules
from test_latency import mult_adds_ms

SMOKE = SEARCH_PRESETS["mobilenet-smoke"]  # synthetic 3x32x32 images, C=8, N=2
SEARCH = ["search", "--space", "mobilenet", "--preset", "smoke", "--no-progress", "--no-report", "--threads", "1"]


@pytest.fixture
def additive(monkeypatch):
    monkeypatch.setattr(networks, "module_ms", mult_adds_ms)


def _table(path, **fields):
    cfg = LatencyConfig(space="mobilenet", preset="smoke", threads=1, **{"calibration": 2, **fields})
    table = build_table(cfg, str(path), log=lambda _: None, progress=False)
    table.save(path)
    return load_table(path)


@pytest.mark.parametrize("shape", [None, (1, 28, 5)])
def test_places_are_the_candidates_the_final_network_runs(shape):
    """Each label's chosen candidate, module by module and input shape by input shape, is what the frozen final
    network runs in its blocks (forward hooks); the free network runs none of them and keeps the output."""
    space = get_space("mobilenet")
    layout = space.layout(SMOKE, "synthetic", 8, 2, shape=shape)
    channels, side, classes = shape or (3, 32, 10)
    assert layout.input_shape == (channels, side, side) and len(layout.places) == 11  # 5 stages x 2 blocks + 1
    assert all(p.ops[:6] == ("k3e3", "k3e6", "k5e3", "k5e6", "k7e3", "k7e6") for p in layout.places)
    for seed in range(3):
        genotype = space.random_genotype(torch.Generator().manual_seed(seed), SMOKE)
        choices = space.choices(genotype)
        assert {name: tuple(c.shape) for name, c in choices.items()} == layout.shapes(space.ops)
        network = space.build_network(genotype, dataset="synthetic", C=8, N=2, num_classes=classes,
                                      in_channels=channels).eval()
        assert modules_run(network, network.blocks, torch.zeros(1, channels, side, side)) == \
            picked_modules(layout, choices)
    free = layout.free_network().eval()
    assert not any(isinstance(m, InvertedResidual) for m in free.blocks.modules())
    assert all(isinstance(m, Zeros) for m in free.blocks)
    with torch.no_grad():
        assert free(torch.zeros(2, channels, side, side)).shape == (2, classes)


def test_a_latency_that_adds_up_is_predicted_exactly(additive, tmp_path):
    """On a clock that adds up (mult-adds), the entries are the probe's per-candidate counts, the fixed part the
    rest of the network, and every random network is predicted exactly."""
    space = get_space("mobilenet")
    table = _table(tmp_path / "t.json")
    assert table.size == (8, 2) and table.shape == (3, 32, 10)
    assert all(len(p["ops"]) == len(p["ms"]) for p in table.places)
    counted = space.op_costs(SMOKE, "synthetic", 8, 2, "mult-adds", shape=(3, 32, 10))
    assert set(table.costs()) == set(counted)
    for name, cost in table.costs().items():
        assert torch.allclose(cost, counted[name], rtol=1e-5, atol=1e-9)
    assert table.fixed_ms == pytest.approx(space.fixed_cost(SMOKE, "synthetic", 8, 2, "mult-adds",
                                                            shape=(3, 32, 10)), rel=1e-6)
    assert table.ops_scale == pytest.approx(1.0)
    result = check_table(table, 4, seed=5, log=lambda _: None, progress=False)
    assert result["samples"] == 4 and result["mape_percent"] == pytest.approx(0.0, abs=1e-6)
    genotype = space.random_genotype(torch.Generator().manual_seed(3), SMOKE)
    whole = space.info(genotype, "synthetic", 8, 2, shape=(3, 32, 10))["mult_adds_M"]
    assert table.predict_ms(space.choices(genotype)) == pytest.approx(whole, rel=1e-5)


def test_the_penalty_weighs_each_labels_candidates_by_softmax_a(additive, tmp_path):
    """The expected latency is the table's constant plus, label by label, softmax(A) x its row (from the JSON)."""
    path = tmp_path / "t.json"
    _table(path)
    space = get_space("mobilenet")
    cfg = dataclasses.replace(SMOKE, cost="latency", latency_table=str(path), cost_weight=2.0)
    model = space.build_supernet(cfg, 10, 3)
    with torch.no_grad():
        for logits in model.arch_logits().values():
            logits.normal_(0, 1, generator=torch.Generator().manual_seed(0))
    budget = Budget(cfg, space, model, torch.device("cpu"))
    data = json.loads(path.read_text())
    by_hand = data["fixed_ms"] + data["overhead_ms"] + data["ops_scale"] * sum(
        (torch.softmax(model.arch_logits()[p["matrix"]][0].detach().double(), -1)
         * torch.tensor(p["ms"], dtype=torch.float64)).sum().item() for p in data["places"])
    assert budget.expected_network().item() == pytest.approx(by_hand, rel=1e-5)
    model.zero_grad()
    budget.penalty().backward()
    for label, logits in model.arch_logits().items():  # d/dA_k of softmax(A) . c: p_k (c_k - p . c)
        cost = data["ops_scale"] * torch.tensor([p["ms"] for p in data["places"] if p["matrix"] == label],
                                                dtype=torch.float64).sum(0)
        p = torch.softmax(logits[0].detach().double(), -1)
        assert torch.allclose(logits.grad[0].double(), 2.0 * p * (cost - (p * cost).sum()), rtol=1e-4, atol=1e-7)


def test_a_latency_search_of_the_mobilenet_space(additive, tmp_path, capsys):
    """`--cost latency` over the MobileNet-style space: each epoch's derived network predicted by the table, the
    end's measured; a table of another size or a damaged one refused before the run folder."""
    table = _table(tmp_path / "t.json")
    out = tmp_path / "run"
    assert run_cli(*SEARCH, "--cost", "latency", "--latency-table", tmp_path / "t.json", "--cost-weight", "0.01",
                   "--cost-target", f"{table.constant_ms + 1:.3f}", "--out", out) == 0
    space = get_space("mobilenet")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    genotypes = [json.loads(line) for line in (out / "genotypes.jsonl").read_text().splitlines()]
    for m, g in zip(metrics, genotypes):
        assert m["derived_cost"] == pytest.approx(table.predict_ms(space.choices(space.from_json(g["genotype"]))))
    summary = json.loads((out / "summary.json").read_text())
    genotype = space.from_json(summary["genotype_json"])
    assert summary["derived_measured_ms"] == pytest.approx(table.fixed_ms + table.sum_ms(space.choices(genotype)))
    other = _table(tmp_path / "n1.json", N=1)
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps({**json.loads((tmp_path / "t.json").read_text()), "places": [{"matrix": "s1b1"}]}))
    bad = tmp_path / "bad"
    for path, message in ((tmp_path / "n1.json", "C=8, N=1"), (damaged, "not a usable latency table")):
        expect_error(capsys, *SEARCH, "--cost", "latency", "--latency-table", path, "--cost-weight", "1", "--out",
                     bad, contains=message)
        assert not bad.exists()
    assert other.size == (8, 1)


class Stack(nn.Module):
    """A small image space of its own: a kernel choice and a Repeat of depth 0-2 (a module:... path below)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.op = Choice({"conv3": nn.Conv2d(8, 8, 3, padding=1), "conv5": nn.Conv2d(8, 8, 5, padding=2),
                          "skip": nn.Identity()}, label="op")
        self.body = Repeat(lambda i: nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()), depth=(0, 1, 2),
                           label="depth")
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(self.body(self.op(self.stem(x))).mean((2, 3)))


def test_a_module_space_of_your_own_gets_tables_of_choices_and_depths(additive, tmp_path):
    """A module:... path's table: a place per Choice and Repeat (depth d: its first d blocks, depth 0 nothing), a
    network predicted exactly on the clock that adds up."""
    path = "module:test_latency_module:Stack"
    cfg = LatencyConfig(space=path, preset="smoke", threads=1, calibration=2)
    table = build_table(cfg, str(tmp_path / "t.json"), log=lambda _: None, progress=False)
    assert [(p["matrix"], p["ops"]) for p in table.places] == [("op", ["conv3", "conv5", "skip"]),
                                                                ("depth", ["0", "1", "2"])]
    conv = 8 * 8 * 9 * 32 * 32 / 1e6  # one 3x3 convolution of the body on 32x32
    assert table.places[1]["ms"] == pytest.approx([0.0, conv, 2 * conv])
    assert table.places[0]["ms"][2] == 0.0  # an identity: no multiply-adds
    result = check_table(table, 3, seed=5, log=lambda _: None, progress=False)
    assert result["mape_percent"] == pytest.approx(0.0, abs=1e-6)
    table.save(tmp_path / "t.json")
    data = json.loads((tmp_path / "t.json").read_text())
    for place, why in (({**data["places"][0], "ms": [1.0, 2.0]}, "one latency >= 0 per op"),
                       ({**data["places"][0], "ops": ["a", "b", "c"]}, "the places of one A matrix list other ops")):
        (tmp_path / "bad.json").write_text(json.dumps({**data, "places": data["places"] + [place]}))
        with pytest.raises(GdasError, match=why):
            load_table(tmp_path / "bad.json")


def test_module_spaces_without_a_latency_layout_say_why():
    """An input choice or a choice nested in another's candidate is refused in one line."""
    class Inputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 3, padding=1)
            self.pick = InputChoice(2, label="input")

        def forward(self, x):
            return self.pick([self.a(x), self.b(x)])

    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            inner = Choice({"c1": nn.Conv2d(3, 3, 1), "c3": nn.Conv2d(3, 3, 3, padding=1)}, label="inner")
            self.outer = Choice({"deep": nn.Sequential(inner, nn.ReLU()), "skip": nn.Identity()}, label="outer")

        def forward(self, x):
            return self.outer(x)

    for net, message in ((Inputs(), "InputChoice"), (Nested(), "inside another choice")):
        with pytest.raises(GdasError, match=message):
            module_layout(ModuleSupernet(net), torch.zeros(1, 3, 8, 8), "the model")
