"""Tests for typed configs: presets, CLI overrides, validation errors, the JSON form and runtime settings."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Optional

import pytest
import torch

import gdas
from gdas.configs import base
from gdas.configs.runtime import (auto_channels_last, autocast, environment, resolve_device, validate_runtime,
                                  validate_tracking, version_text, with_channels_last)
from gdas.configs.search import SEARCH_PRESETS, SearchConfig
from gdas.configs.train import TrainConfig
from gdas.errors import GdasError


def _parse(argv: list[str], cls: type = SearchConfig) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    base.add_config_options(parser, cls)
    return parser.parse_args(argv)


@pytest.mark.parametrize("name", list(SEARCH_PRESETS))
def test_every_preset_validates(name):
    cfg = base.resolve(SEARCH_PRESETS, name, {})
    assert cfg.preset == name
    cfg.validate()
    assert dataclasses.replace(cfg, preset=SEARCH_PRESETS[name].preset) == SEARCH_PRESETS[name]


def test_paper_preset_follows_spec():
    cfg = SEARCH_PRESETS["cifar10"]
    assert (cfg.dataset, cfg.C, cfg.N, cfg.steps, cfg.epochs, cfg.batch_size) == ("cifar10", 16, 2, 4, 240, 64)
    assert (cfg.w_lr, cfg.w_lr_min, cfg.w_momentum, cfg.w_weight_decay, cfg.grad_clip) == (0.025, 0.001, 0.9, 3e-4, 5.0)
    assert (cfg.a_lr, cfg.a_beta1, cfg.a_beta2, cfg.a_weight_decay) == (3e-4, 0.5, 0.999, 1e-3)
    assert (cfg.tau_max, cfg.tau_min, cfg.train_portion) == (10.0, 0.1, 0.5)
    assert (cfg.sampler, cfg.sample_scope, cfg.frc) == ("gdas", "network", False)
    assert (cfg.crop_padding, cfg.flip, cfg.cutout) == (4, True, 0)
    assert SEARCH_PRESETS["cifar10-frc"].frc and SEARCH_PRESETS["cifar100"].dataset == "cifar100"
    assert SEARCH_PRESETS["smoke"].dataset == "synthetic"
    assert SEARCH_PRESETS["demo"].dataset == "fashion-mnist"


def test_cli_overrides_with_alias_negation_and_none():
    args = _parse(["--C", "8", "--no-flip", "--train-subset", "none", "--batch", "32", "--sampler", "darts",
                   "--tau-max", "5", "--sample-scope", "cell", "--frc"])
    assert vars(args) == {"C": 8, "flip": False, "train_subset": None, "batch_size": 32, "sampler": "darts",
                          "tau_max": 5.0, "sample_scope": "cell", "frc": True}
    cfg = base.resolve(SEARCH_PRESETS, "demo", args)
    cfg.validate()
    assert (cfg.C, cfg.flip, cfg.train_subset, cfg.batch_size, cfg.sampler, cfg.tau_max) == (
        8, False, None, 32, "darts", 5.0)
    # Untouched fields keep the preset's values.
    preset = SEARCH_PRESETS["demo"]
    assert (cfg.epochs, cfg.dataset, cfg.crop_padding, cfg.N) == (preset.epochs, preset.dataset, 2, preset.N)
    assert cfg.preset == "demo"


def test_cli_long_names_and_no_options_given():
    assert vars(_parse(["--batch-size", "7", "--train-subset", "100", "--flip"])) == {
        "batch_size": 7, "train_subset": 100, "flip": True}
    assert vars(_parse([])) == {}
    assert "preset" not in vars(_parse([]))


@pytest.mark.parametrize("argv", [["--sampler", "enas"], ["--C", "abc"], ["--dataset", "mnist"],
                                  ["--epochs", "2.5"], ["--batch", "none"]])
def test_cli_rejects_bad_values(argv, capsys):
    with pytest.raises(SystemExit) as info:
        _parse(argv)
    assert info.value.code == 2


def test_unknown_preset_raises():
    with pytest.raises(GdasError, match="unknown preset 'cifar11'"):
        base.resolve(SEARCH_PRESETS, "cifar11", {})


@pytest.mark.parametrize("changes,match", [
    ({"batch_size": 0}, "--batch-size"),
    ({"frc": True, "C": 12}, "divisible by 8"),
    ({"sampler": "enas"}, "--sampler"),
    ({"sample_scope": "batch"}, "--sample-scope"),
    ({"dataset": "mnist"}, "--dataset"),
    ({"epochs": 0}, "--epochs"),
    ({"C": 9}, "even"),
    ({"N": 0}, "--N"),
    ({"train_portion": 1.0}, "--train-portion"),
    ({"tau_min": 0.0}, "--tau-min"),
    ({"tau_max": 0.05}, "--tau-max"),
    ({"train_subset": 1}, "--train-subset"),
    ({"steps_per_epoch": 0}, "--steps-per-epoch"),
    ({"cutout": -1}, "--cutout"),
    ({"device": "tpu"}, "--device"),
    ({"amp": "fp16"}, "--amp"),
    ({"threads": 0}, "--threads"),
])
def test_impossible_options_raise(changes, match):
    cfg = base.resolve(SEARCH_PRESETS, "smoke", changes)
    with pytest.raises(GdasError, match=match):
        cfg.validate()


@pytest.mark.parametrize("edge, beyond, match", [
    ({"frc": True, "C": 16}, {"frc": True, "C": 12}, "divisible by 8"),
    ({"device": "cuda:1"}, {"device": "gpu:1"}, "--device"),
    ({"device": "cpu", "threads": 1}, {"device": "cpu", "threads": 0}, "--threads"),
    ({"tau_max": 0.5, "tau_min": 0.5}, {"tau_max": 0.5, "tau_min": 0.51}, "--tau-max"),
    ({"batch_size": 1}, {"batch_size": 0}, "--batch-size"),
    ({"train_subset": 2}, {"train_subset": 1}, "--train-subset"),
    ({"train_portion": 0.99}, {"train_portion": 0.0}, "--train-portion"),
])
def test_valid_edge_values_pass_and_one_step_beyond_fails(edge, beyond, match):
    cfg = base.resolve(SEARCH_PRESETS, "smoke", edge)
    assert {k: getattr(cfg, k) for k in edge} == edge  # the overrides reached the config
    cfg.validate()
    with pytest.raises(GdasError, match=match):
        base.resolve(SEARCH_PRESETS, "smoke", beyond).validate()


def test_json_round_trip():
    cfg = base.resolve(SEARCH_PRESETS, "smoke", {"train_subset": 64, "data_dir": "data", "sampler": "gdas-noaccel"})
    data = json.loads(json.dumps(base.to_json(cfg)))
    assert data["preset"] == "smoke" and data["train_subset"] == 64
    assert base.from_json(SearchConfig, data) == cfg


def test_from_json_unknown_fields_raise():
    data = base.to_json(SEARCH_PRESETS["smoke"])
    data["learning_rate"] = 0.1
    with pytest.raises(GdasError, match="learning_rate"):
        base.from_json(SearchConfig, data)


# ---- generic machinery on a config with tuple and optional fields ----

@dataclass(frozen=True)
class _Toy:
    preset: str = "custom"
    sizes: tuple[int, ...] = (1, 2)
    rate: Optional[float] = 0.5
    mode: str = field(default="a", metadata=base.meta("a mode", ("a", "b"), aliases=("m",)))


def test_tuple_and_optional_fields():
    args = _parse(["--sizes", "3", "4", "5", "--rate", "null", "--m", "b"], _Toy)
    cfg = base.resolve({"toy": _Toy()}, "toy", args)
    assert cfg == _Toy(preset="toy", sizes=(3, 4, 5), rate=None, mode="b")
    assert base.to_json(cfg)["sizes"] == [3, 4, 5]
    assert base.from_json(_Toy, json.loads(json.dumps(base.to_json(cfg)))) == cfg
    assert base.apply_overrides(_Toy(), {"sizes": [7], "unrelated": 1}) == _Toy(sizes=(7,))


def test_option_name_and_checks():
    assert base.option_name("batch_size") == "--batch-size" and base.option_name("C") == "--C"
    base.check(True, "unused")
    with pytest.raises(GdasError, match="^boom$"):
        base.check(False, "boom")
    with pytest.raises(GdasError, match="--x 'c' is not one of: a, b"):
        base.check_choice("c", ("a", "b"), "--x")


# ---- runtime ----

def test_runtime_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(GdasError, match="--device cpu"):
            resolve_device("cuda")
    with pytest.raises(GdasError):
        validate_runtime("gpu", "none", None)


def test_autocast_is_a_no_op_on_cpu():
    ctx = autocast(torch.device("cpu"), "bf16")
    assert isinstance(ctx, contextlib.nullcontext)
    with ctx:
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_environment_record():
    env = environment(torch.device("cpu"))
    assert {"gdas", "torch", "python", "platform", "device", "threads"} <= set(env)
    assert env["device"] == "cpu" and env["torch"] == torch.__version__
    json.dumps(env)


def test_channels_last_auto_is_on_for_the_cpu_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert auto_channels_last(cpu) and not auto_channels_last(cuda)
    for cls in (SearchConfig, TrainConfig):
        assert cls().channels_last is None  # auto
        assert with_channels_last(cls(), cpu).channels_last is True
        assert with_channels_last(cls(), cuda).channels_last is False
        assert with_channels_last(cls(channels_last=False), cpu).channels_last is False
        assert with_channels_last(cls(channels_last=True), cuda).channels_last is True
    assert _parse(["--no-channels-last"]).channels_last is False
    assert _parse(["--channels-last"]).channels_last is True
    assert not hasattr(_parse([]), "channels_last")  # unset: the preset's value (auto)


def test_version_text_names_gdas_torch_and_device():
    text = version_text()
    assert text.startswith(f"gdas {gdas.__version__} (torch {torch.__version__}, device ")
    assert ("device cuda" if torch.cuda.is_available() else "device cpu") in text


def test_tracking_options():
    validate_tracking(None, None)
    validate_tracking("mlflow", None)
    validate_tracking("mlflow", "http://localhost:5000")
    with pytest.raises(GdasError, match="^--tracking 'wandb' is not one of: mlflow$"):
        validate_tracking("wandb", None)
    with pytest.raises(GdasError, match="needs --tracking mlflow"):
        validate_tracking(None, "./mlruns")


def test_python_wording_turns_options_into_keyword_arguments() -> None:
    from gdas.configs.base import python_wording
    from gdas.configs.train import TrainConfig

    classes = [SearchConfig, TrainConfig]
    cases = {
        "raise --image-size or pass --no-auxiliary": "raise image_size or pass auxiliary=False",
        "or pass --valid-portion P (a part)": "or pass valid_portion=P (a part)",
        "--C must be even, got 7": "C must be even, got 7",
        "pass --image-size 8 (or 12)": "pass image_size=8 (or 12)",
        "pass --image-size N (image_size=N in Python) to resize": "pass image_size=N to resize",
        "continue it with --resume runs/x or choose another --out": "continue it with resume=True or choose another out",
        "--auto-resume needs --out DIR": 'resume="auto" needs out=DIR',
        "--stream": "stream=True",
        "resuming needs the run folder: --resume RUN_DIR (out=RUN_DIR in Python)": "resuming needs the run folder: "
                                                                                   "out=RUN_DIR",
        "--auto-resume needs --out DIR (out=DIR in Python): the folder": 'resume="auto" needs out=DIR: the folder',
        "see --help or --unknown-thing": "see --help or --unknown-thing",  # not a field: left as it is
    }
    for message, worded in cases.items():
        assert python_wording(message, classes) == worded
