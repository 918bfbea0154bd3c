"""End-to-end CLI tests of the NAS-Bench-201 space: search -> train -> info/draw/export, samplers, seeds, resume,
the NATS-Bench look-up of a search, and bad input (one line, exit 2, nothing written over)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from cli_helpers import expect_error, kill_after_checkpoints, run_cli
from gdas.engine.rundir import RunDir
from gdas.export import load_trained
from gdas.genotypes import load_genotype
from gdas.spaces.nb201 import benchmark
from gdas.spaces.nb201.cost import nb201_info
from gdas.spaces.nb201.genotype import NB201_REGISTRY, NB201Genotype
from test_nb201_benchmark import _tiny_archive
from test_nb201_imagenet16 import _write as write_imagenet16

SEARCH = ["search", "--preset", "nb201-smoke", "--no-progress", "--no-report"]
TRAIN = ["train", "--preset", "nb201-smoke", "--no-progress", "--no-report"]
BAD_OP = "|nor_conv_3x3~0|+|conv_9x9~0|none~1|+|none~0|none~1|none~2|"
MALFORMED = "|nor_conv_3x3~0|+|none~1|"  # node 2 lacks its edge from node 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One nb201-smoke search and the training run of its cell (shared: the tests below copy before editing)."""
    root = tmp_path_factory.mktemp("nb201")
    assert run_cli(*SEARCH, "--out", root / "search") == 0
    assert run_cli(*TRAIN, "--genotype", root / "search", "--out", root / "train") == 0
    return {"search": root / "search", "train": root / "train"}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _arch(out: Path) -> torch.Tensor:
    return RunDir(out).load_checkpoint()["task"]["model"]["arch"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.load
def test_search_train_info_draw_export(runs, tmp_path, capsys) -> None:
    search, train = runs["search"], runs["train"]
    genotype = load_genotype(search)
    assert isinstance(genotype, NB201Genotype) and len(genotype.edges) == 6
    summary = json.loads((search / "summary.json").read_text())
    assert summary["space"] == "nb201" and summary["genotype"] == str(genotype) and "benchmark" not in summary
    alphas = [json.loads(line) for line in (search / "alphas.jsonl").read_text().splitlines()]
    assert [a["epoch"] for a in alphas] == [0, 1] and len(alphas[-1]["cell"]) == 6
    assert alphas[-1]["ops"] == ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]

    trained = json.loads((train / "summary.json").read_text())
    assert load_genotype(train) == genotype and trained["genotype"] == str(genotype)
    small = nb201_info(genotype, "cifar10", C=8, N=1)  # the smoke network: C=8, N=1, 32x32x3, 10 classes
    assert trained["params_M"] == round(small["params_M"], 4)
    assert trained["mult_adds_M"] == pytest.approx(small["mult_adds_M"], abs=0.01)  # NB201 adds bias additions

    capsys.readouterr()
    for size, expected in (([], nb201_info(genotype, "cifar100")), (["--C", "8", "--N", "1"], small)):
        assert run_cli("info", search, "--dataset", "cifar100" if not size else "cifar10", "--json", *size) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["params_M"] == round(expected["params_M"], 4)
        assert info["mult_adds_M"] == round(expected["mult_adds_M"], 4)
        assert (info["C"], info["N"], info["genotype"]) == (expected["C"], expected["N"], str(genotype))

    assert run_cli("draw", search, "--out", tmp_path / "cells", "--formats", "svg") == 0
    dot = (tmp_path / "cells" / "cell.dot").read_text()
    assert all(f'"{src}" -> "{dst}" [fillcolor=gray, label="{op}"]' in dot for op, src, dst in genotype.edges)

    out = tmp_path / "model.pt"
    assert run_cli("export", train, "--format", "torchscript", "--out", out) == 0
    scripted = torch.jit.load(str(out))
    eager, args = load_trained(train)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(scripted(x), eager(x), atol=1e-5) and scripted(x).shape == (3, 10)
    assert json.loads(Path(f"{out}.json").read_text())["genotype"] == str(genotype) == args["genotype"]


@pytest.mark.parametrize("sampler", ["darts", "gdas-noaccel"])
def test_other_samplers_search_the_nb201_space(sampler, tmp_path, capsys) -> None:
    out = tmp_path / sampler
    assert run_cli(*SEARCH, "--sampler", sampler, "--epochs", "1", "--steps-per-epoch", "2", "--out", out) == 0
    assert json.loads((out / "config.json").read_text())["config"]["sampler"] == sampler
    assert isinstance(load_genotype(out), NB201Genotype)
    probs = torch.tensor(json.loads((out / "alphas.jsonl").read_text().splitlines()[-1])["cell"])
    assert probs.shape == (6, 5) and torch.allclose(probs.sum(1), torch.ones(6))
    assert not torch.allclose(probs, torch.full((6, 5), 0.2), atol=1e-7)  # A moved: its steps ran


