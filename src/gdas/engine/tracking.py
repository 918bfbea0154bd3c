"""Experiment tracking (MLflow): a run's config as params, its per-epoch metrics, its results as artifacts."""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from gdas.configs.runtime import validate_tracking
from gdas.engine.rundir import CONFIG, RunDir, atomic_write_bytes, read_json
from gdas.errors import GdasError

STATE = "tracking.json"  # in a run directory: the tracking run it logs to, so that --resume continues it
ARTIFACTS = ("config.json", "genotype.json", "summary.json", "multiseed.json", "seeds.json")
DEFAULT_URI = "./mlruns"
INSTALL = "pip install 'gdas-nas[mlflow]' (or pip install mlflow-skinny)"
# A slow or absent server fails in seconds, not after MLflow's minutes of retries (the user's values win).
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


class Tracker:
    """The hook the epoch loop and the CLI call for every run; this base class records nothing."""

    def run_started(self, run: RunDir) -> None:
        """A run (new or resumed) begins its epochs."""

    def epoch_ended(self, run: RunDir, epoch: int, record: dict[str, Any]) -> None:
        """One epoch's record, as written to metrics.jsonl."""

    def run_ended(self, run: RunDir) -> None:
        """The run finished: summary.json and its results are in the run directory."""

    def report_written(self, run_dir: Path, report: Path) -> None:
        """The HTML report of `run_dir` (a run or a multi-seed folder) was written."""

    @contextlib.contextmanager
    def parent(self, out: Path, config: dict[str, Any]) -> Iterator[None]:
        """Runs started inside belong to one parent run (a multi-seed search in `out`)."""
        yield

    def close(self, status: str) -> None:
        """End of the command: runs still open end with `status` (FINISHED, FAILED or KILLED)."""


_current: contextvars.ContextVar[Tracker] = contextvars.ContextVar("gdas_tracker", default=Tracker())


def current() -> Tracker:
    """The tracker of the command being run (a no-op one outside `session`)."""
    return _current.get()


@contextlib.contextmanager
def session(backend: Optional[str], uri: Optional[str]) -> Iterator[Tracker]:
    """Connect to the tracking backend before any run starts (a user error if that fails) and make it current.

    On torchrun's other ranks nothing is tracked: rank 0 writes the run directory and logs it.
    """
    validate_tracking(backend, uri)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    tracker = MLflowTracker(uri or DEFAULT_URI) if backend == "mlflow" and rank0 else Tracker()
    token = _current.set(tracker)
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        _current.reset(token)
        tracker.close(status)


@contextlib.contextmanager
def parent_run(out: str | Path, config: dict[str, Any]) -> Iterator[None]:
    """Log the runs started inside as child runs of one parent run (the multi-seed folder `out`)."""
    with current().parent(Path(out), config):
        yield


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _store_uri(uri: str) -> str:
    """A local path (no scheme) as an absolute file: URI, so that the store does not move with the cwd."""
    if "://" in uri or uri.startswith("file:"):
        return uri
    return Path(uri).expanduser().resolve().as_uri()


