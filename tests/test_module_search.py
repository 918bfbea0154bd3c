"""Searching a module space on tensors from Python: a regression and a dense per-pixel prediction end to end,
freezing the result, a kill-and-resume, and one-line errors on bad input before any run folder exists."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import gdas
from module_spaces import Clash, Dense, Mismatched, Regressor, mask_data, regression_data

FAST = {"preset": "smoke", "epochs": 3, "threads": 1}
TESTS = Path(__file__).parent


def test_regression_searches_freezes_and_carries_weights(tmp_path: Path) -> None:
    x, y = regression_data()
    result = gdas.search((x, y), space=Regressor, loss=nn.MSELoss(), out=tmp_path / "run", **FAST)
    genotype = result.genotype
    assert set(genotype.choices) == {"block", "depth"}
    assert genotype.choices["block"] in ("wide", "narrow", "skip") and genotype.choices["depth"] in (1, 2, 3)
    saved = json.loads((tmp_path / "run" / "genotype.json").read_text())
    assert saved["choices"] == genotype.choices and saved["space"] == "module:module_spaces:Regressor"
    summary = result.summary
    assert summary["loss"] == "MSELoss" and summary["metric"] is None and summary["score_key"] == "valid_loss"
    assert (genotype.choices["block"] == "skip") == (genotype.param_free_count() == 1)
    alphas = [json.loads(line) for line in (tmp_path / "run" / "alphas.jsonl").read_text().splitlines()]
    assert len(alphas) == 3 and alphas[-1]["candidates"] == {"block": ["wide", "narrow", "skip"],
                                                             "depth": ["1", "2", "3"]}

    frozen = gdas.freeze(Regressor, result, weights=result)
    assert not any(isinstance(m, gdas.nn.ChoiceBlock) for m in frozen.modules())
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["task"]["model"]
    assert torch.equal(frozen.stem.weight, state["net.stem.weight"])
    assert torch.equal(frozen.head.weight, state["net.head.weight"])
    depth = genotype.choices["depth"]
    assert torch.equal(frozen.body[depth - 1].lin.weight, state[f"net.body.blocks.{depth - 1}.lin.weight"])
    fresh = gdas.freeze(Regressor, genotype)
    assert not torch.equal(fresh.stem.weight, frozen.stem.weight)
    assert frozen(x[:5]).shape == (5, 1)


def test_dense_per_pixel_prediction_with_the_default_loss_and_metric(tmp_path: Path) -> None:
    x, y = mask_data()
    result = gdas.search((x, y), space=Dense, out=tmp_path / "run", **FAST)
    summary = result.summary
    assert summary["loss"] == "cross-entropy" and summary["metric"] == "accuracy"
    assert 0.0 <= summary["final_valid_accuracy"] <= 1.0
    assert result.genotype.choices["kernel"] in ("1", "3", "5") and result.genotype.choices["merge"] in (0, 1)
    model = gdas.freeze(Dense, result.genotype)
    assert model(x[:2]).shape == (2, 2, 8, 8)


KILL = """
import os, signal, sys
from torch import nn
import gdas
from gdas.engine.rundir import RunDir
from module_spaces import Regressor, regression_data
saves = []
original = RunDir.save_checkpoint
def save_then_die(self, state, name="checkpoint.pt"):
    original(self, state, name)
    saves.append(name)
    if len(saves) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
RunDir.save_checkpoint = save_then_die
gdas.search(regression_data(), space=Regressor, loss=nn.MSELoss(), out=sys.argv[1], preset="smoke", epochs=4,
            threads=1)
