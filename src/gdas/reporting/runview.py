"""Reading run directories for reports: kind, records, genotype, completeness, multi-seed folders."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from gdas.errors import GdasError
from gdas.genotypes import RNN_PRIMITIVES, AnyGenotype, genotype_from_json, load_genotype
from gdas.spaces.darts.ops import PRIMITIVES
from gdas.engine.rundir import CONFIG, METRICS, SUMMARY, read_json

MULTISEED = "multiseed.json"
SEEDS = "seeds.json"
ALPHAS = "alphas.jsonl"
GENOTYPES = "genotypes.jsonl"
SEARCH_KINDS = ("search", "search-rnn", "search-tensors")  # runs with an architecture distribution A
_ALPHA_META = frozenset({"epoch", "tau", "ops", "candidates"})


def read_jsonl_checked(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """Records of a JSONL file and whether it ended in a torn line (a run killed mid-write)."""
    if not path.exists():
        return [], False
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return records, True
        if isinstance(record, dict):
            records.append(record)
    return records, False


def epoch_of(record: dict[str, Any], index: int) -> int:
    """A record's epoch (its position when the field is missing or odd)."""
    epoch = record.get("epoch")
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else index


def edge_labels(n_edges: int, recurrent: bool) -> list[str]:
    """'j→i' per edge in A's row order (genotype node numbering), or plain indices for an unknown layout."""
    labels: list[str] = []
    node = 1 if recurrent else 2  # recurrent node i has inputs 0..i-1; CNN node i (>=2) has 0..i-1
    while len(labels) < n_edges:
        labels += [f"{j}→{node}" for j in range(node)]
        node += 1
    return labels if len(labels) == n_edges else [str(e) for e in range(n_edges)]