def test_multi_seed_nb201(tmp_path, capsys) -> None:
    out = tmp_path / "seeds"
    assert run_cli(*SEARCH, "--epochs", "1", "--seeds", "0", "1", "--select-by", "search", "--out", out) == 0
    table = json.loads((out / "seeds.json").read_text())
    accs = {row["seed"]: row["valid_acc"] for row in table["seeds"]}
    assert set(accs) == {0, 1} and accs[table["best_seed"]] == max(accs.values())
    for seed in (0, 1):
        assert json.loads((out / f"seed-{seed}" / "summary.json").read_text())["space"] == "nb201"
    best = out / f"seed-{table['best_seed']}"
    assert (out / "genotype.json").read_text() == (best / "genotype.json").read_text()
    assert isinstance(load_genotype(out), NB201Genotype)


def test_killed_nb201_search_resumes_to_the_same_result(tmp_path, monkeypatch, capsys) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    args = (*SEARCH, "--epochs", "3")
    assert run_cli(*args, "--out", full) == 0
    restore = kill_after_checkpoints(monkeypatch, 2)
    assert run_cli(*args, "--out", killed) == 130
    restore()
    assert not (killed / "genotype.json").exists()
    assert run_cli("search", "--resume", killed, "--no-progress", "--no-report") == 0
    assert torch.equal(_arch(full), _arch(killed))
    assert (full / "genotype.json").read_text() == (killed / "genotype.json").read_text()
    epochs = [json.loads(line)["epoch"] for line in (killed / "alphas.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]


# -- the NATS-Bench look-up of a search ------------------------------------------------------------------
def test_search_records_the_benchmark_accuracies(runs, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(benchmark, "_APIS", {})
    derived = str(load_genotype(runs["search"]))  # the same search again derives the same cell (CPU, seed 0)
    others = [a for a in NB201_REGISTRY.values() if a != derived][:1]
    archive = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    _tiny_archive(archive, others + [derived])  # built with nats_bench's own classes; index 1 is the derived cell
    out = tmp_path / "run"
    assert run_cli("search", "--preset", "nb201-smoke", "--no-progress", "--benchmark", archive, "--out", out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["genotype"] == derived
    # _tiny_archive's numbers: 10 * len(dataset) + len(set name) + index + 0.25 (mean over its two seeds).
    assert summary["benchmark"] == {"name": "NATS-Bench", "arch": derived, "index": 1, "epochs": 200, "results": {
        "cifar10": {"valid": 130 + 7 + 1.25, "test": 70 + 8 + 1.25},
        "cifar100": {"valid": 80 + 7 + 1.25, "test": 80 + 6 + 1.25},
        "imagenet16-120": {"valid": 140 + 7 + 1.25, "test": 140 + 6 + 1.25}}}
    assert "NATS-Bench (index 1, 200 epochs, mean over seeds): cifar10 valid 138.25% test 79.25%" in \
        capsys.readouterr().out
    page = (out / "report.html").read_text()
    assert "True accuracy (NATS-Bench)" in page and '<td>cifar100</td><td class="num">88.25</td>' in page

    assert run_cli("nb201", "query", out, "--benchmark", archive, "--dataset", "cifar100", "--json") == 0
    assert json.loads(capsys.readouterr().out)["results"] == {"cifar100": {"valid": 88.25, "test": 87.25}}


def test_a_benchmark_that_fails_to_load_leaves_the_search_complete(tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("nats_bench")
    monkeypatch.setattr(benchmark, "_APIS", {})
    (tmp_path / "empty").mkdir()  # exists, so the up-front check passes; nats_bench cannot load it
    out = tmp_path / "run"
    assert run_cli(*SEARCH, "--epochs", "1", "--benchmark", tmp_path / "empty", "--out", out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and "cannot load NATS-Bench" in summary["benchmark"]["error"]
    err = capsys.readouterr().err
    assert "gdas: warning: no NATS-Bench look-up (cannot load" in err and "Traceback" not in err


def test_benchmark_option_is_checked_before_the_run(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "run"
    expect_error(capsys, *SEARCH, "--benchmark", tmp_path / "nowhere", "--out", out,
                 contains="does not exist; download NATS-tss-v1_0-3ffb9-simple")
    expect_error(capsys, "search", "--preset", "smoke", "--benchmark", tmp_path, "--out", out,
                 contains="darts space has no tabular benchmark")
    expect_error(capsys, *SEARCH, "--steps", "4", "--benchmark", tmp_path, "--out", out, contains="--steps 3")
    expect_error(capsys, *SEARCH, "--seeds", "0", "1", "--benchmark", tmp_path / "nowhere", "--out", out,
                 contains="does not exist")
    monkeypatch.setitem(sys.modules, "nats_bench", None)  # `import nats_bench` raises ImportError
    expect_error(capsys, *SEARCH, "--benchmark", tmp_path, "--out", out, contains="pip install 'gdas-nas[nb201]'")
    assert not out.exists()


def test_resume_checks_the_benchmark_and_may_add_one(runs, tmp_path, monkeypatch, capsys) -> None:
    killed = tmp_path / "killed"
    restore = kill_after_checkpoints(monkeypatch, 1)
    assert run_cli(*SEARCH, "--out", killed) == 130
    restore()
    capsys.readouterr()
    before = _files(killed)
    expect_error(capsys, "search", "--resume", killed, "--benchmark", tmp_path / "nowhere", contains="does not exist")
    assert _files(killed) == before
    archive = tmp_path / "archive"
    _tiny_archive(archive, [str(load_genotype(runs["search"]))])
    monkeypatch.setattr(benchmark, "_APIS", {})
    assert run_cli("search", "--resume", killed, "--no-progress", "--no-report", "--benchmark", archive) == 0
    assert json.loads((killed / "summary.json").read_text())["benchmark"]["index"] == 0


# -- bad input: one line, exit 2, nothing written over --------------------------------------------------
@pytest.mark.parametrize("arch,contains", [(BAD_OP, "unknown NB201 op 'conv_9x9'"),
                                           (MALFORMED, "needs one edge from each of nodes [0, 1]")])
def test_bad_nb201_strings(arch, contains, runs, tmp_path, capsys) -> None:
    expect_error(capsys, *TRAIN, "--genotype", arch, "--out", tmp_path / "t", contains=contains)
    expect_error(capsys, "info", arch, "--json", contains=contains)
    expect_error(capsys, "draw", arch, "--out", tmp_path / "cells", contains=contains)
    expect_error(capsys, "nb201", "query", arch, "--benchmark", tmp_path / "nowhere", contains=contains)
    assert not (tmp_path / "t").exists() and not (tmp_path / "cells").exists()

    train = tmp_path / "train"  # a training run whose checkpoint names a broken cell
    shutil.copytree(runs["train"], train)
    name = "best.pt" if (train / "best.pt").exists() else "checkpoint.pt"
    state = torch.load(train / name, weights_only=True)
    state["task"]["genotype"]["arch"] = arch
    torch.save(state, train / name)
    before = _files(train)
    expect_error(capsys, "export", train, "--format", "torchscript", contains=contains)
    assert _files(train) == before
    expect_error(capsys, "export", arch, contains="is not a directory")


def test_genotype_of_the_other_space_is_refused(tmp_path, capsys) -> None:
    # A named space that is not the genotype's is refused; without one the preset's counterpart is taken.
    expect_error(capsys, "train", "--preset", "smoke", "--space", "darts", "--genotype", NB201_REGISTRY["nb201-resnet"],
                 "--out", tmp_path / "a", contains="is a nb201 genotype, but this run builds darts networks")
    expect_error(capsys, *TRAIN, "--space", "nb201", "--genotype", "GDAS", "--out", tmp_path / "b",
                 contains="is a darts genotype, but this run builds nb201 networks")
    expect_error(capsys, "nb201", "query", "GDAS", "--benchmark", tmp_path, contains="is a darts genotype; NATS-Bench holds NB201 cells")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_resume_of_a_darts_run_relabelled_nb201(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "darts"
    restore = kill_after_checkpoints(monkeypatch, 1)
    assert run_cli("search", "--preset", "smoke", "--no-progress", "--no-report", "--out", out) == 130
    restore()
    capsys.readouterr()
    stored = json.loads((out / "config.json").read_text())
    stored["config"]["space"] = "nb201"
    (out / "config.json").write_text(json.dumps(stored))
    before = _files(out)
    expect_error(capsys, "search", "--resume", out, "--no-progress", contains="checkpoint is of a darts search")
    assert _files(out) == before


def test_missing_and_truncated_imagenet16(tmp_path, capsys) -> None:
    data, out = tmp_path / "ImageNet16", tmp_path / "run"
    write_imagenet16(data)
    os.remove(data / "val_data")
    expect_error(capsys, "search", "--preset", "nb201-imagenet16", "--data-dir", data, "--out", out,
                 contains="is missing val_data")
    write_imagenet16(data)
    raw = (data / "train_data_batch_3").read_bytes()
    (data / "train_data_batch_3").write_bytes(raw[: len(raw) // 2])
    expect_error(capsys, "search", "--preset", "nb201-imagenet16", "--data-dir", data, "--out", out,
                 contains="train_data_batch_3 is truncated or corrupt")
    assert not out.exists()


def test_nb201_query_without_the_file_or_the_package(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(benchmark, "_APIS", {})
    expect_error(capsys, "nb201", "query", "nb201-resnet", "--benchmark", tmp_path / "nowhere",
                 contains="does not exist; download NATS-tss-v1_0-3ffb9-simple")
    monkeypatch.setitem(sys.modules, "nats_bench", None)
    expect_error(capsys, "nb201", "query", "nb201-resnet", "--benchmark", tmp_path,
                 contains="needs the nats_bench package; pip install 'gdas-nas[nb201]'")
