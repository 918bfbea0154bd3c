"""One resolution of a run's config (preset, file, options, keywords), presets that name a budget, a user's own
data used whole, and preset values fitted (and logged) when the user's own settings need it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import gdas
from cli_helpers import expect_error, run_cli
from gdas.configs import base
from gdas.configs.files import resolve_config
from gdas.configs.rnn import RNN_SEARCH_TABLE, RNNSearchConfig
from gdas.configs.search import SEARCH_PRESETS, SEARCH_TABLE, SearchConfig
from gdas.configs.train import TRAIN_TABLE, TrainConfig
from gdas.data.images import load_image_dataset
from gdas.errors import GdasError

QUIET = ("--no-progress", "--no-report")
TINY = {"epochs": 1, "steps_per_epoch": 1, "C": 4}


def _json(path: Path):
    return json.loads(path.read_text())


def _config(run: Path) -> dict:
    return _json(run / "config.json")["config"]


def _npz(path: Path, n_train: int, n_test: int, size: int = 12) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n_train, size, size), dtype=np.uint8)
    xt = rng.integers(0, 256, size=(n_test, size, size), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(n_train) % 3, x_test=xt, y_test=np.arange(n_test) % 3)
    return path


# -- one resolution, whichever way the settings come ----------------------------------------------------------
def _settled(cfg: SearchConfig) -> dict:
    """The settings of a resolved config, without the record of where they came from."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in base.RECORD_FIELDS}


def test_a_space_picks_the_same_preset_from_a_file_an_option_a_keyword_or_by_name(tmp_path: Path) -> None:
    """space: nb201 in a config file once landed on the darts demo preset with space replaced (its A lr,
    warm-up, weight decay and a 5-node cell); every way of naming the space now resolves alike."""
    named = resolve_config(SearchConfig, SEARCH_TABLE, kind="search", preset="nb201-demo")
    by_option = resolve_config(SearchConfig, SEARCH_TABLE, kind="search", overrides={"space": "nb201"})
    conf = tmp_path / "space.yaml"
    conf.write_text("space: nb201\n")
    by_file = resolve_config(SearchConfig, SEARCH_TABLE, kind="search", config=conf)
    assert by_file.preset == by_option.preset == named.preset == "nb201-demo"
    assert _settled(by_file) == _settled(by_option) == _settled(named)
    assert (by_file.steps, by_file.w_weight_decay, by_file.w_nesterov) == (3, 5e-4, True)
    # A named darts preset and a space in the file: that preset's nb201 counterpart, as with --space.
    conf.write_text("preset: smoke\nspace: nb201\n")
    assert resolve_config(SearchConfig, SEARCH_TABLE, kind="search", config=conf).preset == "nb201-smoke"


def test_the_four_ways_give_the_same_run(tmp_path: Path) -> None:
    """--space on the command line, space in a --config file, space= in Python and the nb201 preset by name."""
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 256, size=(32, 8, 8), dtype=np.uint8), np.arange(32) % 2
    data = _npz(tmp_path / "d.npz", 32, 8, size=8)
    np.savez(data, x_train=x, y_train=y)
    common = ["--dataset", "npz", "--data-dir", data, "--epochs", "1", "--steps-per-epoch", "1", "--C", "4",
              "--batch-size", "8", *QUIET]
    assert run_cli("search", "--space", "nb201", *common, "--out", tmp_path / "option") == 0
    (tmp_path / "space.yaml").write_text("space: nb201\n")
    assert run_cli("search", "--config", tmp_path / "space.yaml", *common, "--out", tmp_path / "file") == 0
    assert run_cli("search", "--preset", "nb201-demo", *common, "--out", tmp_path / "preset") == 0
    gdas.search(data, space="nb201", out=tmp_path / "keyword", epochs=1, steps_per_epoch=1, C=4, batch_size=8)
    runs = [_config(tmp_path / name) for name in ("option", "file", "preset", "keyword")]
    for run in runs:
        assert run["preset"] == "nb201-demo" and run["space"] == "nb201"
    settled = [{k: v for k, v in run.items() if k not in base.RECORD_FIELDS} for run in runs]
    assert all(s == settled[0] for s in settled)
    genotypes = {json.dumps(_json(tmp_path / name / "genotype.json")) for name in ("option", "file", "preset", "keyword")}
    assert len(genotypes) == 1


def test_aliases_and_budget_names() -> None:
    assert SEARCH_TABLE.default == TRAIN_TABLE.default == "demo"
    assert SEARCH_TABLE.canonical("fashion-mnist") == "demo"
    assert SEARCH_TABLE.canonical("nb201-fashion-mnist") == "nb201-demo"
    assert SEARCH_TABLE.canonical("paper") == "cifar10" and TRAIN_TABLE.canonical("paper") == "cifar10"
    cfg = resolve_config(SearchConfig, SEARCH_TABLE, kind="search", preset="fashion-mnist")
    assert cfg.preset == "demo" and cfg == dataclasses.replace(SEARCH_PRESETS["demo"], preset="demo")
    with pytest.raises(GdasError, match="unknown preset 'dmeo'; did you mean 'demo'"):
        SEARCH_TABLE.canonical("dmeo")


