"""The Python API: search and train on in-memory data and files end to end, ordinary run folders, the
supernet and networks for hand-written loops, and one-line GdasErrors for bad input."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from cli_helpers import kill_after_checkpoints, run_cli

import gdas
from gdas import api
from gdas.configs.search import SEARCH_PRESETS, SEARCH_TABLE
from gdas.configs.train import TRAIN_PRESETS, TRAIN_TABLE
from gdas.errors import GdasError

TINY = dict(preset="smoke", epochs=1, steps_per_epoch=2)


def _arrays(n: int = 96, size: int = 12, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """NHWC uint8 colour images whose colour follows the label."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = np.clip(rng.integers(40, 215, (classes, 3))[y][:, None, None, :] + rng.normal(0, 20, (n, size, size, 3)),
                0, 255).astype(np.uint8)
    return x, y


class _Pairs(Dataset):
    def __init__(self, n: int, item=None):
        self.n, self.item = n, item

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if self.item is not None:
            return self.item
        return torch.full((1, 8, 8), (i % 2) * 0.8 + 0.1), i % 2


def test_the_public_surface() -> None:
    for name in gdas.__all__:
        assert hasattr(gdas, name), name
    assert callable(gdas.search) and callable(gdas.train)
    importlib.import_module("gdas.search")  # a loaded submodule does not replace the function
    from gdas.search import run_search  # noqa: F401
    assert gdas.search is api.search and gdas.train is api.train
    assert gdas.__version__ and "darts" in gdas.list_spaces()


def test_search_and_train_on_tensors_end_to_end(tmp_path: Path, capsys) -> None:
    x, y = _arrays()
    # Float NCHW tensors in [0, 1], as a torch user has them.
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    result = gdas.search((xt, torch.from_numpy(y)), out=tmp_path / "s", **TINY)
    assert isinstance(result, gdas.SearchResult) and result.run_dir == tmp_path / "s"
    assert result.genotype == gdas.load_genotype(tmp_path / "s")
    assert result.summary["complete"] and result.seeds is None
    data = json.loads((tmp_path / "s" / "data.json").read_text())
    assert (data["dataset"], data["num_classes"], data["channels"], data["image_size"]) == ("npz", 3, 3, 12)
    assert data["data_dir"] == str((tmp_path / "s" / "data.npz").resolve())
    stored = np.load(tmp_path / "s" / "data.npz")
    assert np.array_equal(stored["x_train"], x.transpose(0, 3, 1, 2)) and np.array_equal(stored["y_train"], y)

    x_test, y_test = _arrays(30, seed=1)
    trained = gdas.train(result, (x, y), test=(x_test, y_test), out=tmp_path / "t", auxiliary=False,
                         valid_portion=0.25, **TINY)
    assert isinstance(trained, gdas.TrainResult)
    assert trained.final_top1_err is not None and 0 <= trained.final_top1_err <= 1
    assert trained.best_epoch == 0 and trained.best_valid_top1_err is not None
    assert trained.summary["genotype"] == str(result.genotype)
    logits = trained.model(torch.rand(2, 3, 12, 12))
    assert logits.shape == (2, 3) and not trained.model.training


