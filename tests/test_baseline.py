"""`gdas search --random-baseline K`: random cells drawn by the space's own rule, trained with the searched cells'
selection protocol on the same D_T / D_V, the searched cells ranked among them (one seed, several, --select-by
search, --parallel, kill and resume, the report, Python)."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

import gdas
from cli_helpers import die_before_checkpoint, expect_error, run_cli
from gdas.configs import base as cfgbase
from gdas.configs.search import SEARCH_PRESETS, SearchConfig
from gdas.engine.rundir import RunDir
from gdas.errors import GdasError
from gdas.genotypes import genotype_from_json
from gdas.nn.labels import index_of
from gdas.reporting.baseline import baseline_sections
from gdas.reporting.runview import load_runs
from gdas.spaces import get_space
from gdas.spaces.darts.derive import derive_genotype
from gdas.spaces.darts.ops import PRIMITIVES
from gdas.spaces.nb201.derive import derive_nb201
from gdas.spaces.nb201.ops import NB201_OPS

# One thread per process: sequential and parallel runs are then bit for bit comparable.
SMOKE = ["--preset", "smoke", "--no-progress", "--no-report", "--epochs", "1", "--steps-per-epoch", "2",
         "--threads", "1"]
SINGLE = ["search", *SMOKE, "--random-baseline", "3"]
MULTI = ["search", *SMOKE, "--seeds", "0", "1", "--select-by", "search", "--random-baseline", "2"]


def _read(path: Path) -> Any:
    return json.loads(path.read_text())


def _cfg(out: Path) -> SearchConfig:
    stored = _read(out / "multiseed.json")["config"] if (out / "multiseed.json").exists() else \
        _read(out / "config.json")["config"]
    return cfgbase.from_json(SearchConfig, stored)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("baseline") / "single"
    assert run_cli(*SINGLE, "--out", out) == 0
    return out


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("baseline") / "multi"
    assert run_cli(*MULTI, "--out", out) == 0
    return out


# -- the space's rule ---------------------------------------------------------------------------------------
def _darts_probs(cell) -> torch.Tensor:
    """softmax(A)-like rows under which the chosen (input, op) pairs are the most likely ones."""
    rows = []
    for i, node in enumerate(cell):
        for j in range(2 + i):
            row = torch.full((len(PRIMITIVES),), 0.01)
            row[PRIMITIVES.index("none")] = 0.5  # `none` is never chosen, however likely
            for op, src in node:
                if src == j:
                    row[PRIMITIVES.index(op)] = 0.4
            rows.append(row)
    return torch.stack(rows)


def test_random_cells_are_what_derivation_yields_and_the_seed_fixes_them() -> None:
    darts, nb201 = get_space("darts"), get_space("nb201")
    cfg = SEARCH_PRESETS["smoke"]
    draws = [darts.random_genotype(torch.Generator().manual_seed(s), cfg) for s in range(300)]
    assert darts.random_genotype(torch.Generator().manual_seed(7), cfg) == draws[7]
    for g in draws[:40]:  # derivation, given A that favours exactly this cell, derives it back
        assert derive_genotype(_darts_probs(g.normal), _darts_probs(g.reduce), steps=cfg.steps) == g
    ops = {op for g in draws for cell in (g.normal, g.reduce) for node in cell for op, _ in node}
    assert ops == set(PRIMITIVES) - {"none"}
    frc = darts.random_genotype(torch.Generator().manual_seed(0), SEARCH_PRESETS["cifar10-frc"])
    assert frc.fixed_reduction  # --frc: the reduction cell is the fixed one
    limited = [darts.random_genotype(torch.Generator().manual_seed(s), SearchConfig(max_skip=0)) for s in range(50)]
    assert all("skip_connect" not in g.cell_ops()["normal"] for g in limited)
    assert any("skip_connect" in g.cell_ops()["reduce"] for g in limited)  # --max-skip limits the normal cell

    ncfg = SEARCH_PRESETS["nb201-smoke"]
    cells = [nb201.random_genotype(torch.Generator().manual_seed(s), ncfg) for s in range(300)]
    assert nb201.random_genotype(torch.Generator().manual_seed(7), ncfg) == cells[7]
    for g in cells[:40]:  # one op per edge, `none` included: the argmax of its one-hot A
        onehot = torch.tensor([[float(op == chosen) for op in NB201_OPS] for chosen, _, _ in g.edges])
        assert derive_nb201(onehot) == g
    assert {op for g in cells for op, _, _ in g.edges} == set(NB201_OPS)
    capped = [nb201.random_genotype(torch.Generator().manual_seed(s), SearchConfig(space="nb201", steps=3,
                                                                                    max_skip=1)) for s in range(50)]
    assert all(g.cell_ops()["cell"].count("skip_connect") <= 1 for g in capped)
    assert get_space("rnn").random_genotype is None


# -- one seed -----------------------------------------------------------------------------------------------
def _check_retrain(cell_dir: Path, search_dir: Path, seed: int) -> dict[str, Any]:
    """The cell's retrain ran on the search's D_T, was measured on its D_V and never on the test set."""
    select = cell_dir / "select"
    split, search_split = _read(select / "split.json"), _read(search_dir / "split.json")
    assert (split["train"], split["valid"]) == (search_split["train"], search_split["valid"])
    cfg = _read(select / "config.json")["config"]
    assert (cfg["epochs"], cfg["seed"], cfg["C"], cfg["N"], cfg["auxiliary"]) == (1, seed, 8, 1, False)
    assert _read(select / "genotype.json") == _read(cell_dir / "genotype.json")
    for record in map(json.loads, (select / "metrics.jsonl").read_text().splitlines()):
        assert not {"top1_err", "test_loss"} & set(record)
    summary = _read(select / "summary.json")
    assert summary["final_top1_err"] is None and summary["valid_images"] == len(search_split["valid"])
    return summary


def _check_record(out: Path, record: dict[str, Any], searched: dict[int, Path]) -> None:
    """Every number of `record` recomputed from the run's files (and `gdas info`)."""
    cfg = _cfg(out)
    space = get_space(cfg.space)
    split_dir = next(iter(searched.values()))
    assert record["cells"] == cfg.random_baseline == len(record["random"])
    errors = []
    for i, row in enumerate(record["random"]):
        folder = out / f"random-{i}"
        drawn = space.random_genotype(torch.Generator().manual_seed(i), cfg)
        assert genotype_from_json(_read(folder / "genotype.json")) == drawn and row["genotype"] == str(drawn)
        assert (row["index"], row["seed"], row["dir"]) == (i, i, f"random-{i}")
        assert row["valid_err"] == _check_retrain(folder, split_dir, i)["final_valid_top1_err"]
        errors.append(row["valid_err"])
    assert record["valid_err_mean"] == pytest.approx(sum(errors) / len(errors))
    assert record["valid_err_std"] == pytest.approx(statistics.stdev(errors))
    assert (record["valid_err_min"], record["valid_err_max"]) == (min(errors), max(errors))
    assert [row["seed"] for row in record["searched"]] == list(searched)
    for row in record["searched"]:
        err = _check_retrain(searched[row["seed"]], split_dir, row["seed"])["final_valid_top1_err"]
        assert row["valid_err"] == err
        assert row["rank"] == 1 + len([e for e in errors if e < err]) and row["ties"] == errors.count(err)