@dataclass
class RunView:
    """One run directory as the report sees it; every field is optional except path, kind and config."""

    path: Path
    name: str
    kind: str
    config: dict[str, Any]
    env: dict[str, Any]
    summary: Optional[dict[str, Any]] = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    alphas: list[dict[str, Any]] = field(default_factory=list)
    genotypes: list[dict[str, Any]] = field(default_factory=list)
    genotype: Optional[AnyGenotype] = None
    genotype_note: str = ""  # where `genotype` comes from when it is not the final one
    kept: Optional[bool] = None  # multi-seed: whether this seed's cell was kept
    selection: Optional[dict[str, Any]] = None  # multi-seed: seeds.json's row of this seed, how it was judged
    baseline: Optional[dict[str, Any]] = None  # --random-baseline: summary.json's (seeds.json's) random_baseline
    baseline_of: Optional[Path] = None  # the folder that holds it: the run, or its multi-seed folder
    problems: list[str] = field(default_factory=list)  # why the run is incomplete

    @property
    def complete(self) -> bool:
        return not self.problems

    @property
    def is_search(self) -> bool:
        return self.kind in SEARCH_KINDS

    @property
    def epochs_done(self) -> int:
        return len(self.metrics)

    @property
    def epochs_total(self) -> Optional[int]:
        epochs = self.config.get("epochs")
        return epochs if isinstance(epochs, int) else None

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(epochs, values) of a numeric metric, skipping records without it."""
        xs, ys = [], []
        for i, record in enumerate(self.metrics):
            value = record.get(key)
            if is_number(value):
                xs.append(epoch_of(record, i))
                ys.append(float(value))
        return xs, ys

    def metric_keys(self) -> list[str]:
        """Numeric metric names in first-seen order."""
        keys: dict[str, None] = {}
        for record in self.metrics:
            keys.update({k: None for k, v in record.items() if k != "epoch" and is_number(v)})
        return list(keys)

    def ops(self) -> tuple[str, ...]:
        """The op names of A's columns (from alphas.jsonl, else guessed from the column count)."""
        ops = self.alphas[-1].get("ops") if self.alphas else None
        if isinstance(ops, list) and all(isinstance(o, str) for o in ops):
            return tuple(ops)
        widths = {probs.shape[2] for probs in self.cell_probs().values()}
        return {len(RNN_PRIMITIVES): RNN_PRIMITIVES, len(PRIMITIVES): PRIMITIVES}.get(
            widths.pop() if len(widths) == 1 else -1, ())

    def candidates(self) -> dict[str, list[str]]:
        """A module space's candidates by label (alphas.jsonl), empty for a cell space."""
        found = self.alphas[-1].get("candidates") if self.alphas else None
        return found if isinstance(found, dict) else {}

    def recurrent(self) -> bool:
        return self.kind == "search-rnn" or self.ops() == RNN_PRIMITIVES

    def cell_probs(self) -> dict[str, np.ndarray]:
        """softmax(A) per cell type over the recorded epochs: {cell: array (epochs, edges, ops)}."""
        cells: dict[str, list] = {}
        for record in self.alphas:
            for key, value in record.items():
                if key not in _ALPHA_META and isinstance(value, list) and value and isinstance(value[0], list):
                    cells.setdefault(key, []).append(value)
        out = {}
        for cell, stack in cells.items():
            try:
                array = np.asarray(stack, dtype=np.float64)
            except ValueError:  # ragged: a damaged record
                continue
            if array.ndim == 3 and array.shape[0] == len(self.alpha_epochs(cell)):
                out[cell] = array
        return out

    def alpha_epochs(self, cell: str) -> list[int]:
        return [epoch_of(r, i) for i, r in enumerate(self.alphas) if isinstance(r.get(cell), list)]

    def last(self, key: str) -> Any:
        """The summary's value, else the last recorded metric of that name."""
        if self.summary and key in self.summary:
            return self.summary[key]
        values = self.series(key.removeprefix("final_"))[1]
        return values[-1] if values else None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _final_genotype(run: RunView) -> None:
    """The run's final genotype, else the one derived at the last recorded epoch, else the trained one."""
    candidates: list[tuple[str, Any]] = []
    if (run.path / "genotype.json").exists():
        candidates.append(("", lambda: load_genotype(str(run.path / "genotype.json"))))
    if run.summary and isinstance(run.summary.get("genotype_json"), dict):
        candidates.append(("", lambda: genotype_from_json(run.summary["genotype_json"])))
    if run.genotypes and isinstance(run.genotypes[-1].get("genotype"), dict):
        epoch = epoch_of(run.genotypes[-1], len(run.genotypes) - 1)
        candidates.append((f"derived after epoch {epoch} (the run did not finish)",
                           lambda: genotype_from_json(run.genotypes[-1]["genotype"])))
    spec = run.config.get("genotype")
    if isinstance(spec, str) and spec:
        candidates.append((f"from the config: {spec}", lambda: load_genotype(spec)))
    for note, build in candidates:
        try:
            run.genotype, run.genotype_note = build(), note
            return
        except GdasError:
            continue