def test_an_api_run_is_an_ordinary_run_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    x, y = _arrays()
    out = tmp_path / "s"
    kill_after_checkpoints(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        gdas.search((x, y), test=_arrays(30, seed=1), out=out, **{**TINY, "epochs": 2})
    monkeypatch.undo()
    assert (out / "data.npz").is_file() and not (out / "summary.json").exists()
    # The command line resumes it (its data is RUN_DIR/data.npz) and trains its cell.
    assert run_cli("search", "--resume", out, "--no-progress", "--no-report") == 0
    assert json.loads((out / "summary.json").read_text())["complete"]
    again = gdas.search((x, y), test=_arrays(30, seed=1), out=out, resume="auto", **{**TINY, "epochs": 2})  # complete: nothing runs again
    assert again.genotype == gdas.load_genotype(out)
    assert run_cli("train", "--preset", "smoke", "--genotype", out, "--dataset", "npz", "--data-dir",
                   out / "data.npz", "--epochs", "1", "--steps-per-epoch", "1", "--no-auxiliary",
                   "--out", tmp_path / "t", "--no-progress", "--no-report") == 0


def test_a_dataset_an_npz_file_and_nb201(tmp_path: Path, capsys) -> None:
    result = gdas.search(_Pairs(64), test=_Pairs(16), space="nb201", out=tmp_path / "d", **TINY)
    assert result.summary["space"] == "nb201" and result.genotype.kind == "nb201"
    assert json.loads((tmp_path / "d" / "config.json").read_text())["config"]["preset"] == "nb201-smoke"
    x, y = _arrays(64, size=8)
    np.savez(tmp_path / "mine.npz", x_train=x, y_train=y)
    from_file = gdas.search(str(tmp_path / "mine.npz"), out=tmp_path / "n", space="nb201", **TINY)
    assert json.loads((tmp_path / "n" / "data.json").read_text())["num_classes"] == 3
    # Without a named preset, train follows the genotype's space.
    trained = gdas.train(from_file.genotype, (x, y), test=(x[:16], y[:16]), out=tmp_path / "t", epochs=1,
                         steps_per_epoch=1, C=4, batch_size=16)
    assert json.loads((tmp_path / "t" / "config.json").read_text())["config"]["preset"] == "nb201-demo"
    assert trained.final_top1_err is not None


def test_a_run_continues_only_with_the_arrays_it_started_with(tmp_path: Path, monkeypatch, capsys) -> None:
    x, y = _arrays()
    other = (x[::-1].copy(), y[::-1].copy())  # the same images in another order: other data
    out = tmp_path / "s"
    kill_after_checkpoints(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        gdas.search((x, y), out=out, **{**TINY, "epochs": 2})
    monkeypatch.undo()
    for resume in (True, "auto"):
        with pytest.raises(GdasError, match="holds a run on other data \\(data.npz differs"):
            gdas.search(other, out=out, resume=resume, **({} if resume is True else {**TINY, "epochs": 2}))
    assert not (out / "summary.json").exists()
    finished = gdas.search((x, y), out=out, resume=True)
    assert finished.summary["complete"] and finished.genotype == gdas.load_genotype(out)


def test_data_names_and_paths_become_config_fields(tmp_path: Path) -> None:
    names = ("cifar10", "synthetic", "folder", "npz")
    assert api._data_fields("synthetic", names) == {"dataset": "synthetic"}
    (tmp_path / "photos" / "train" / "cat").mkdir(parents=True)
    assert api._data_fields(tmp_path / "photos", names) == {"dataset": "folder", "data_dir": str(tmp_path / "photos")}
    assert api._data_fields(str(tmp_path / "photos"), names)["dataset"] == "folder"
    (tmp_path / "a.npz").write_bytes(b"")
    assert api._data_fields(tmp_path / "a.npz", names) == {"dataset": "npz", "data_dir": str(tmp_path / "a.npz")}


def test_presets_of_another_space() -> None:
    assert SEARCH_TABLE.in_space("fashion-mnist", "nb201") == "nb201-demo"  # an alias: its preset's counterpart
    assert SEARCH_TABLE.in_space("demo", "nb201") == "nb201-demo"
    assert SEARCH_TABLE.in_space("paper", "nb201") == "nb201-cifar10"
    assert SEARCH_TABLE.in_space("nb201-smoke", "darts") == "smoke"
    assert SEARCH_TABLE.in_space("smoke", "darts") == "smoke"
    assert TRAIN_TABLE.in_space("nb201-cifar10", "darts") == "cifar10"
    with pytest.raises(GdasError, match="'cifar10-frc' is a darts preset with no nb201 counterpart"):
        SEARCH_TABLE.in_space("cifar10-frc", "nb201")


@pytest.mark.parametrize("data, fields, contains", [
    (42, {}, "data must be a dataset name"),
    ({"x": 1}, {}, "data must be a dataset name"),
    ("no-such-thing", {}, "is not a dataset name"),
    ("missing.npz", {}, "npz file missing.npz does not exist"),
    ([np.zeros((4, 8, 8))], {}, "data must be an (x, y) pair"),
    ((np.zeros((4, 8, 8), np.uint8), np.arange(5)), {}, "x_train has 4 images but y_train has 5 labels"),
    ((np.full((4, 8, 8), 2.0), np.arange(4) % 2), {}, "not [0, 1]"),
    (_Pairs(4, item=(torch.zeros(1, 8, 8), 0, "extra")), {}, "item 0 is a 3-item tuple"),
    (_Pairs(4, item=torch.zeros(1, 8, 8)), {}, "item 0 is a Tensor"),
    ((np.zeros((8, 8, 8), np.uint8), np.arange(8) % 2), {"epoch": 1}, "did you mean 'epochs'?"),
    ((np.zeros((8, 8, 8), np.uint8), np.arange(8) % 2), {"C": "8"}, "field 'C' in gdas.search() must be an integer"),
    ((np.zeros((8, 8, 8), np.uint8), np.arange(8) % 2), {"dataset": "cifar10"}, "dataset= cannot be given"),
    ((np.zeros((8, 10, 10), np.uint8), np.arange(8) % 2), {"space": "nb201"}, "must be a multiple of 4"),
    ((np.zeros((8, 8, 8), np.uint8), np.arange(8) % 2), {"space": "chain"}, "unknown search space 'chain'"),
    ("synthetic", {"test": (np.zeros((2, 8, 8)), [0, 1])}, "test= goes with in-memory data"),
    ("synthetic", {"dataset": "cifar10"}, "the data is given twice"),
])
def test_bad_input_is_a_one_line_error_and_writes_nothing(tmp_path: Path, data, fields, contains) -> None:
    with pytest.raises(GdasError) as info:
        gdas.search(data, out=tmp_path / "run", **{**TINY, **fields})
    assert contains in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_bad_config_file_and_occupied_out(tmp_path: Path) -> None:
    x, y = _arrays(16)
    bad = tmp_path / "run.yaml"
    bad.write_text("preset: smoke\nepoch: 1\n")
    with pytest.raises(GdasError, match="unknown field 'epoch' in run.yaml; did you mean 'epochs'"):
        gdas.search((x, y), config=bad, out=tmp_path / "run")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "data.npz").write_bytes(b"mine")
    with pytest.raises(GdasError, match="holds a data.npz but no run; remove it or choose another out"):
        gdas.search((x, y), out=tmp_path / "run", **TINY)
    assert (tmp_path / "run" / "data.npz").read_bytes() == b"mine"


def test_a_run_that_fails_before_it_starts_leaves_no_data_file(tmp_path: Path) -> None:
    x, y = _arrays(3)
    with pytest.raises(GdasError, match="cannot split 3 training images"):  # found once the npz is read back
        gdas.search((x, y), out=tmp_path / "run", train_portion=0.1, **TINY)
    assert not (tmp_path / "run").exists()


def test_train_input_checks(tmp_path: Path) -> None:
    x, y = _arrays(16)
    with pytest.raises(GdasError, match="auxiliary head needs images of at least 21x21"):  # asked for: checked
        gdas.train("GDAS", (x, y), out=tmp_path / "t", auxiliary=True, **TINY)
    with pytest.raises(GdasError, match="genotype must be a registry name"):
        gdas.train(3.5, (x, y), out=tmp_path / "t")
    with pytest.raises(GdasError, match="no genotype named 'GDASS'"):
        gdas.train("GDASS", (x, y), out=tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_build_network_for_your_own_loop() -> None:
    net = gdas.build_network("GDAS", num_classes=5, C=8, N=1, in_channels=1)
    assert net(torch.rand(2, 1, 20, 20)).shape == (2, 5)
    net = gdas.build_network(gdas.load_genotype("nb201-resnet"), num_classes=3, C=8, N=1)
    assert net(torch.rand(2, 3, 16, 16)).shape == (2, 3)
    with_aux = gdas.build_network("DARTS_V2", num_classes=4, C=8, N=1, auxiliary=True).train()
    assert with_aux(torch.rand(2, 3, 32, 32))[1].shape == (2, 4)
    assert isinstance(gdas.build_network("GDAS", num_classes=10, C=8, N=1, layout="imagenet"), torch.nn.Module)
    with pytest.raises(GdasError, match="layout 'mobile' is not one of"):
        gdas.build_network("GDAS", num_classes=4, C=8, N=1, layout="mobile")
    with pytest.raises(GdasError, match="recurrent cells"):
        gdas.build_network("GDAS_RNN", num_classes=4, C=8, N=1)
    with pytest.raises(GdasError, match="num_classes must be a positive integer"):
        gdas.build_network("GDAS", num_classes=0, C=8, N=1)


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_supernet_sampler_and_derivation(space: str) -> None:
    supernet = gdas.build_supernet(space, num_classes=3, in_channels=1, C=4, N=1)
    assert supernet.search_config.steps == (3 if space == "nb201" else 4)
    archs = supernet.sample_arch(gdas.tau_at(0, 2), arch_grad=True, generator=torch.Generator().manual_seed(0))
    loss = torch.nn.functional.cross_entropy(supernet(torch.rand(4, 1, 8, 8), archs), torch.tensor([0, 1, 2, 0]))
    loss.backward(inputs=supernet.arch_parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in supernet.arch_parameters())
    genotype = gdas.derive(supernet)
    assert genotype.kind == gdas.get_space(space).genotype_kind
    assert gdas.derive(supernet, max_skip=0).param_free_count() <= genotype.param_free_count() or space == "nb201"


def test_supernet_errors() -> None:
    with pytest.raises(GdasError, match="space 'rnn' has no CNN supernet"):
        gdas.build_supernet("rnn", num_classes=3)
    with pytest.raises(GdasError, match="unknown field 'sampel' in gdas.build_supernet\\(\\); did you mean 'sampler'"):
        gdas.build_supernet(num_classes=3, sampel="gdas")
    with pytest.raises(GdasError, match="^C must be even"):
        gdas.build_supernet(num_classes=3, C=5)
    with pytest.raises(GdasError, match="derive\\(\\) takes a supernet made by gdas.build_supernet"):
        gdas.derive(torch.nn.Linear(2, 2))


def test_search_and_train_on_a_folder_path(tmp_path: Path, monkeypatch) -> None:
    from image_files import write_image_folder

    monkeypatch.setenv("GDAS_CACHE_DIR", str(tmp_path / "cache"))
    root = write_image_folder(tmp_path / "photos", n_per_class=40, fmt="jpg", mode="RGB")
    write_image_folder(root, n_per_class=10, fmt="png", mode="RGB", split="test", offset=40)
    result = gdas.search(root, out=tmp_path / "s", image_size=16, **TINY)
    assert json.loads((tmp_path / "s" / "classes.json").read_text()) == ["boot", "coat", "shirt"]
    data = json.loads((tmp_path / "s" / "data.json").read_text())
    assert (data["dataset"], data["data_dir"], data["image_size"]) == ("folder", str(root), 16)
    trained = gdas.train(result, str(root), out=tmp_path / "t", image_size=24, **TINY)
    assert trained.summary["dataset"] == "folder" and trained.final_top1_err is not None


def test_errors_from_python_name_keyword_arguments_and_the_cli_names_options(tmp_path: Path, capsys) -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(24, 16, 16), dtype=np.uint8)
    y = np.arange(24) % 2
    with pytest.raises(GdasError) as error:  # 16 px is too small for an auxiliary head
        gdas.train("GDAS", (x, y), test=(x[:4], y[:4]), preset="smoke", out=tmp_path / "a", auxiliary=True)
    assert "pass auxiliary=False" in str(error.value) and "--" not in str(error.value)
    with pytest.raises(GdasError) as error:  # no test split and no validation part
        gdas.train("GDAS", (x, y), preset="smoke", out=tmp_path / "b", auxiliary=False)
    assert "valid_portion=P" in str(error.value) and "--" not in str(error.value)
    with pytest.raises(GdasError, match="^epochs must be at least 1"):
        gdas.search((x, y), preset="smoke", out=tmp_path / "c", epochs=0)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    assert run_cli("train", "--preset", "smoke", "--genotype", "GDAS", "--dataset", "npz", "--data-dir",
                   tmp_path / "d.npz", "--no-auxiliary", "--out", tmp_path / "e") == 2
    assert "--valid-portion P" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abce")
