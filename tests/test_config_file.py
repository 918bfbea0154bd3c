"""Config files: `--config FILE` (JSON or YAML) on the run commands, `config=` in Python, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import expect_error, run_cli

from gdas.configs import base
from gdas.configs.files import read_config_file, resolve_config
from gdas.configs.search import SEARCH_PRESETS, SEARCH_TABLE, SearchConfig
from gdas.configs.train import TrainConfig
from gdas.errors import GdasError
from gdas.runs import resume_changes, resumed_config

QUIET = ["--no-progress", "--no-report"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["config"]


def test_yaml_file_sets_fields_and_command_line_options_override_it(tmp_path: Path) -> None:
    conf = _write(tmp_path / "run.yaml", "preset: smoke\nepochs: 1\nsteps_per_epoch: 2\nC: 6\ntau_max: 5\n")
    assert run_cli("search", "--config", conf, "--C", "4", "--out", tmp_path / "run", *QUIET) == 0
    stored = _config(tmp_path / "run")
    # The file's preset, its fields over the preset, the command line over the file; a YAML int for a float.
    assert (stored["preset"], stored["epochs"], stored["steps_per_epoch"]) == ("smoke", 1, 2)
    assert stored["C"] == 4 and stored["tau_max"] == 5.0
    assert stored["synthetic_train"] == SEARCH_PRESETS["smoke"].synthetic_train

    # The run's own config.json repeats the run: the same genotype on the CPU.
    assert run_cli("search", "--config", tmp_path / "run" / "config.json", "--out", tmp_path / "again", *QUIET) == 0
    assert _config(tmp_path / "again") == stored
    genotype = json.loads((tmp_path / "run" / "genotype.json").read_text())
    assert json.loads((tmp_path / "again" / "genotype.json").read_text()) == genotype


def test_preset_on_the_command_line_wins_over_the_files() -> None:
    cfg = resolve_config(SearchConfig, SEARCH_TABLE, kind="search", preset="nb201-smoke",
                         overrides={"epochs": 3})
    assert (cfg.preset, cfg.space, cfg.epochs) == ("nb201-smoke", "nb201", 3)


def test_json_file_and_precedence(tmp_path: Path) -> None:
    conf = _write(tmp_path / "run.json", json.dumps({"preset": "smoke", "epochs": 4, "batch_size": 8}))
    cfg = resolve_config(SearchConfig, SEARCH_TABLE, kind="search", config=conf,
                         overrides={"batch_size": 32})
    assert (cfg.preset, cfg.epochs, cfg.batch_size) == ("smoke", 4, 32)
    cfg = resolve_config(SearchConfig, SEARCH_TABLE, kind="search", preset="cifar10", config=conf)
    assert (cfg.preset, cfg.dataset, cfg.epochs) == ("cifar10", "cifar10", 4)
    # No preset anywhere: the command's default.
    cfg = resolve_config(SearchConfig, SEARCH_TABLE, kind="search",
                         config=_write(tmp_path / "empty.yaml", ""))
    assert cfg == base.resolve(SEARCH_PRESETS, "demo", {})


@pytest.mark.parametrize("text, contains", [
    ("preset: smoke\nepoch: 2\n", "unknown field 'epoch' in run.yaml; did you mean 'epochs'?"),
    ("epochs: two\n", "field 'epochs' in run.yaml must be an integer, got 'two'"),
    ("flip: 1\n", "field 'flip' in run.yaml must be true or false"),
    ("train_subset: 1.5\n", "field 'train_subset' in run.yaml must be an integer or null"),
    ("preset: smok\n", "unknown preset 'smok'; did you mean 'smoke'?"),
    ("- epochs\n- 2\n", "must hold a mapping of config fields"),
    ("epochs: [1\n", "is not valid YAML"),
    ("epochs: 0\n", "--epochs must be at least 1"),
])
def test_bad_config_files_are_one_line_errors(tmp_path: Path, capsys, text: str, contains: str) -> None:
    conf = _write(tmp_path / "run.yaml", text)
    expect_error(capsys, "search", "--config", conf, "--out", tmp_path / "run", *QUIET, contains=contains)
    assert not (tmp_path / "run").exists()


def test_file_names_and_kinds(tmp_path: Path, capsys) -> None:
    expect_error(capsys, "search", "--config", tmp_path / "missing.yaml", contains="does not exist")
    expect_error(capsys, "search", "--config", _write(tmp_path / "run.toml", "epochs = 1"),
                 contains="must end in .json, .yaml or .yml")
    expect_error(capsys, "search", "--config", _write(tmp_path / "bad.json", "{epochs: 1}"),
                 contains="is not valid JSON")
    # A run's config.json goes back to the command of its kind.
    train_run = _write(tmp_path / "config.json", json.dumps({"kind": "train", "config": {"epochs": 1}, "env": {}}))
    expect_error(capsys, "search", "--config", train_run, "--out", tmp_path / "run",
                 contains="is the config of a train run, not a search run")
    assert not (tmp_path / "run").exists()
    assert read_config_file(train_run, "train") == {"epochs": 1}
    # Every run command takes --config; the LM ones check against their own fields.
    expect_error(capsys, "search-rnn", "--config", _write(tmp_path / "lm.yaml", "emsize: 8\nnhidden: 8\n"),
                 contains="unknown field 'nhidden' in lm.yaml; did you mean 'nhid'?")
    expect_error(capsys, "train", "--config", _write(tmp_path / "t.yaml", "cutuot: 8\n"),
                 contains="unknown field 'cutuot' in t.yaml; did you mean 'cutout'?")


def test_field_types_are_checked_and_stored_as_the_config_stores_them() -> None:
    fields = base.check_fields(SearchConfig, {"tau_max": 4, "seed": 3, "split_seed": None, "flip": False}, "here")
    assert fields == {"tau_max": 4.0, "seed": 3, "split_seed": None, "flip": False}
    assert isinstance(fields["tau_max"], float)
    with pytest.raises(GdasError, match="field 'seed' here must be an integer, got True"):
        base.check_fields(SearchConfig, {"seed": True}, "here")
    with pytest.raises(GdasError, match="field 'cost' here must be a string or null"):
        base.check_fields(SearchConfig, {"cost": 3}, "here")
    with pytest.raises(GdasError, match="unknown field 'zzz' here$"):  # nothing near: no suggestion
        base.check_fields(TrainConfig, {"zzz": 1}, "here")


def test_a_resume_takes_only_resume_safe_fields_from_a_file(tmp_path: Path) -> None:
    stored = base.resolve(SEARCH_PRESETS, "smoke", {})
    same = _write(tmp_path / "same.yaml", "preset: smoke\nepochs: 2\nthreads: 1\n")
    cfg = resumed_config(stored, resume_changes(SearchConfig, "search", same, {}, ""))
    assert cfg.threads == 1 and cfg.epochs == stored.epochs
    other = _write(tmp_path / "other.yaml", "epochs: 5\n")
    with pytest.raises(GdasError, match="cannot resume with a different config \\(--epochs differ"):
        resumed_config(stored, resume_changes(SearchConfig, "search", other, {}, ""))