"""


def test_a_killed_search_resumes_to_the_same_weights(tmp_path: Path) -> None:
    data = regression_data()
    gdas.search(data, space=Regressor, loss=nn.MSELoss(), out=tmp_path / "full", preset="smoke", epochs=4, threads=1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", KILL, str(tmp_path / "killed")], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-400:]
    assert not (tmp_path / "killed" / "summary.json").exists()
    with pytest.raises(gdas.GdasError, match="started with loss 'MSELoss'"):
        gdas.search(data, space=Regressor, loss=nn.L1Loss(), out=tmp_path / "killed", resume=True)
    gdas.search(data, space=Regressor, loss=nn.MSELoss(), out=tmp_path / "killed", resume=True, threads=1)
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["task"]["model"]
    killed = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["task"]["model"]
    assert full.keys() == killed.keys() and all(torch.equal(full[k], killed[k]) for k in full)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2, 3]


def _not_scalar(output, target):
    return (output - target) ** 2


@pytest.mark.parametrize("space, data, kwargs, message", [
    (nn.Identity, regression_data(), {"loss": nn.MSELoss()}, "Identity has no choices to search"),
    (Clash, regression_data(), {"loss": nn.MSELoss()}, r"the choices labelled 'k' at a and b differ"),
    (Mismatched, regression_data(), {"loss": nn.MSELoss()},
     r"choice 'op' at op: candidate wider gives an output of shape \(1, 6\), but candidate same gives \(1, 4\)"),
    (Regressor, regression_data(), {"loss": _not_scalar}, r"must return a scalar tensor, but returned \(8, 1\)"),
    (Regressor, (regression_data()[0], regression_data()[1][:, 0]), {"loss": nn.MSELoss()},
     r"output \(8, 1\) and the targets \(8,\) differ in shape"),
    (Regressor, regression_data(), {}, "not integer labels, so there is no default loss"),
])
def test_bad_input_is_one_line_and_leaves_no_run_folder(tmp_path: Path, space, data, kwargs, message) -> None:
    out = tmp_path / "run"
    with pytest.raises(gdas.GdasError, match=message) as caught:
        gdas.search(data, space=space, out=out, **FAST, **kwargs)
    assert "\n" not in str(caught.value)
    assert not out.exists()


def test_a_space_defined_in_main_says_what_it_cannot_do(tmp_path: Path) -> None:
    class Local(Regressor):
        pass

    result = gdas.search(regression_data(), space=Local, loss=nn.MSELoss(), out=tmp_path / "run", **FAST)
    assert result.summary["space"].endswith("test_a_space_defined_in_main_says_what_it_cannot_do.<locals>.Local")
    gone = gdas.get_space("module:__main__:Gone")  # its runs can be read and reported, not built
    with pytest.raises(gdas.GdasError, match="defined in a script, notebook or function"):
        gone.build_network(result.genotype)


@pytest.mark.parametrize("sampler", ["darts", "gdas-noaccel"])
def test_the_samplers_search_a_module_space(tmp_path: Path, sampler: str) -> None:
    result = gdas.search(regression_data(), space=Regressor, loss=nn.MSELoss(), out=tmp_path / "run", sampler=sampler,
                         **FAST)
    assert result.summary["final_valid_loss"] > 0 and set(result.genotype.choices) == {"block", "depth"}


def test_the_collapse_guard_counts_candidates_without_parameters() -> None:
    from gdas.configs.module import TensorSearchConfig
    from gdas.guards import CollapseGuard

    space = gdas.get_space("module:module_spaces:Regressor")
    probs = {"block": torch.tensor([[0.1, 0.1, 0.8]]), "depth": torch.tensor([[0.2, 0.5, 0.3]])}
    genotype = space.derive(probs, None)
    assert genotype.choices == {"block": "skip", "depth": 2} and genotype.param_free == ("block",)
    guard = CollapseGuard(TensorSearchConfig(space=space.name, stop_on_collapse=1), space)
    guard.observe(0, probs, genotype)
    assert guard.stop and "the derived model had 1 parameter-free ops" in guard.summary()["stopped_early"]["reason"]
    with pytest.raises(gdas.GdasError, match="--max-skip limits skip_connect ops"):
        TensorSearchConfig(space=space.name, max_skip=1).validate()


def test_auto_resume_finds_the_same_search_complete(tmp_path: Path) -> None:
    first = gdas.search(regression_data(), space=Regressor, loss=nn.MSELoss(), out=tmp_path / "run", resume="auto",
                        **FAST)
    again = gdas.search(regression_data(), space=Regressor, loss=nn.MSELoss(), out=tmp_path / "run", resume="auto",
                        **FAST)
    assert again.genotype == first.genotype
    with pytest.raises(gdas.GdasError, match="--loss differ|loss differ"):
        gdas.search(regression_data(), space=Regressor, loss=nn.L1Loss(), out=tmp_path / "run", resume="auto",
                    **FAST)


def test_an_unfinished_out_names_the_python_call_that_continues_it(tmp_path: Path, monkeypatch) -> None:
    from cli_helpers import kill_after_checkpoints

    restore = kill_after_checkpoints(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        gdas.search(regression_data(), space=Regressor, loss=nn.MSELoss(), out=tmp_path / "run", **FAST)
    restore()
    with pytest.raises(gdas.GdasError, match=r"continue it with gdas.search\(the same data, space and loss, "
                                             r"out='.*run', resume=True\)"):
        gdas.search(regression_data(), space=Regressor, loss=nn.MSELoss(), out=tmp_path / "run", **FAST)