class MLflowTracker(Tracker):
    """Logs to an MLflow tracking store through `MlflowClient` (no global MLflow state is touched)."""

    def __init__(self, uri: str):
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise GdasError(f"--tracking mlflow needs MLflow: {INSTALL}") from None
        self._Metric, self._Param = Metric, Param
        self.uri = _store_uri(uri)
        if self.uri.startswith("file:"):
            # MLflow 3 keeps its file store in maintenance mode behind this switch; ./mlruns needs no server.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        for key, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "gdas")
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            experiment = self.client.get_experiment_by_name(name)
            self.experiment_id = (experiment.experiment_id if experiment is not None
                                  else self.client.create_experiment(name))
        except Exception as exc:  # MLflow raises many types for a store it cannot reach
            raise GdasError(f"cannot use the MLflow tracking store {self.uri} ({_first_line(exc)}); check "
                            "--tracking-uri (and that its server runs), or drop --tracking") from None
        self.broken = False
        self.ids: dict[Path, str] = {}  # run directory -> MLflow run id
        self.open: set[str] = set()
        self.parents: list[str] = []

    # -- failures mid-run: a warning, and the run goes on ----------------------------------------
    def _safely(self, what: str, call: Callable[[], Any]) -> Any:
        if self.broken:
            return None
        try:
            return call()
        except Exception as exc:
            self.broken = True
            print(f"gdas: warning: MLflow tracking stopped ({what}: {_first_line(exc)}); the run goes on and "
                  "keeps everything in its run directory", file=sys.stderr)
            return None

    # -- runs ------------------------------------------------------------------------------------
    def _start(self, run_dir: Path, kind: str, params: dict[str, Any], tags: dict[str, Any]) -> Optional[str]:
        """The run of `run_dir`: the one its tracking.json names (a resumed run), or a new one."""
        key = run_dir.resolve()
        state = run_dir / STATE
        if state.exists():
            stored = read_json(state)
            if stored.get("tracking_uri") == self.uri and stored.get("run_id"):
                run_id = str(stored["run_id"])
                self._safely("resuming its run", lambda: self.client.update_run(run_id, status="RUNNING"))
                self.ids[key] = run_id
                self.open.add(run_id)
                return run_id
        run_tags = {"mlflow.runName": run_dir.name, "gdas.kind": kind, "gdas.run_dir": str(key),
                    **{k: str(v) for k, v in tags.items()}}
        if self.parents:
            run_tags["mlflow.parentRunId"] = self.parents[-1]
        created = self._safely("creating its run", lambda: self.client.create_run(self.experiment_id, tags=run_tags))
        if created is None:
            return None
        run_id = created.info.run_id
        items = [self._Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self._safely("logging params", lambda: self.client.log_batch(run_id, params=items[i:i + 100]))
        atomic_write_bytes(state, (json.dumps({"backend": "mlflow", "tracking_uri": self.uri, "run_id": run_id},
                                              indent=2) + "\n").encode())
        print(f"tracking: MLflow run {run_id} ({run_dir.name}) in {self.uri}", file=sys.stderr)
        self.ids[key] = run_id
        self.open.add(run_id)
        return run_id

    def _log_files(self, run_id: str, run_dir: Path, names: tuple[str, ...]) -> None:
        for name in names:
            if (run_dir / name).is_file():
                self._safely(f"logging {name}", lambda: self.client.log_artifact(run_id, str(run_dir / name)))

    def _end(self, run_id: str, run_dir: Path, status: str) -> None:
        self._log_files(run_id, run_dir, ARTIFACTS)
        self._safely("ending its run", lambda: self.client.set_terminated(run_id, status))
        self.open.discard(run_id)

    def run_started(self, run: RunDir) -> None:
        if not run.writer or self.broken:
            return
        stored = run.read_json(CONFIG)
        env = {f"env.{k}": v for k, v in stored.get("env", {}).items()}
        self._start(run.path, stored.get("kind", "run"), stored.get("config", {}), env)

    def epoch_ended(self, run: RunDir, epoch: int, record: dict[str, Any]) -> None:
        run_id = self.ids.get(run.path.resolve())
        if run_id is None or not run.writer:
            return
        metrics = [self._Metric(k, float(v), int(1000 * time.time()), epoch) for k, v in record.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"]
        self._safely(f"logging epoch {epoch}", lambda: self.client.log_batch(run_id, metrics=metrics))

    def run_ended(self, run: RunDir) -> None:
        run_id = self.ids.get(run.path.resolve())
        if run_id is not None and run.writer:
            self._end(run_id, run.path, "FINISHED")

    def report_written(self, run_dir: Path, report: Path) -> None:
        run_id = self.ids.get(run_dir.resolve())
        if run_id is None:
            return
        self._safely("logging report.html", lambda: self.client.log_artifact(run_id, str(report)))
        plots = report.parent / "plots"
        if plots.is_dir():
            self._safely("logging plots", lambda: self.client.log_artifacts(run_id, str(plots), "plots"))

    @contextlib.contextmanager
    def parent(self, out: Path, config: dict[str, Any]) -> Iterator[None]:
        out.mkdir(parents=True, exist_ok=True)
        run_id = None if self.broken else self._start(out, "search-multiseed", config, {})
        if run_id is None:
            yield
            return
        self.parents.append(run_id)
        status = "FAILED"
        try:
            yield
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self.parents.pop()
            if (out / "seeds.json").exists():  # the kept seed and its accuracy, for comparing searches
                seeds = read_json(out / "seeds.json")
                best = next((r for r in seeds.get("seeds", []) if r.get("kept")), None)
                if best is not None and isinstance(best.get("valid_acc"), (int, float)):
                    self._safely("logging the kept seed", lambda: (
                        self.client.log_metric(run_id, "best_valid_acc", float(best["valid_acc"])),
                        self.client.set_tag(run_id, "gdas.best_seed", str(best["seed"]))))
            self._end(run_id, out, status)

    def close(self, status: str) -> None:
        for run_dir, run_id in list(self.ids.items()):
            if run_id in self.open:  # a run the command left unfinished: an error or ^C
                self._end(run_id, run_dir, "FAILED" if status == "FINISHED" else status)
