"""Module spaces beyond one search: multi-seed selection with retrains on D_T / D_V, training a frozen model on
tensors (gdas.train), a Dataset and two DataLoaders as data, and what --parallel refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import gdas
from module_spaces import Dense, Regressor, mask_data, regression_data

FAST = {"preset": "smoke", "threads": 1}


def test_multi_seed_selection_retrains_each_seed_on_its_split(tmp_path: Path) -> None:
    result = gdas.search(regression_data(), space=Regressor, loss=nn.MSELoss(), out=tmp_path / "ms", seeds=[0, 1],
                         **FAST)
    rows = result.seeds
    assert [r["seed"] for r in rows] == [0, 1] and all(r["higher_is_better"] is False for r in rows)
    assert all(r["select_valid_acc"] is not None for r in rows)
    best = min(rows, key=lambda r: (r["select_valid_acc"], r["seed"]))  # a loss: the lowest retrain is kept
    assert result.best_seed == best["seed"]
    retrain = json.loads((tmp_path / "ms" / f"seed-{best['seed']}" / "select" / "summary.json").read_text())
    split = json.loads((tmp_path / "ms" / f"seed-{best['seed']}" / "split.json").read_text())
    assert retrain["final_valid_samples"] == len(split["valid"]) and retrain["loss"] == "MSELoss"
    assert retrain["final_valid_loss"] == best["select_valid_acc"]
    assert "test_loss" not in json.dumps(retrain)
    assert isinstance(result.genotype, type(gdas.load_genotype(tmp_path / "ms" / f"seed-{best['seed']}")))


def test_train_a_frozen_model_on_tensors_with_a_validation_and_test_part(tmp_path: Path) -> None:
    x, y = mask_data(96)
    search = gdas.search((x, y), space=Dense, out=tmp_path / "s", epochs=2, **FAST)
    trained = gdas.train(search, (x, y), test=mask_data(32, seed=1), out=tmp_path / "t", valid_portion=0.25,
                         weights=search, **FAST)
    summary = trained.summary
    assert summary["kind"] == "train-tensors" and summary["metric"] == "accuracy"
    assert summary["final_test_samples"] == 32 and summary["final_valid_samples"] == 24
    assert 0.0 <= summary["best_valid_accuracy"] <= 1.0
    model = trained.model
    assert not any(isinstance(m, gdas.nn.ChoiceBlock) for m in model.modules())
    best = torch.load(tmp_path / "t" / "best.pt", weights_only=False)["task"]["model"]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    # a plain module trains too, in place
    plain = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    before = plain[0].weight.clone()
    gdas.train(plain, regression_data(), loss=nn.MSELoss(), out=tmp_path / "plain", **FAST)
    assert not torch.equal(before, plain[0].weight)


def test_a_dataset_and_two_dataloaders_are_data_too(tmp_path: Path) -> None:
    x, y = regression_data()
    result = gdas.search(TensorDataset(x, y), space=Regressor, loss=nn.L1Loss(), out=tmp_path / "ds", **FAST)
    assert result.summary["valid_samples"] == 64
    assert json.loads((tmp_path / "ds" / "data.json").read_text())["data"] == "dataset"
    loaders = (DataLoader(TensorDataset(x[:128], y[:128]), batch_size=16, shuffle=True),
               DataLoader(TensorDataset(x[128:], y[128:]), batch_size=16, shuffle=True))
    result = gdas.search(loaders, space=Regressor, loss=nn.L1Loss(), out=tmp_path / "dl", **FAST)
    assert result.summary["valid_samples"] == 4 * 16 and not (tmp_path / "dl" / "split.json").exists()


def test_parallel_refuses_what_other_processes_cannot_rebuild(tmp_path: Path) -> None:
    class Local(Regressor):
        pass

    with pytest.raises(gdas.GdasError, match="Local is defined in a function body, which other processes cannot"):
        gdas.search(regression_data(), space=Local, loss=nn.MSELoss(), out=tmp_path / "a", seeds=[0, 1],
                    parallel=2, **FAST)
    with pytest.raises(gdas.GdasError, match="define them at module level"):
        gdas.search(regression_data(), space=Regressor, loss=lambda o, t: ((o - t) ** 2).mean(),
                    out=tmp_path / "b", seeds=[0, 1], parallel=2, **FAST)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