def test_one_seed_ranks_its_retrained_cell_among_random_ones(single: Path, capsys) -> None:
    capsys.readouterr()
    summary = _read(single / "summary.json")
    record = summary["random_baseline"]
    _check_record(single, record, {0: single})
    assert record["searched"][0]["kept"] is None and record["select_epochs"] == 1 and record["split_seed"] == 0
    assert record["size"] == {"C": 36, "N": 6, "dataset": "synthetic", "channels": 3, "input_size": 32,
                              "num_classes": 10}  # the size --cost counts at: the darts training preset's
    for row in record["searched"] + record["random"][:1]:  # sizes as `gdas info` counts them
        assert run_cli("info", single / row["dir"], "--dataset", "synthetic", "--json") == 0
        info = json.loads(capsys.readouterr().out)
        assert row["params_M"] == pytest.approx(info["params_M"], abs=1e-4)
        assert row["mult_adds_M"] == pytest.approx(info["mult_adds_M"], abs=0.01)
    # The finished run prints the table again when the same command finds it complete.
    assert run_cli(*SINGLE, "--out", single, "--auto-resume") == 0
    out = capsys.readouterr().out
    assert "random baseline: 3 random cells" in out
    searched_line = next(line for line in out.splitlines() if line.startswith("searched "))
    assert f"{record['searched'][0]['rank']}/4" in searched_line
    assert all(any(line.startswith(f"random-{i} ") for line in out.splitlines()) for i in range(3))