def test_the_record_of_a_resolution_is_not_a_setting(tmp_path: Path) -> None:
    with pytest.raises(GdasError, match="field 'given' in gdas.search\\(\\) is what a run records"):
        resolve_config(SearchConfig, SEARCH_TABLE, kind="search", overrides={"given": ["epochs"]},
                       where="in gdas.search()")
    cfg = resolve_config(SearchConfig, SEARCH_TABLE, kind="search", preset="smoke", overrides={"epochs": 3, "C": 4})
    assert cfg.given == ("C", "epochs") and cfg.adjusted == ()


# -- a user's own data is used whole ---------------------------------------------------------------------------
def test_a_presets_subset_belongs_to_its_dataset() -> None:
    demo = SEARCH_PRESETS["demo"]
    assert demo.dataset == "fashion-mnist" and demo.train_subset == 4000
    on_own = resolve_config(SearchConfig, SEARCH_TABLE, kind="search",
                            overrides={"dataset": "npz", "data_dir": "x.npz"})
    assert on_own.train_subset is None
    assert on_own.adjusted == ("train_subset 4000 -> None (the preset's subset is of fashion-mnist; npz data is "
                               "used whole)",)
    asked = resolve_config(SearchConfig, SEARCH_TABLE, kind="search",
                           overrides={"dataset": "npz", "data_dir": "x.npz", "train_subset": 100})
    assert asked.train_subset == 100 and asked.adjusted == ()
    trained = resolve_config(TrainConfig, TRAIN_TABLE, kind="train", overrides={"dataset": "folder", "data_dir": "d"})
    assert trained.train_subset is None and trained.test_subset is None and len(trained.adjusted) == 2
    same = resolve_config(TrainConfig, TRAIN_TABLE, kind="train")
    assert (same.train_subset, same.test_subset, same.adjusted) == (5000, 2000, ())


def test_own_data_is_searched_and_trained_whole_with_the_default_presets(tmp_path: Path, capsys) -> None:
    """An npz of 90 training and 30 test images once went through the Fashion-MNIST demo's subsets (4,000 /
    5,000 / 2,000 of them); the default presets now read every image and say how many each error was measured on."""
    data = _npz(tmp_path / "mine.npz", 90, 30)
    search, train = tmp_path / "s", tmp_path / "t"
    assert run_cli("search", "--dataset", "npz", "--data-dir", data, "--epochs", "1", "--steps-per-epoch", "1",
                   "--C", "4", *QUIET, "--out", search) == 0
    out = capsys.readouterr().out
    record = _json(search / "data.json")
    assert (record["train_images"], record["d_t_images"], record["d_v_images"]) == (90, 45, 45)
    assert "train_images_available" not in record and _config(search)["train_subset"] is None
    assert "on 90 training images: D_T 45, D_V 45" in out
    assert _json(search / "summary.json")["valid_images"] == 45 and "on 45 D_V images" in out
    assert "adjusted: train_subset 4000 -> None" in out
    # A preset batch larger than D_T is lowered to fit (and said), not refused.
    assert _config(search)["batch_size"] == 45 and "adjusted: batch_size 64 -> 45 (D_T / D_V hold 45 / 45 images)" in out

    assert run_cli("train", "--genotype", search, "--dataset", "npz", "--data-dir", data, "--epochs", "1", "--C", "4",
                   "--steps-per-epoch", "1", *QUIET, "--out", train) == 0
    out = capsys.readouterr().out
    record, summary = _json(train / "data.json"), _json(train / "summary.json")
    assert (record["train_images"], record["test_images"]) == (90, 30)
    assert (summary["test_images"], summary["valid_images"]) == (30, 0)
    assert "data: 90 training images, 30 test images" in out
    assert "test top-1 error" in out and "on 30 test images" in out
    # 12-pixel images cannot feed the demo's auxiliary head: off, and said, since the user did not ask for it.
    assert _config(train)["auxiliary"] is False and "adjusted: auxiliary True -> False" in out


def test_arrays_from_python_are_used_whole(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 256, size=(70, 12, 12), dtype=np.uint8), np.arange(70) % 2
    xt, yt = x[:25], y[:25]
    result = gdas.search((x, y), out=tmp_path / "s", **TINY)
    assert _json(result.run_dir / "data.json")["train_images"] == 70
    trained = gdas.train(result, (x, y), test=(xt, yt), out=tmp_path / "t", epochs=1, steps_per_epoch=1, C=4)
    assert trained.summary["test_images"] == 25 and _json(trained.run_dir / "data.json")["train_images"] == 70


