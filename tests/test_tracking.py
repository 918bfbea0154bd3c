"""Tests for experiment tracking against a real local MLflow store, read back with MLflow's own client."""

from __future__ import annotations

import json
import shutil
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from cli_helpers import expect_error, run_cli
from gdas.engine import tracking
from gdas.engine.loop import fit, resume
from gdas.engine.rundir import RunDir

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

CONFIG = {"preset": "smoke", "C": 8, "epochs": 3, "data_dir": None, "seeds": [0, 1]}


class TinyTask:
    """Three epochs of made-up metrics; `on_epoch(epoch)` runs after each (to break things mid-run)."""

    epoch_files: tuple[str, ...] = ()

    def __init__(self, epochs: int = 3, on_epoch: Optional[Callable[[int], None]] = None, acc: float = 0.5):
        self.epochs, self.on_epoch, self.acc = epochs, on_epoch, acc

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        return {"tau": 10.0 - epoch, "train_loss": 2.0 / (epoch + 1), "valid_acc": self.acc * (epoch + 1) / 3}

    def after_epoch(self, epoch: int, metrics: dict[str, Any], run: RunDir) -> None:
        if self.on_epoch is not None:
            self.on_epoch(epoch)

    def finish(self, run: RunDir, wall_time_s: float) -> dict[str, Any]:
        run.write_json("genotype.json", {"normal": [["skip_connect", 0]]})
        summary = {"final_valid_acc": self.acc, "complete": True}
        run.write_json("summary.json", summary)
        return summary


def _new_run(path: Path) -> RunDir:
    return RunDir.create(path, "search", CONFIG, {"torch": "2.x", "device": "cpu"})


def _only_run(client: MlflowClient, filter_string: str = "") -> Any:
    experiment = client.get_experiment_by_name("gdas")
    runs = client.search_runs([experiment.experiment_id], filter_string=filter_string)
    assert len(runs) == 1, runs
    return runs[0]


def _artifacts(client: MlflowClient, run_id: str, path: Optional[str] = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def test_a_run_logs_params_metrics_and_artifacts(tmp_path):
    store = tmp_path / "mlruns"
    with tracking.session("mlflow", str(store)):
        fit(TinyTask(), _new_run(tmp_path / "run"), log=lambda _: None)
    client = MlflowClient(store.as_uri())
    run = _only_run(client)
    assert run.info.status == "FINISHED"
    assert run.data.params["C"] == "8" and run.data.params["preset"] == "smoke"
    assert run.data.params["data_dir"] == "None" and json.loads(run.data.params["seeds"]) == [0, 1]
    assert run.data.tags["gdas.kind"] == "search" and run.data.tags["env.torch"] == "2.x"
    history = client.get_metric_history(run.info.run_id, "valid_acc")
    assert [m.step for m in history] == [0, 1, 2]
    assert [m.value for m in history] == pytest.approx([0.5 / 3, 1.0 / 3, 0.5])
    assert {"tau", "train_loss", "epoch_time_s", "wall_time_s"} <= set(run.data.metrics)
    assert "epoch" not in run.data.metrics
    assert {"config.json", "genotype.json", "summary.json"} <= _artifacts(client, run.info.run_id)
    state = json.loads((tmp_path / "run" / tracking.STATE).read_text())
    assert state["run_id"] == run.info.run_id and state["tracking_uri"] == store.as_uri()


def test_search_cli_logs_its_report_too(tmp_path):
    store, out = tmp_path / "mlruns", tmp_path / "run"
    assert run_cli("search", "--preset", "smoke", "--no-progress", "--out", out,
                   "--tracking", "mlflow", "--tracking-uri", store) == 0
    client = MlflowClient(store.as_uri())
    run = _only_run(client)
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.runName"] == "run"
    assert run.data.params["preset"] == "smoke" and run.data.params["C"] == "8"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "valid_acc")] == [0, 1]
    names = _artifacts(client, run.info.run_id)
    assert {"config.json", "genotype.json", "summary.json", "report.html", "plots"} <= names
    assert _artifacts(client, run.info.run_id, "plots")
    genotype = Path(client.download_artifacts(run.info.run_id, "genotype.json", str(tmp_path)))
    assert json.loads(genotype.read_text()) == json.loads((out / "genotype.json").read_text())


