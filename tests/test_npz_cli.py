"""End-to-end `gdas search` / `gdas train --dataset npz --data-dir FILE.npz` on both CNN spaces, and bad npz input
(one line, exit 2, no run folder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import expect_error, run_cli
from gdas.genotypes import load_genotype
from gdas.spaces.nb201.genotype import NB201Genotype

SEARCH = ["search", "--preset", "smoke", "--no-progress", "--no-report", "--C", "4", "--epochs", "1",
          "--steps-per-epoch", "2"]
NB201 = ["search", "--preset", "nb201-smoke", "--no-progress", "--no-report", "--C", "4", "--epochs", "1",
         "--steps-per-epoch", "2"]
TRAIN = ["train", "--preset", "smoke", "--no-progress", "--no-report", "--C", "8", "--epochs", "1", "--batch", "16",
         "--steps-per-epoch", "3"]
CLASSES = ["circle", "square", "stripe", "dot"]


def _learnable(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """NHWC uint8 RGB images: a colour and brightness per class plus noise, labels 0..3 in turn."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]], dtype=np.float32)
    pixels = colours[labels][:, None, None, :] + rng.normal(0, 30, size=(n, size, size, 3))
    return pixels.clip(0, 255).round().astype(np.uint8), labels


@pytest.fixture(scope="module")
def rgb_npz(tmp_path_factory) -> Path:
    """NHWC uint8 RGB 24x24 with test arrays and class names."""
    path = tmp_path_factory.mktemp("npz") / "shapes.npz"
    x, y = _learnable(160, 24, seed=0)
    xt, yt = _learnable(48, 24, seed=1)
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt, classes=np.array(CLASSES))
    return path


def _json(path: Path):
    return json.loads(path.read_text())


def test_darts_search_then_train_on_an_npz(rgb_npz: Path, tmp_path: Path, capsys) -> None:
    search, train = tmp_path / "search", tmp_path / "train"
    assert run_cli(*SEARCH, "--dataset", "npz", "--data-dir", rgb_npz, "--out", search) == 0
    assert _json(search / "classes.json") == CLASSES
    record = _json(search / "data.json")
    x = np.load(rgb_npz)["x_train"]
    assert record["dataset"] == "npz" and record["data_dir"] == str(rgb_npz) and record["train_images"] == 160
    assert (record["num_classes"], record["channels"], record["image_size"]) == (4, 3, 24)
    assert record["mean"] == pytest.approx((x.reshape(-1, 3).mean(0) / 255).tolist())
    assert _json(search / "config.json")["config"]["dataset"] == "npz"

    assert run_cli(*TRAIN, "--dataset", "npz", "--data-dir", rgb_npz, "--genotype", search, "--out", train) == 0
    printed = capsys.readouterr().out
    assert "test top-1 error" in printed
    summary = _json(train / "summary.json")
    assert summary["dataset"] == "npz" and summary["complete"] and 0 <= summary["final_top1_err"] <= 1
    assert load_genotype(train) == load_genotype(search)
    assert _json(train / "classes.json") == CLASSES
    assert _json(train / "data.json")["num_classes"] == 4


def test_nb201_search_on_grayscale_float_nchw_without_a_test_split(tmp_path: Path) -> None:
    x, y = _learnable(128, 12, seed=2)
    path = tmp_path / "gray.npz"
    gray = x.mean(axis=3, keepdims=True).transpose(0, 3, 1, 2) / 255  # NCHW float in [0, 1]
    np.savez(path, x_train=gray.astype(np.float32), y_train=y)
    out = tmp_path / "nb201"
    assert run_cli(*NB201, "--dataset", "npz", "--data-dir", path, "--out", out, "--channels", "3") == 0
    assert isinstance(load_genotype(out), NB201Genotype)
    record = _json(out / "data.json")
    assert (record["channels"], record["image_size"], record["num_classes"]) == (3, 12, 4)
    assert _json(out / "classes.json") == ["0", "1", "2", "3"]


def test_bad_npz_input_stops_before_a_run_folder(rgb_npz: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    expect_error(capsys, *SEARCH, "--dataset", "npz", "--out", out, contains="--dataset npz needs --data-dir FILE.npz")
    expect_error(capsys, *SEARCH, "--dataset", "npz", "--data-dir", tmp_path / "none.npz", "--out", out,
                 contains="none.npz does not exist")
    no_x = tmp_path / "no_x.npz"
    np.savez(no_x, images=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(4) % 2)
    expect_error(capsys, *SEARCH, "--dataset", "npz", "--data-dir", no_x, "--out", out,
                 contains="has no x_train (arrays found: images, y_train)")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(4) % 2, x_test=np.zeros((2, 8, 8),
             np.uint8), y_test=np.array([0, 5]))
    expect_error(capsys, *TRAIN, "--dataset", "npz", "--data-dir", wrong, "--genotype", "GDAS", "--out", out,
                 contains=f"{wrong}: y_test has label 5, outside 0..K-1")
    expect_error(capsys, *NB201, "--dataset", "npz", "--data-dir", rgb_npz, "--image-size", "30", "--out", out,
                 contains="multiple of 4, got 30x30")
    expect_error(capsys, *TRAIN, "--dataset", "npz", "--data-dir", rgb_npz, "--image-size", "16", "--auxiliary", "--genotype", "GDAS",
                 "--out", out, contains="the auxiliary head needs images of at least 21x21")
    expect_error(capsys, *SEARCH, "--dataset", "npz", "--data-dir", rgb_npz, "--channels", "2", "--out", out,
                 contains="--channels must be 1 (grayscale) or 3")
    assert not out.exists()