def test_a_subset_in_effect_is_printed_and_recorded(tmp_path: Path, capsys) -> None:
    data = _npz(tmp_path / "mine.npz", 90, 30)
    assert run_cli("train", "--preset", "smoke", "--dataset", "npz", "--data-dir", data, "--train-subset", "40",
                   "--test-subset", "20", "--epochs", "1", "--C", "4", "--steps-per-epoch", "1", *QUIET,
                   "--out", tmp_path / "t") == 0
    out = capsys.readouterr().out
    assert ("data: 40 of 90 training images (--train-subset 40, given), 20 of 30 test images (--test-subset 20, "
            "given)") in out
    record = _json(tmp_path / "t" / "data.json")
    assert (record["train_images"], record["train_images_available"]) == (40, 90)
    assert (record["test_images"], record["test_images_available"]) == (20, 30)
    assert _json(tmp_path / "t" / "summary.json")["test_images"] == 20


def test_the_demo_presets_subset_of_its_own_dataset_is_said(tmp_path: Path, capsys) -> None:
    try:
        load_image_dataset("fashion-mnist", None)
    except GdasError:
        pytest.skip("Fashion-MNIST is not installed")
    assert run_cli("search", "--epochs", "1", "--steps-per-epoch", "1", "--C", "4", *QUIET, "--out", tmp_path / "s") == 0
    assert "on 4,000 of 60,000 training images (--train-subset 4000, preset demo): D_T 2,000, D_V 2,000" in \
        capsys.readouterr().out
    record = _json(tmp_path / "s" / "data.json")
    assert (record["train_images"], record["train_images_available"]) == (4000, 60000)


# -- options the user did not set never make a command fail -------------------------------------------------
@pytest.mark.parametrize("epochs, warmup", [(1, 0), (2, 0), (4, 1), (10, 3), (20, 6)])
def test_a_presets_warmup_keeps_its_share_of_the_epochs(epochs: int, warmup: int) -> None:
    cfg = resolve_config(SearchConfig, SEARCH_TABLE, kind="search", overrides={"epochs": epochs})
    assert (cfg.epochs, cfg.warmup_epochs) == (epochs, warmup)
    assert bool(cfg.adjusted) == (warmup != 3)


def test_a_warmup_the_user_gave_is_checked_not_changed() -> None:
    with pytest.raises(GdasError, match=r"--warmup-epochs must be in \[0, --epochs\), got 3 with 2 epochs"):
        resolve_config(SearchConfig, SEARCH_TABLE, kind="search", overrides={"epochs": 2, "warmup_epochs": 3})


def test_a_shortened_demo_search_runs_and_says_what_it_changed(tmp_path: Path, capsys) -> None:
    """`--epochs 1` on the default preset once failed with an error about --warmup-epochs, never given."""
    data = _npz(tmp_path / "mine.npz", 40, 10)
    assert run_cli("search", "--dataset", "npz", "--data-dir", data, "--epochs", "1", "--C", "4", *QUIET,
                   "--out", tmp_path / "cli") == 0
    out = capsys.readouterr().out
    assert "preset demo adjusted: warmup_epochs 3 -> 0 (the preset's 3 of 10 epochs, scaled to --epochs 1)" in out
    stored = _json(tmp_path / "cli" / "config.json")["config"]
    assert stored["warmup_epochs"] == 0 and sorted(stored["given"]) == sorted(["data_dir", "dataset", "epochs", "C"])
    assert any(note.startswith("warmup_epochs 3 -> 0") for note in stored["adjusted"])
    result = gdas.search(data, out=tmp_path / "api", epochs=2, C=4)
    assert _config(result.run_dir)["warmup_epochs"] == 0


def test_a_batch_the_user_gave_that_the_data_cannot_hold_is_an_error(tmp_path: Path, capsys) -> None:
    data = _npz(tmp_path / "mine.npz", 40, 10)
    expect_error(capsys, "search", "--dataset", "npz", "--data-dir", data, "--epochs", "1", "--batch-size", "32",
                 *QUIET, "--out", tmp_path / "s", contains="--batch-size 32 is larger than D_T / D_V (20 / 20 images)")
    assert not (tmp_path / "s").exists()
    expect_error(capsys, "train", "--preset", "smoke", "--dataset", "npz", "--data-dir", data, "--epochs", "1",
                 "--batch-size", "64", *QUIET, "--out", tmp_path / "t",
                 contains="--batch-size 64 is larger than the 40 training images")
    assert not (tmp_path / "t").exists()