def test_parent_run_with_a_child_run_per_seed(tmp_path):
    store, out = tmp_path / "mlruns", tmp_path / "multi"
    with tracking.session("mlflow", str(store)):
        with tracking.parent_run(out, CONFIG):
            for seed, acc in [(0, 0.4), (1, 0.6)]:
                fit(TinyTask(acc=acc), _new_run(out / f"seed-{seed}"), log=lambda _: None)
            (out / "seeds.json").write_text(json.dumps({"best_seed": 1, "seeds": [
                {"seed": 0, "valid_acc": 0.4, "kept": False}, {"seed": 1, "valid_acc": 0.6, "kept": True}]}))
    client = MlflowClient(store.as_uri())
    parent = _only_run(client, "tags.`gdas.kind` = 'search-multiseed'")
    assert parent.info.status == "FINISHED" and parent.data.params["C"] == "8"
    assert parent.data.metrics["best_valid_acc"] == pytest.approx(0.6) and parent.data.tags["gdas.best_seed"] == "1"
    assert "seeds.json" in _artifacts(client, parent.info.run_id)
    experiment = client.get_experiment_by_name("gdas")
    children = client.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.tags["mlflow.runName"] for r in children) == ["seed-0", "seed-1"]
    assert all(r.info.status == "FINISHED" for r in children)


def test_a_resumed_run_continues_its_tracking_run(tmp_path):
    store, path = tmp_path / "mlruns", tmp_path / "run"

    def interrupt(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with tracking.session("mlflow", str(store)):
            fit(TinyTask(on_epoch=interrupt), _new_run(path), log=lambda _: None)
    client = MlflowClient(store.as_uri())
    assert _only_run(client).info.status == "KILLED"
    with tracking.session("mlflow", str(store)):
        task, run = TinyTask(), RunDir(path)
        start, wall = resume(task, run)
        fit(task, run, start_epoch=start, wall_time_s=wall, log=lambda _: None)
    run = _only_run(client)  # the same run, not a second one
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "valid_acc")] == [0, 1, 2]


def test_a_store_that_fails_mid_run_warns_and_the_run_goes_on(tmp_path, capsys):
    store, path = tmp_path / "mlruns", tmp_path / "run"

    def break_store(epoch: int) -> None:
        if epoch == 0:
            shutil.rmtree(store)
            store.write_text("not a store any more")

    with tracking.session("mlflow", str(store)):
        summary = fit(TinyTask(on_epoch=break_store), _new_run(path), log=lambda _: None)
    assert summary["complete"] and (path / "summary.json").exists()
    assert len((path / "metrics.jsonl").read_text().splitlines()) == 3
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "MLflow tracking stopped" in warnings[0], warnings


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_bad_tracking_options_are_one_line_errors(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    smoke = ["search", "--preset", "smoke", "--no-progress", "--no-report", "--out", out]
    expect_error(capsys, *smoke, "--tracking", "wandb", contains="--tracking 'wandb' is not one of: mlflow")
    expect_error(capsys, *smoke, "--tracking-uri", tmp_path / "mlruns", contains="needs --tracking mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    expect_error(capsys, *smoke, "--tracking", "mlflow", "--tracking-uri", f"http://127.0.0.1:{_closed_port()}",
                 contains="cannot use the MLflow tracking store http://127.0.0.1:")
    assert not out.exists()  # refused before the run began: nothing to clean up, nothing lost


def test_without_mlflow_installed_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    expect_error(capsys, "search", "--preset", "smoke", "--no-progress", "--out", tmp_path / "run",
                 "--tracking", "mlflow", contains="pip install 'gdas-nas[mlflow]'")
