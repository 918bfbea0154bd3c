"""scripts/search_vs_random.py: the Welch t-test it reports, against closed forms of Student's t, and its random
cells, which are the ones `gdas search --random-baseline` draws."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gdas.configs.search import SEARCH_PRESETS
from gdas.genotypes import load_genotype
from gdas.spaces import get_space



@pytest.fixture(scope="module")
def script(load_script):
    return load_script("search_vs_random")


@pytest.mark.parametrize("t", [0.3, 1.0, 2.5, 7.0])
def test_the_p_value_matches_students_t_where_it_has_a_closed_form(script, t: float) -> None:
    assert script.student_t_sf2(t, 1.0) == pytest.approx(2 / math.pi * math.atan(1 / t), rel=1e-10)  # Cauchy
    assert script.student_t_sf2(t, 2.0) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-10)


def test_the_p_value_at_the_tabulated_two_sided_5_percent_points(script) -> None:
    for df, t in [(5, 2.570581836), (10, 2.228138852), (30, 2.042272456)]:
        assert script.student_t_sf2(t, df) == pytest.approx(0.05, rel=1e-6)


def test_welch_t_and_degrees_of_freedom(script) -> None:
    x, y = [17.2, 18.1, 16.5, 17.9, 16.2], [18.8, 17.5, 18.0, 19.1, 17.7]
    vx, vy = np.var(x, ddof=1) / 5, np.var(y, ddof=1) / 5
    w = script.welch(x, y)
    assert w["t"] == pytest.approx((np.mean(x) - np.mean(y)) / math.sqrt(vx + vy))
    assert w["df"] == pytest.approx((vx + vy) ** 2 / (vx ** 2 / 4 + vy ** 2 / 4))
    assert w["t"] < 0 and w["p_less"] == pytest.approx(w["p_two_sided"] / 2)


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_its_random_cells_are_the_random_baseline_cells(script, space: str, tmp_path: Path) -> None:
    out = tmp_path / "cell.json"
    script.draw(space, 3, out)
    preset = SEARCH_PRESETS["demo" if space == "darts" else "nb201-demo"]
    expected = get_space(space).random_genotype(torch.Generator().manual_seed(3), preset)
    assert str(load_genotype(out)) == str(expected)


def test_ranks_reads_the_random_baseline_of_each_search_and_skips_the_others(script, tmp_path: Path, capsys) -> None:
    ranked, plain = tmp_path / "ranked", tmp_path / "plain"
    for run in (ranked, plain):
        run.mkdir()
    baseline = {"cells": 4, "valid_err_mean": 0.2, "valid_err_std": 0.01, "valid_err_min": 0.19, "valid_err_max": 0.21,
                "params_M_mean": 3.0, "searched": [{"valid_err": 0.185, "rank": 1, "params_M": 2.5}]}
    (ranked / "summary.json").write_text(json.dumps({"random_baseline": baseline}))
    (plain / "summary.json").write_text("{}")
    script.print_ranks([plain, ranked])
    out = capsys.readouterr()
    assert "| ranked | 18.50 % | 1 of 5 | 20.00 % |" in out.out and "mean rank 1.0 over 1 searches" in out.out
    assert "a cell drawn at random has mean rank 3.0" in out.out
    assert "no random_baseline" in out.err and "plain" in out.err
