"""A paper preset's A learning rate is set for the A steps of its own budget (`a_lr_steps`): a run that gives more
or fewer (other epochs, images, batch) has an A lr it did not set scaled so that a_lr x A steps stays the preset's,
at most to the demos' 0.1, said in the log and in config.json's `adjusted`; the log says how many A steps every
search gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import run_cli
from gdas.configs.search import SEARCH_PRESETS, SearchConfig
from gdas.data.search import epoch_steps

QUIET = ("--no-progress", "--no-report")


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["config"]


def _npz(path: Path, n: int, size: int = 12) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(n) % 3, x_test=x[:8], y_test=np.arange(8) % 3)
    return path


@pytest.mark.parametrize("steps_per_epoch", [390, 780, 39, 1])
def test_an_a_lr_is_scaled_to_keep_its_product_with_the_a_steps_at_most_to_the_demos(steps_per_epoch: int) -> None:
    cfg = SearchConfig(dataset="synthetic", epochs=240, a_lr=3e-4, a_lr_steps=93_600)
    fitted = cfg.fit_a_lr(steps_per_epoch)
    steps = 240 * steps_per_epoch
    expected = min(3e-4 * 93_600 / steps, 0.1)
    assert fitted.a_lr == pytest.approx(expected, rel=5e-3)  # three significant digits
    assert fitted.a_lr_steps == steps
    assert fitted.fit_a_lr(steps_per_epoch) == fitted  # fitting again (a resumed run) changes nothing
    if steps == 93_600:
        assert fitted == cfg
        return
    capped = "; at most 0.1" if 3e-4 * 93_600 / steps > 0.1 else ""
    assert fitted.adjusted == (
        f"a_lr 0.0003 -> {fitted.a_lr:g} (set for 93,600 A steps; this run gives 240 epochs with A steps x "
        f"{steps_per_epoch} steps per epoch = {steps:,}{capped})",
        f"a_lr_steps 93600 -> {steps} (the A steps a_lr is set for now)")


def test_the_warmup_epochs_give_no_a_steps() -> None:
    cfg = SearchConfig(dataset="synthetic", epochs=10, warmup_epochs=3, a_lr=0.01, a_lr_steps=70)
    assert cfg.a_steps(5) == 35
    assert cfg.fit_a_lr(5).a_lr == pytest.approx(0.02)


def test_an_a_lr_the_user_set_or_one_set_for_no_step_count_is_kept() -> None:
    given = SearchConfig(dataset="synthetic", epochs=10, a_lr=0.01, a_lr_steps=217, given=("a_lr",))
    assert given.fit_a_lr(62) == given
    demo = SEARCH_PRESETS["demo"]
    assert demo.a_lr_steps is None and demo.fit_a_lr(1) == demo and demo.fit_a_lr(1000) == demo


@pytest.mark.parametrize("preset, d_v", [("cifar10", 25_000), ("cifar10-frc", 25_000), ("cifar100", 25_000),
                                         ("nb201-cifar10", 25_000), ("nb201-cifar100", 25_000),
                                         ("nb201-imagenet16", 75_850)])
def test_the_paper_presets_state_the_a_steps_of_their_own_budget(preset: str, d_v: int) -> None:
    """Half of CIFAR's 50,000 / ImageNet16-120's 151,700 training images are D_V: at its own budget a paper
    preset's A lr is the paper's."""
    cfg = SEARCH_PRESETS[preset]
    steps_per_epoch = epoch_steps(cfg, d_v, d_v)
    assert cfg.a_steps(steps_per_epoch) == cfg.a_lr_steps
    assert cfg.fit_a_lr(steps_per_epoch) == cfg and cfg.a_lr == 3e-4


def test_a_shortened_paper_search_on_own_data_scales_the_a_lr_says_so_and_continues(tmp_path: Path, capsys) -> None:
    data = _npz(tmp_path / "mine.npz", 260)  # D_V 130 images: 2 steps of 64 an epoch
    out = tmp_path / "s"
    args = ("search", "--preset", "cifar10", "--dataset", "npz", "--data-dir", data, "--epochs", "2", "--C", "4",
            "--N", "1", *QUIET, "--out", out)
    assert run_cli(*args) == 0
    log = capsys.readouterr().out
    stored = _config(out)
    assert (stored["a_lr"], stored["a_lr_steps"]) == (0.1, 4)  # 3e-4 x 93,600 / 4, at most 0.1
    assert "A steps: 2 epochs with A steps x 2 steps per epoch = 4 (Adam, lr 0.1)" in log
    assert ("preset cifar10 adjusted: a_lr 0.0003 -> 0.1 (set for 93,600 A steps; this run gives 2 epochs with "
            "A steps x 2 steps per epoch = 4; at most 0.1)") in log
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=False)
    assert checkpoint["task"]["a_opt"]["param_groups"][0]["lr"] == 0.1
    # The same command finds its run: the A lr it fitted is not a config of its own.
    assert run_cli(*args, "--auto-resume") == 0
    assert "already complete" in capsys.readouterr().out
    # An A lr the user gives is theirs; a demo's is kept at any budget.
    assert run_cli(*args[:-1], tmp_path / "given", "--a-lr", "0.2") == 0
    assert _config(tmp_path / "given")["a_lr"] == 0.2 and "(Adam, lr 0.2)" in capsys.readouterr().out
    assert run_cli(*args[:1], *args[3:-1], tmp_path / "demo") == 0
    log = capsys.readouterr().out
    assert log.startswith("search demo:") and "A steps: 2 epochs with A steps x 2 steps per epoch = 4 (Adam, lr 0.1)" in log
    assert not any(note.startswith("a_lr") for note in _config(tmp_path / "given")["adjusted"] +
                   _config(tmp_path / "demo")["adjusted"])


def test_a_search_on_own_tensors_scales_the_default_presets_a_lr_to_the_a_steps_its_data_give(tmp_path: Path) -> None:
    """The tensor searches' default preset takes the paper's A lr for the paper's A steps: on 2,000 samples (D_V
    1,000: 15 steps of 64 an epoch) over 3 epochs, 45 A steps, at most 0.1; with more samples and epochs, less."""
    import gdas
    from torch import nn
    from module_spaces import Regressor, regression_data

    def fitted(n: int, epochs: int, out: Path) -> dict:
        gdas.search(regression_data(n), space=Regressor, loss=nn.MSELoss(), out=out, epochs=epochs, select_epochs=1,
                    threads=1, steps_per_epoch=None)
        return _config(out)

    small = fitted(2000, 3, tmp_path / "small")
    assert (small["a_lr"], small["a_lr_steps"]) == (0.1, 45)
    assert any(note.startswith("a_lr 0.0003 -> 0.1 (set for 93,600 A steps") for note in small["adjusted"])
    large = fitted(64_000, 1, tmp_path / "large")  # 500 A steps
    assert large["a_lr_steps"] == 500 and large["a_lr"] == pytest.approx(3e-4 * 93_600 / 500, rel=5e-3)


def test_the_recurrent_and_mobilenet_paper_presets_state_their_a_steps() -> None:
    from gdas.configs.rnn import RNN_SEARCH_PRESETS

    ptb = RNN_SEARCH_PRESETS["ptb"]
    assert ptb.a_lr_steps == 200 * 208 and ptb.fit_a_lr(208) == ptb  # PTB: 929,589 tokens, batch 128, BPTT 35
    assert ptb.fit_a_lr(104).a_lr == pytest.approx(3e-3 * 2)  # half the windows: twice the step
    assert SEARCH_PRESETS["mobilenet-cifar10"].a_lr_steps == 93_600
    assert SEARCH_PRESETS["mobilenet-demo"].a_lr_steps is None and RNN_SEARCH_PRESETS["shakespeare"].a_lr_steps is None