def test_several_seeds_with_select_by_search_retrain_and_rank_every_seed(multi: Path) -> None:
    table = _read(multi / "seeds.json")
    assert table["select_by"] == "search" and table["select_epochs"] is None  # the search still keeps the cell
    best = max(table["seeds"], key=lambda r: (r["valid_acc"], -r["seed"]))["seed"]
    assert table["best_seed"] == best
    record = table["random_baseline"]
    _check_record(multi, record, {0: multi / "seed-0", 1: multi / "seed-1"})
    assert [row["kept"] for row in record["searched"]] == [s == best for s in (0, 1)]
    assert [row["dir"] for row in record["searched"]] == ["seed-0", "seed-1"]


def test_parallel_equals_sequential(single: Path, tmp_path: Path) -> None:
    out = tmp_path / "par"
    assert run_cli(*SINGLE, "--parallel", "2", "--out", out) == 0
    assert _read(out / "summary.json")["random_baseline"] == _read(single / "summary.json")["random_baseline"]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return RunDir(run).load_checkpoint()["task"]["model"]


def test_a_run_killed_in_the_baseline_resumes_to_the_uninterrupted_result(single: Path, tmp_path: Path,
                                                                          monkeypatch, capsys) -> None:
    out = tmp_path / "killed"
    with monkeypatch.context() as patch:  # checkpoints: the search, its retrain, random-0, random-1 (killed)
        die_before_checkpoint(patch, 4)
        assert run_cli(*SINGLE, "--out", out) == 130
    assert not (out / "summary.json").exists() and (out / "random-1" / "select" / "config.json").exists()
    assert not (out / "random-1" / "select" / "checkpoint.pt").exists()
    capsys.readouterr()
    expect_error(capsys, *SINGLE, "--out", out, contains=f"continue it with gdas search --resume {out} ")
    expect_error(capsys, "search", *SMOKE, "--out", out / "random-1" / "select",
                 contains=f"gdas search --resume {out} ")
    assert run_cli("search", "--resume", out, "--no-progress", "--no-report") == 0
    assert _read(out / "summary.json")["random_baseline"] == _read(single / "summary.json")["random_baseline"]
    for part in ("select", "random-0/select", "random-1/select", "random-2/select"):
        got, want = _weights(out / part), _weights(single / part)
        assert all(torch.equal(got[k], want[k]) for k in want), part


