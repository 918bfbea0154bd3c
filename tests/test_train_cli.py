"""End-to-end tests of `gdas train`, `gdas info` and `gdas export`: smoke, a tiny JPEG tree, bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from cli_helpers import expect_error, run_cli
from gdas.cli.train import print_summary
from gdas.configs.train import TrainConfig
from gdas.engine.distributed import Context
from gdas.export import load_trained
from gdas.genotypes import REGISTRY, save_genotype
from gdas.engine.rundir import RunDir, stored_config
from gdas.train import KIND, TrainTask, batch_source, read_split

FAST = ["--preset", "smoke", "--no-progress", "--no-report", "--device", "cpu", "--batch", "8",
        "--synthetic-train", "16", "--synthetic-test", "8"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """Three epochs with a quarter of the training images held out for validation."""
    out = tmp_path_factory.mktemp("train") / "smoke"
    assert run_cli("train", *FAST, "--epochs", "3", "--valid-portion", "0.25", "--out", out) == 0
    return out


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_smoke_training_writes_a_complete_run(smoke_run: Path, capsys):
    for name in ("config.json", "genotype.json", "split.json", "metrics.jsonl", "checkpoint.pt", "best.pt",
                 "summary.json"):
        assert (smoke_run / name).is_file(), name
    assert list((smoke_run / "tb").glob("events.out.tfevents.*"))
    config = json.loads((smoke_run / "config.json").read_text())
    assert config["kind"] == "train" and config["config"]["preset"] == "smoke"
    split = json.loads((smoke_run / "split.json").read_text())
    assert len(split["valid"]) == 4 and sorted(split["train"] + split["valid"]) == list(range(16))
    metrics = _records(smoke_run / "metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [0, 1, 2]
    assert metrics[0]["drop_path_prob"] == 0.0 and metrics[1]["drop_path_prob"] == pytest.approx(0.2 / 3)
    assert metrics[0]["lr"] == pytest.approx(0.025) and metrics[2]["lr"] == pytest.approx(0.025 / 4)
    summary = json.loads((smoke_run / "summary.json").read_text())
    assert summary["genotype"] == str(REGISTRY["GDAS"]) and summary["complete"]
    # The headline is the test error of the last weights; the best epoch is picked on validation only.
    assert (summary["final_top1_err"], summary["final_top5_err"]) == (metrics[-1]["top1_err"], metrics[-1]["top5_err"])
    picked = min(metrics, key=lambda m: (m["valid_top1_err"], m["epoch"]))  # the earliest of the lowest
    assert summary["best_epoch"] == picked["epoch"] and summary["best_valid_top1_err"] == picked["valid_top1_err"]
    assert (summary["best_test_top1_err"], summary["best_test_top5_err"]) == (picked["top1_err"], picked["top5_err"])
    assert "best_top1_err" not in summary
    assert 0 < summary["params_M"] < 0.2 and summary["mult_adds_M"] > 1
    best = RunDir(smoke_run).load_checkpoint("best.pt")
    assert best["epoch"] == picked["epoch"] and best["task"]["genotype"] == REGISTRY["GDAS"].to_json()
    # best.pt holds the weights those figures came from.
    cfg, cpu = stored_config(smoke_run, KIND, TrainConfig), torch.device("cpu")
    task = TrainTask(cfg, REGISTRY["GDAS"], batch_source(cfg, cpu, Context(), read_split(RunDir(smoke_run))), cpu,
                     show_progress=False)
    task.model.load_state_dict(best["task"]["model"])
    assert task.evaluate(valid=True)["valid_top1_err"] == pytest.approx(picked["valid_top1_err"])
    assert task.evaluate()["top1_err"] == pytest.approx(picked["top1_err"])
    print_summary(summary, smoke_run)
    printed = capsys.readouterr().out
    assert f"best validation top-1 error {100 * picked['valid_top1_err']:.2f}% at epoch {picked['epoch']}" in printed


def test_without_a_validation_part_nothing_is_picked_and_export_takes_the_last_weights(tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", *FAST, "--out", out) == 0
    assert "best validation" not in capsys.readouterr().out
    assert not (out / "best.pt").exists() and not (out / "split.json").exists()
    metrics = _records(out / "metrics.jsonl")
    assert not any(k.startswith("valid") for m in metrics for k in m)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_top1_err"] == metrics[-1]["top1_err"] and not any(k.startswith("best") for k in summary)
    model, args = load_trained(out)
    assert args["source"] == "checkpoint.pt"
    last = RunDir(out).load_checkpoint()["task"]["model"]
    assert all(torch.equal(v, last[k]) for k, v in model.model.state_dict().items())


def test_genotype_from_a_file_and_from_a_run_directory(tmp_path: Path, capsys):
    search_like = tmp_path / "search-run"
    search_like.mkdir()
    save_genotype(REGISTRY["DARTS_V2"], search_like / "genotype.json")
    assert run_cli("train", *FAST, "--epochs", "1", "--genotype", search_like, "--out", tmp_path / "a") == 0
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["genotype"] == str(REGISTRY["DARTS_V2"])
    assert run_cli("train", *FAST, "--epochs", "1", "--genotype", search_like / "genotype.json", "--C", "8",
                   "--out", tmp_path / "b") == 0
    assert "genotype: normal:" in capsys.readouterr().out


def test_imagenet_layout_on_a_tiny_jpeg_tree(tmp_path: Path, capsys):
    from test_imagenet import write_tree

    root = write_tree(tmp_path / "imagenet")
    out = tmp_path / "run"
    assert run_cli("train", *FAST, "--dataset", "imagenet", "--data-dir", root, "--image-size", "32",
                   "--no-auxiliary", "--workers", "0", "--batch", "4", "--epochs", "1", "--out", out) == 0
    metrics = _records(out / "metrics.jsonl")
    assert len(metrics) == 1 and metrics[0]["top5_err"] == 0.0  # 3 classes: the top 5 holds every class
    loaded, args = load_trained(out)
    assert args["num_classes"] == 3 and args["image_size"] == 32 and args["dataset"] == "imagenet"
    assert loaded(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    assert "test top-1 error" in capsys.readouterr().out


def _info(capsys, *argv: str) -> dict:
    assert run_cli("info", *argv, "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_info_reproduces_the_paper_sizes(capsys):
    cifar = _info(capsys, "GDAS", "--dataset", "cifar10")
    assert cifar["params_M"] == pytest.approx(3.37, abs=0.01) and (cifar["C"], cifar["N"]) == (36, 6)
    imagenet = _info(capsys, "GDAS", "--dataset", "imagenet")
    assert imagenet["params_M"] == pytest.approx(5.3, abs=0.05) and imagenet["mult_adds_M"] < 600
    frc = _info(capsys, "GDAS_FRC", "--dataset", "imagenet")
    assert frc["C"] == 52 and frc["params_M"] == pytest.approx(4.4, abs=0.05) and frc["mult_adds_M"] < 600
    small = _info(capsys, "GDAS", "--dataset", "cifar100", "--C", "16", "--N", "2")
    assert small["params_M"] < cifar["params_M"]
    assert run_cli("info", "GDAS", "--dataset", "cifar10") == 0
    text = capsys.readouterr().out
    assert "3.37 M without the auxiliary head" in text and "mult-adds" in text


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.load
def test_export_round_trip_torchscript_and_onnx(smoke_run: Path, tmp_path: Path, capsys):
    model, args = load_trained(smoke_run)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    assert args["source"] == "best.pt"

    assert run_cli("export", smoke_run, "--format", "torchscript", "--out", tmp_path / "net.pt") == 0
    scripted = torch.jit.load(str(tmp_path / "net.pt"))
    with torch.no_grad():
        assert torch.allclose(scripted(x), expected, atol=1e-4)

    reference = pytest.importorskip("onnx.reference")
    assert run_cli("export", smoke_run, "--format", "onnx") == 0
    path = smoke_run / "model.onnx"
    assert str(path) in capsys.readouterr().out
    session = reference.ReferenceEvaluator(str(path))
    got = session.run(None, {"images": x.numpy()})[0]  # batch 3: the exported batch axis is dynamic
    assert got.shape == (3, 10)
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-4)
    meta = json.loads((smoke_run / "model.onnx.json").read_text())
    assert meta["input"] == ["batch", 3, 32, 32] and len(meta["normalize"]["mean"]) == 3


def test_bad_genotypes_and_sizes(tmp_path: Path, capsys):
    forward = tmp_path / "forward.json"
    forward.write_text(json.dumps({"normal": [[["sep_conv_3x3", 0], ["sep_conv_3x3", 3]]], "reduce": "FIXED"}))
    expect_error(capsys, "train", *FAST, "--genotype", forward, "--out", tmp_path / "a", contains="earlier node")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"normal": [[["conv_9x9", 0], ["sep_conv_3x3", 1]]], "reduce": "FIXED"}))
    expect_error(capsys, "train", *FAST, "--genotype", unknown, "--out", tmp_path / "b", contains="unknown op")
    expect_error(capsys, "train", *FAST, "--genotype", "GDAS_FRC", "--C", "18", "--out", tmp_path / "c",
                 contains="divisible by 8")
    expect_error(capsys, "train", *FAST, "--genotype", "GDAS_RNN", "--out", tmp_path / "d", contains="recurrent")
    expect_error(capsys, "info", "GDAS_FRC", "--C", "18", contains="divisible by 8")
    expect_error(capsys, "info", unknown, contains="unknown op")
    expect_error(capsys, "export", tmp_path / "nothing", contains="not a directory")
    expect_error(capsys, "train", *FAST, "--valid-portion", "1", "--out", tmp_path / "e", contains="(0, 1)")
    expect_error(capsys, "train", *FAST, "--valid-portion", "0.01", "--out", tmp_path / "f",
                 contains="cannot split 16 training images with --valid-portion 0.01")
    assert not any((tmp_path / name).exists() for name in "abcdef")


def test_imagenet_folder_without_images(tmp_path: Path, capsys):
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        (root / split / "n01440764").mkdir(parents=True)
    args = (*FAST, "--dataset", "imagenet", "--data-dir", root, "--image-size", "32", "--no-auxiliary",
            "--workers", "0", "--out", tmp_path / "run")
    expect_error(capsys, "train", *args, "--valid-portion", "0.1", contains="ImageNet folders are not supported")
    expect_error(capsys, "train", *args, contains="has no images")
    (root / "train" / "n01440764").rmdir()
    expect_error(capsys, "train", *args, contains="no class folders")
    assert not (tmp_path / "run").exists()


def test_existing_runs_and_foreign_checkpoints_are_never_overwritten(smoke_run: Path, tmp_path: Path, capsys):
    before = {p.name: p.read_bytes() for p in smoke_run.iterdir() if p.is_file() and not p.name.startswith("model")}
    capsys.readouterr()
    expect_error(capsys, "train", *FAST, "--out", smoke_run, contains="already holds a run")
    expect_error(capsys, "train", "--resume", smoke_run, contains="already complete")
    after = {p.name: p.read_bytes() for p in smoke_run.iterdir() if p.is_file() and not p.name.startswith("model")}
    assert before == after

    own, other = tmp_path / "own", tmp_path / "other"
    assert run_cli("train", *FAST, "--epochs", "2", "--out", own) == 0
    assert run_cli("train", *FAST, "--epochs", "1", "--genotype", "DARTS_V2", "--out", other) == 0
    (own / "summary.json").unlink()  # as if killed after its last checkpoint
    foreign = (other / "checkpoint.pt").read_bytes()
    (own / "checkpoint.pt").write_bytes(foreign)
    capsys.readouterr()
    expect_error(capsys, "train", "--resume", own, contains="another genotype")
    assert (own / "checkpoint.pt").read_bytes() == foreign
    expect_error(capsys, "train", "--resume", own, "--genotype", "DARTS_V2", contains="--genotype")


def test_onnx_export_without_the_onnx_package(smoke_run: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    expect_error(capsys, "export", smoke_run, "--format", "onnx", "--out", tmp_path / "m.onnx",
                 contains="pip install 'gdas-nas[export]'")
    assert not (tmp_path / "m.onnx").exists()
