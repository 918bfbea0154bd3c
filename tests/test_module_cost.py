"""--cost over module spaces: each candidate counted at the shapes it sees (shared labels summed over their
places, a depth as its blocks), the fixed part outside the choices, the expected cost the A step pays for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import gdas
from gdas.spaces.module.probe import probe
from gdas.spaces.module.supernet import ModuleSupernet
from module_spaces import Dense, Regressor, regression_data


def test_candidates_are_counted_at_the_shapes_they_see():
    seen = probe(ModuleSupernet(Regressor()), torch.zeros(1, 4))
    # Linear layers by hand: in x out mult-adds per sample, in x out + out parameters
    assert seen.costs("mult-adds")["block"].tolist() == [[pytest.approx(16 * 32 * 2 / 1e6), pytest.approx(256e-6), 0.0]]
    assert seen.costs("mult-adds")["depth"].tolist() == [[pytest.approx(256e-6 * d) for d in (1, 2, 3)]]
    assert seen.costs("params")["block"].tolist() == [[pytest.approx((16 * 32 + 32 + 32 * 16 + 16) / 1e6),
                                                       pytest.approx(272e-6), 0.0]]
    assert seen.fixed["mult-adds"] == pytest.approx((4 * 16 + 16) / 1e6)
    assert seen.fixed["params"] == pytest.approx((4 * 16 + 16 + 16 + 1) / 1e6)
    dense = probe(ModuleSupernet(Dense()), torch.zeros(1, 3, 8, 8))  # one label at two places: summed
    assert dense.costs("mult-adds")["kernel"].tolist() == [[pytest.approx(2 * 64 * 8 * 8 * k * k / 1e6)
                                                            for k in (1, 3, 5)]]
    assert dense.costs("mult-adds")["merge"].tolist() == [[0.0, 0.0]]


def test_a_search_pays_for_the_expected_cost_and_reports_the_derived_one(tmp_path: Path):
    result = gdas.search(regression_data(), space=Regressor, loss=nn.MSELoss(), out=tmp_path / "run", preset="smoke",
                         threads=1, cost="params", cost_weight=1.0)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    alphas = [json.loads(line) for line in (tmp_path / "run" / "alphas.jsonl").read_text().splitlines()]
    costs = probe(ModuleSupernet(Regressor()), torch.zeros(1, 4))
    expected = costs.fixed["params"] + sum(
        (torch.tensor(alphas[-1][label]) * costs.costs("params")[label]).sum().item() for label in ("block", "depth"))
    assert metrics[-1]["expected_network_cost"] == pytest.approx(expected, rel=1e-5)
    frozen = gdas.freeze(Regressor, result.genotype)
    assert metrics[-1]["derived_cost"] == pytest.approx(sum(p.numel() for p in frozen.parameters()) / 1e6)
    assert result.summary["cost"] == "params"


def test_a_target_below_the_fixed_part_is_refused_before_the_run_folder(tmp_path: Path):
    with pytest.raises(gdas.GdasError, match="cost_target 1e-05 is below the fixed part of the model"):
        gdas.search(regression_data(), space=Regressor, loss=nn.MSELoss(), out=tmp_path / "run", preset="smoke",
                    cost="params", cost_weight=1.0, cost_target=1e-5)
    assert not (tmp_path / "run").exists()


def test_a_mobilenet_search_counts_its_budget_on_the_network_it_searched(tmp_path: Path):
    """A choice map names every block of the network it was searched in: --cost counts that network (the search's
    C and N), and the derived network's count is `gdas info`'s of the genotype at that size."""
    from cli_helpers import run_cli
    from gdas.configs.search import SEARCH_PRESETS
    from gdas.spaces import get_space

    out = tmp_path / "mobile"
    assert run_cli("search", "--preset", "mobilenet-smoke", "--cost", "params", "--cost-weight", "0.1",
                   "--epochs", "1", "--steps-per-epoch", "1", "--threads", "1", "--no-progress", "--no-report",
                   "--out", out) == 0
    summary = json.loads((out / "summary.json").read_text())
    cfg = SEARCH_PRESETS["mobilenet-smoke"]
    assert cfg.final_size == (cfg.C, cfg.N)
    space = get_space("mobilenet")
    info = space.info(space.from_json(summary["genotype_json"]), cfg.dataset, cfg.C, cfg.N, shape=(3, 32, 10))
    assert summary["derived_cost"] == pytest.approx(info["params_M"], rel=1e-4)