def test_a_multi_seed_search_killed_in_the_baseline_auto_resumes(multi: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "auto"
    with monkeypatch.context() as patch:  # seed 0, its retrain, seed 1, its retrain, random-0 (killed)
        die_before_checkpoint(patch, 5)
        assert run_cli(*MULTI, "--out", out, "--auto-resume") == 130
    assert not (out / "seeds.json").exists() and (out / "random-0" / "genotype.json").exists()
    assert run_cli(*MULTI, "--out", out, "--auto-resume") == 0
    assert _read(out / "seeds.json")["random_baseline"] == _read(multi / "seeds.json")["random_baseline"]


def test_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    expect_error(capsys, *SINGLE[:-1], "-1", "--out", tmp_path / "a", contains="--random-baseline must be at least 0")
    for command in (["search-rnn"], ["search", "--task", "lm"]):
        expect_error(capsys, *command, "--preset", "smoke", "--random-baseline", "2", "--out", tmp_path / "b",
                     contains="the rnn space has no image retrain")
    expect_error(capsys, *SINGLE, "--parallel", "4", "--out", tmp_path / "c",
                 contains="--parallel 4 is larger than the number of seeds (1) and of --random-baseline cells (3)")
    with pytest.raises(GdasError, match="^random_baseline must be at least 0"):
        gdas.search(preset="smoke", random_baseline=-2, out=tmp_path / "d")
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_the_report_shows_the_random_cells(single: Path, multi: Path) -> None:
    assert run_cli("report", single) == 0
    for out, searched in ((single, 1), (multi, 2)):  # a multi-seed folder's section once, for both seeds
        html = (out / "report.html").read_text() if out == single else baseline_sections(load_runs([out])[0])
        assert html.count('id="random-baseline') == 1
        section = html[html.index('id="random-baseline"'):]
        section = section[:section.index("</section>")]
        assert (out / "plots" / "random_baseline.png").stat().st_size > 0
        assert 'alt="D_V error of' in section and "data:image/png;base64," in section
        record = _read(out / ("summary.json" if out == single else "seeds.json"))["random_baseline"]
        for row in record["random"] + record["searched"]:
            assert f"{100 * row['valid_err']:.2f}" in section
        assert section.count('<tr class=searched>') == searched


def test_python_search_with_a_random_baseline_in_the_nb201_space(tmp_path: Path) -> None:
    result = gdas.search(preset="nb201-smoke", random_baseline=2, out=tmp_path / "nb201", epochs=1,
                         steps_per_epoch=2, threads=1)
    record = result.summary["random_baseline"]
    assert record == _read(tmp_path / "nb201" / "summary.json")["random_baseline"]
    _check_record(tmp_path / "nb201", record, {0: tmp_path / "nb201"})
    assert record["size"]["C"] == 16 and record["size"]["N"] == 5  # NB201's own training size


def test_a_module_space_draws_random_choice_maps(tmp_path: Path, capsys) -> None:
    """The MobileNet-style space (written with gdas.nn) is ranked against uniformly random choice maps."""
    space = get_space("mobilenet")
    cfg = SEARCH_PRESETS["mobilenet-smoke"]
    drawn = [space.random_genotype(torch.Generator().manual_seed(i), cfg) for i in (0, 0, 1)]
    assert drawn[0] == drawn[1] and drawn[0].to_json() != drawn[2].to_json()
    supernet = space.build_supernet(cfg, 10, 3)
    assert set(drawn[2].choices) == set(supernet.labels)  # every label drawn, each a candidate of its own choice
    for label, choice in drawn[2].choices.items():
        index_of(supernet.block(label), label, choice)  # raises on a value the choice does not hold
    out = tmp_path / "mobile"
    assert run_cli("search", "--preset", "mobilenet-smoke", "--no-progress", "--no-report", "--epochs", "1",
                   "--steps-per-epoch", "1", "--select-epochs", "1", "--threads", "1", "--random-baseline", "2",
                   "--out", out) == 0
    record = _read(out / "summary.json")["random_baseline"]
    assert record["cells"] == 2 and len(record["searched"]) == 1 and 1 <= record["searched"][0]["rank"] <= 3
    assert {cell["genotype"] for cell in record["random"]} == {str(space.from_json(_read(out / f"random-{i}" /
                                                                                          "genotype.json"))) for i in (0, 1)}


def test_a_search_on_tensors_refuses_the_random_baseline(tmp_path: Path) -> None:
    from module_spaces import Classifier

    x, y = torch.rand(32, 3, 8, 8), torch.arange(32) % 2
    with pytest.raises(GdasError, match="random_baseline= trains random choice maps as image classifiers"):
        gdas.search((x, y), space=Classifier, random_baseline=2, out=tmp_path / "t", epochs=1)
    assert not (tmp_path / "t").exists()
