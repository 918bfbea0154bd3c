"""Module spaces on the command line: a user's factory searched on image data as a classifier, the MobileNet-style
space (search, train, info), and the options they refuse in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import expect_error, run_cli

SMOKE = ("--preset", "smoke", "--no-progress", "--no-report", "--threads", "1")


def test_a_users_factory_searches_and_trains_as_a_classifier(tmp_path: Path, capsys) -> None:
    out = tmp_path / "s"
    assert run_cli("search", "--space", "module:module_spaces:Classifier", *SMOKE, "--out", out) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "search" and config["config"]["space"] == "module:module_spaces:Classifier"
    assert config["config"]["preset"] == "mobilenet-smoke"  # module spaces take the MobileNet-style recipes
    genotype = json.loads((out / "genotype.json").read_text())
    assert genotype["choices"]["op"] in ("conv3", "conv5", "pool")
    assert "genotype: choices of module:module_spaces:Classifier: op=" in capsys.readouterr().out
    assert run_cli("train", "--genotype", out, *SMOKE, "--out", tmp_path / "t") == 0
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert summary["final_top1_err"] is not None and summary["genotype_json"]["choices"] == genotype["choices"]


@pytest.mark.parametrize("args, contains", [
    (("--space", "module:module_spaces:ConvMismatch"),
     "choice 'op' at op: candidate halve gives an output of shape (1, 4, 16, 16), but candidate keep gives "
     "(1, 4, 32, 32)"),
    (("--space", "module:module_spaces:Classifier", "--max-skip", "1"),
     "--max-skip limits skip_connect ops, which the module:module_spaces:Classifier space does not have"),
    (("--space", "module:module_spaces:Classifier", "--sample-scope", "cell"), "draws once per label"),
    (("--space", "module:no_such_package.net:Net"), "cannot import no_such_package.net"),
    (("--space", "module:module_spaces:Nothing"), "module_spaces has no Nothing"),
])
def test_bad_spaces_are_one_line_with_no_run_folder(tmp_path: Path, capsys, args, contains) -> None:
    expect_error(capsys, "search", *args, *SMOKE, "--out", tmp_path / "s", contains=contains)
    assert not (tmp_path / "s").exists()


def test_mobilenet_searches_trains_and_counts(tmp_path: Path, capsys) -> None:
    assert run_cli("search", "--space", "mobilenet", *SMOKE, "--out", tmp_path / "s") == 0
    genotype = json.loads((tmp_path / "s" / "genotype.json").read_text())
    assert genotype["space"] == "mobilenet" and set(genotype["choices"]) == {
        f"s{s}b{b}" for s in range(1, 6) for b in (1, 2)} | {"s6b1"}
    assert run_cli("train", "--genotype", tmp_path / "s", *SMOKE, "--out", tmp_path / "t") == 0
    capsys.readouterr()
    assert run_cli("info", "mobilenet-v2", "--dataset", "imagenet", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert round(info["params_M"], 2) == 3.50 and 295 < info["mult_adds_M"] < 305