def load_run(path: Path, name: Optional[str] = None) -> RunView:
    """One run directory; a missing or damaged config.json makes it not a run (GdasError)."""
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise GdasError(f"{path} {what}; pass the --out folder of a search or training run")
    if not (path / CONFIG).exists():
        raise GdasError(f"{path} is not a gdas run directory (no {CONFIG} or {MULTISEED}); "
                        "pass the --out folder of a search or training run")
    stored = read_json(path / CONFIG)
    if not isinstance(stored, dict) or not isinstance(stored.get("kind"), str):
        raise GdasError(f"{path / CONFIG} has no run kind; {path} is not a gdas run directory")
    run = RunView(path=path, name=name or path.name or str(path), kind=stored["kind"],
                  config=stored.get("config") if isinstance(stored.get("config"), dict) else {},
                  env=stored.get("env") if isinstance(stored.get("env"), dict) else {})
    for attr, filename in (("metrics", METRICS), ("alphas", ALPHAS), ("genotypes", GENOTYPES)):
        records, torn = read_jsonl_checked(path / filename)
        setattr(run, attr, records)
        if torn:
            run.problems.append(f"{filename} ends in a torn line (the run was killed while writing it)")
    if (path / SUMMARY).exists():
        try:
            summary = read_json(path / SUMMARY)
            run.summary = summary if isinstance(summary, dict) else None
        except GdasError as exc:
            run.problems.append(str(exc))
    if run.summary is None:
        total = f" of {run.epochs_total}" if run.epochs_total else ""
        run.problems.insert(0, f"no {SUMMARY}: the run stopped after {run.epochs_done}{total} epochs "
                               f"(killed or still running); continue it with --resume {path}")
    elif run.summary.get("complete") is False:
        run.problems.insert(0, f"{SUMMARY} marks the run as not complete")
    if run.summary is not None and isinstance(run.summary.get("random_baseline"), dict):
        run.baseline, run.baseline_of = run.summary["random_baseline"], path
    _final_genotype(run)
    return run


def _expand_multiseed(parent: Path, notes: list[str]) -> list[RunView]:
    meta = read_json(parent / MULTISEED)
    seeds = meta.get("seeds") if isinstance(meta, dict) else None
    if not isinstance(seeds, list):
        raise GdasError(f"{parent / MULTISEED} lists no seeds; the multi-seed run directory is damaged")
    best, rows, baseline = None, {}, None
    if (parent / SEEDS).exists():
        kept = read_json(parent / SEEDS)
        best = kept.get("best_seed") if isinstance(kept, dict) else None
        how = {"select_by": kept.get("select_by", "search"), "select_epochs": kept.get("select_epochs"),
               "split_seed": kept.get("split_seed")} if isinstance(kept, dict) else {}
        listed = kept.get("seeds") if isinstance(kept, dict) else None
        rows = {r.get("seed"): {**r, **how} for r in listed or [] if isinstance(r, dict)}
        baseline = kept.get("random_baseline") if isinstance(kept, dict) else None
    else:
        notes.append(f"{parent}: multi-seed search not finished ({SEEDS} missing): no seed is kept yet")
    runs = []
    for seed in seeds:
        seed_dir = parent / f"seed-{seed}"
        if not (seed_dir / CONFIG).exists():
            notes.append(f"{parent}: seed {seed} has not started (no {seed_dir.name}/{CONFIG})")
            continue
        run = load_run(seed_dir, f"{parent.name}/seed-{seed}")
        run.kept = None if best is None else seed == best
        run.selection = rows.get(seed)
        if isinstance(baseline, dict):
            run.baseline, run.baseline_of = baseline, parent
        runs.append(run)
    if not runs:
        raise GdasError(f"{parent} is a multi-seed search with no started seed runs; nothing to report")
    return runs


def load_runs(paths: Sequence[Path]) -> tuple[list[RunView], list[str]]:
    """The runs of `paths` (multi-seed parents expanded into their seeds) and report-wide notes.

    Runs of different kinds cannot be compared: that is a GdasError.
    """
    if not paths:
        raise GdasError("no run directory given; pass at least one RUN_DIR")
    runs: list[RunView] = []
    notes: list[str] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        found = _expand_multiseed(path, notes) if (path / MULTISEED).exists() else [load_run(path)]
        for run in found:
            if run.path.resolve() not in seen:
                seen.add(run.path.resolve())
                runs.append(run)
    names = [run.name for run in runs]
    for run in runs:
        if names.count(run.name) > 1:  # e.g. a/smoke and b/smoke: tell them apart
            run.name = str(run.path)
    kinds = {run.kind for run in runs}
    if len(kinds) > 1:
        listing = ", ".join(f"{run.name}: {run.kind}" for run in runs)
        raise GdasError(f"cannot report runs of different kinds together ({listing}); "
                        "make one report per kind")
    return runs, notes