def test_an_auxiliary_head_the_user_asked_for_on_small_images_is_an_error(tmp_path: Path, capsys) -> None:
    data = _npz(tmp_path / "mine.npz", 40, 10)
    expect_error(capsys, "train", "--dataset", "npz", "--data-dir", data, "--auxiliary", "--epochs", "1", *QUIET,
                 "--out", tmp_path / "t", contains="--no-auxiliary")
    assert not (tmp_path / "t").exists()


# -- every search config extends Algorithm 1's ------------------------------------------------------------
def test_the_recurrent_search_has_algorithm_1s_options_and_refuses_what_its_space_lacks(tmp_path: Path) -> None:
    cfg = resolve_config(RNNSearchConfig, RNN_SEARCH_TABLE, kind="search-rnn", preset="smoke")
    assert (cfg.max_skip, cfg.stop_on_collapse, cfg.collapse_patience, cfg.cost) == (None, None, 1, None)
    assert (cfg.w_lr, cfg.a_lr, cfg.a_beta1, cfg.grad_clip, cfg.w_lr_min) == (20.0, 3e-3, 0.9, 0.25, None)
    for field, value, contains in [("max_skip", 2, "--max-skip limits skip_connect ops, which the rnn space"),
                                   ("cost", "params", "--cost is not available in the rnn space"),
                                   ("channels_last", True, "--channels-last is a memory format of image networks")]:
        with pytest.raises(GdasError, match=contains):
            resolve_config(RNNSearchConfig, RNN_SEARCH_TABLE, kind="search-rnn", preset="smoke",
                           overrides={field: value, **({"cost_weight": 1.0} if field == "cost" else {})})


def test_the_recurrent_search_stops_on_collapse_too(tmp_path: Path, capsys) -> None:
    """--stop-on-collapse counts the parameter-free ops of the derived recurrent cell (identity)."""
    assert run_cli("search-rnn", "--preset", "smoke", "--stop-on-collapse", "1", *QUIET, "--out", tmp_path / "r") == 0
    summary = _json(tmp_path / "r" / "summary.json")
    assert summary["stop_on_collapse"] == 1 and "guards" in summary
    with pytest.raises(SystemExit):  # not an option of the recurrent search
        run_cli("search-rnn", "--preset", "smoke", "--max-skip", "1")


def test_a_run_from_before_the_record_continues_with_auto_resume(tmp_path: Path, capsys) -> None:
    """config.json of an earlier release has no given / adjusted and may name a preset by its old name: the same
    command with --auto-resume still finds its run."""
    command = ["search", "--preset", "smoke", "--epochs", "2", "--steps-per-epoch", "1", "--C", "4", *QUIET,
               "--out", tmp_path / "run"]
    assert run_cli(*command) == 0
    stored = _json(tmp_path / "run" / "config.json")
    for name in ("given", "adjusted"):
        del stored["config"][name]
    stored["config"]["preset"] = "fashion-mnist"
    (tmp_path / "run" / "config.json").write_text(json.dumps(stored))
    (tmp_path / "run" / "summary.json").unlink()
    assert run_cli(*command, "--auto-resume") == 0
    assert "epochs 2..1" in capsys.readouterr().out  # nothing left to run: the summary is written again
    assert _json(tmp_path / "run" / "summary.json")["complete"]


def test_a_training_preset_follows_the_genotypes_space_even_when_named() -> None:
    from gdas.api import _genotype_space

    cfg = resolve_config(TrainConfig, TRAIN_TABLE, kind="train", preset="smoke",
                         overrides={"genotype": "nb201-resnet"}, space_of=_genotype_space)
    assert (cfg.preset, cfg.space, cfg.auxiliary) == ("nb201-smoke", "nb201", False)
    with pytest.raises(GdasError, match="recurrent cells train with gdas train-lm"):
        resolve_config(TrainConfig, TRAIN_TABLE, kind="train", overrides={"genotype": "GDAS_RNN"},
                       space_of=_genotype_space)


def test_auto_resume_continues_a_run_with_what_it_recorded(tmp_path: Path, monkeypatch, capsys) -> None:
    """A run from before `cost_target_of` compared its --cost-target with the cells alone: the same command with
    --auto-resume continues it with that meaning, not the new one."""
    from cli_helpers import kill_after_checkpoints

    command = ["search", "--preset", "smoke", "--C", "4", "--cost", "params", "--cost-weight", "0.01",
               "--cost-target", "100", *QUIET, "--threads", "1", "--out", tmp_path / "run"]
    restore = kill_after_checkpoints(monkeypatch, 1)
    assert run_cli(*command) == 130
    restore()
    stored = _json(tmp_path / "run" / "config.json")
    assert stored["config"].pop("cost_target_of") == "network"
    (tmp_path / "run" / "config.json").write_text(json.dumps(stored))
    assert run_cli(*command, "--auto-resume") == 0
    summary = _json(tmp_path / "run" / "summary.json")
    assert summary["cost_target_of"] == "cells" and summary["cost_target"] == 100
