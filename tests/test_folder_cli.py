"""`gdas search` and `gdas train` on class folders of real image files, end to end: darts and nb201, in memory
and streamed (same result, resumable), no test split, and every bad input as one line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import expect_error, kill_after_checkpoints, run_cli
from gdas.genotypes import load_genotype
from image_files import write_image_folder

SEARCH = ["search", "--preset", "smoke", "--dataset", "folder", "--no-progress", "--no-report", "--device", "cpu",
          "--image-size", "16", "--epochs", "1", "--steps-per-epoch", "3"]
TRAIN = ["train", "--preset", "smoke", "--dataset", "folder", "--no-progress", "--no-report", "--device", "cpu",
         "--image-size", "16", "--epochs", "1", "--steps-per-epoch", "2", "--no-auxiliary", "--cutout", "0"]


@pytest.fixture(scope="module")
def grey(tmp_path_factory) -> Path:
    """Grayscale PNGs: 4 classes x 60 training images, 4 x 8 test images."""
    root = tmp_path_factory.mktemp("data") / "grey"
    classes = ("bag", "boot", "coat", "shirt")
    write_image_folder(root, n_per_class=60, classes=classes, fmt="png", mode="L")
    return write_image_folder(root, n_per_class=8, classes=classes, fmt="png", mode="L", split="test", offset=100)


@pytest.fixture(scope="module")
def rgb(tmp_path_factory) -> Path:
    """Tinted RGB JPEGs of mixed sizes, 3 classes x (50 + 5) training images, no test split."""
    root = write_image_folder(tmp_path_factory.mktemp("data") / "rgb", n_per_class=50, fmt="jpg", mode="RGB")
    return write_image_folder(root, n_per_class=5, fmt="jpg", mode="RGB", size=(36, 30), offset=200, prefix="big")


def _json(path: Path):
    return json.loads(path.read_text())


def test_darts_search_on_a_png_folder_writes_its_classes(grey: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli(*SEARCH, "--data-dir", grey, "--out", out) == 0
    printed = capsys.readouterr().out
    assert "240 training and 32 test images, 4 classes" in printed and "in memory" in printed
    assert _json(out / "classes.json") == ["bag", "boot", "coat", "shirt"]
    data = _json(out / "data.json")
    assert (data["num_classes"], data["channels"], data["image_size"], data["train_images"]) == (4, 1, 16, 240)
    assert load_genotype(out).normal and _json(out / "summary.json")["complete"]


def test_nb201_search_on_rgb_jpegs_of_mixed_sizes(rgb: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli(*SEARCH, "--preset", "nb201-smoke", "--data-dir", rgb, "--out", out) == 0
    assert "resized 15 images of other sizes than the most common 28x28" in capsys.readouterr().out
    assert _json(out / "data.json")["channels"] == 3 and _json(out / "classes.json") == ["boot", "coat", "shirt"]
    assert load_genotype(out).to_json()


def test_streamed_search_matches_in_memory_and_resumes(grey: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    args = (*SEARCH, "--epochs", "2", "--data-dir", grey)
    assert run_cli(*args, "--out", tmp_path / "memory") == 0
    assert run_cli(*args, "--stream", "--out", tmp_path / "stream") == 0
    assert "streamed (--stream)" in capsys.readouterr().out
    alphas = [(tmp_path / name / "alphas.jsonl").read_text() for name in ("memory", "stream")]
    assert alphas[0] == alphas[1]
    assert (tmp_path / "memory" / "genotype.json").read_text() == (tmp_path / "stream" / "genotype.json").read_text()

    restore = kill_after_checkpoints(monkeypatch, 1)
    assert run_cli(*args, "--stream", "--out", tmp_path / "killed") == 130
    restore()
    assert not (tmp_path / "killed" / "genotype.json").exists()
    assert run_cli("search", "--resume", tmp_path / "killed", "--no-progress", "--no-report") == 0
    assert (tmp_path / "killed" / "alphas.jsonl").read_text() == alphas[1]


def test_train_on_a_folder_with_a_test_split(grey: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_cli(*TRAIN, "--data-dir", grey, "--out", out) == 0
    summary = _json(out / "summary.json")
    assert summary["final_top1_err"] is not None and _json(out / "classes.json")[0] == "bag"
    assert run_cli("export", out, "--format", "torchscript") == 0  # the exported model names its outputs
    assert _json(out / "model.torchscript.pt.json")["classes"] == _json(out / "classes.json")


def test_train_without_test_split_needs_a_validation_part(rgb: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    expect_error(capsys, *TRAIN, "--data-dir", rgb, "--out", out,
                 contains=f"{rgb} has no test/ folder; add {rgb}/test/<class>/ or pass --valid-portion P")
    assert not out.exists()
    for name, extra in (("memory", ()), ("stream", ("--stream",))):
        run = tmp_path / name
        assert run_cli(*TRAIN, "--data-dir", rgb, "--valid-portion", "0.2", *extra, "--out", run) == 0
        summary = _json(run / "summary.json")
        assert summary["final_top1_err"] is None and summary["best_valid_top1_err"] is not None
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert "top1_err" not in metrics[-1] and metrics[-1]["valid_top1_err"] is not None
    assert "no test images (validation errors only)" in capsys.readouterr().out
    assert _json(tmp_path / "memory" / "summary.json")["best_valid_top1_err"] == \
        _json(tmp_path / "stream" / "summary.json")["best_valid_top1_err"]


def test_bad_folders_fail_in_one_line_before_any_run_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"

    def fails(data_dir: Path, contains: str, *extra: str, command=SEARCH) -> None:
        expect_error(capsys, *command, "--data-dir", data_dir, *extra, "--out", out, contains=contains)
        assert not out.exists()

    fails(tmp_path / "missing", "does not exist")
    (tmp_path / "flat").mkdir()
    fails(tmp_path / "flat", "has no train/ folder")
    root = write_image_folder(tmp_path / "d", n_per_class=12, classes=("boot",))
    fails(root, "only one class folder (boot)")
    (root / "train" / "coat").mkdir()
    fails(root, "holds no images")
    write_image_folder(root, n_per_class=12, classes=("boot", "coat"))
    bad = root / "train" / "coat" / "0004.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    fails(root, "coat/0004.png", command=TRAIN)
    fails(root, "pass --skip-bad-images")
    fails(root, "must be a multiple of 4", "--preset", "nb201-smoke", "--image-size", "10", "--skip-bad-images")
    fails(root, "the auxiliary head needs images of at least 21x21", "--auxiliary", "--valid-portion", "0.25",
          "--skip-bad-images", command=TRAIN)
    assert run_cli(*SEARCH, "--data-dir", root, "--skip-bad-images", "--batch-size", "4", "--out", out) == 0
    assert "left out 1 unreadable images" in capsys.readouterr().out
