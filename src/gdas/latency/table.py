"""A latency table: each candidate op's measured latency at each place of one final network, its fixed part and
overhead, the settings and machine it was measured on; reading it, checking it against a search or genotype,
and predicting a network's latency from it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from gdas.engine.rundir import atomic_write_bytes
from gdas.errors import GdasError
from gdas.latency.timing import Settings
from gdas.spaces.base import Layout, SearchSpace

FORMAT = "gdas-latency-table"
VERSION = 1
BUILD = "gdas latency build"
FITS = ("scale", "overhead", "none")  # how whole networks correct the plain sum of a table (`build.calibrate`)


def shape_text(shape: Sequence[int]) -> str:
    channels, side, classes = shape
    return f"{channels}x{side}x{side} images, {classes} classes"


@dataclass(frozen=True)
class LatencyTable:
    """One table (the JSON file `gdas latency build` writes). `places[i]["ms"][k]` is op k's median latency at
    place i, timed alone (0: the op leaves the place empty), op k of `ops`, or of the place's own `ops` where it
    has them (a module space: each label's candidates); a network's prediction is `constant_ms` (the fixed part
    plus the fitted overhead) plus `ops_scale` x the ops it uses at every place."""

    path: str
    space: str
    ops: tuple[str, ...]
    network: dict[str, Any]  # C, N, channels, input_size, num_classes, dataset
    config: dict[str, Any]  # the search config the places were enumerated with (its cells)
    settings: Settings
    fixed_ms: float  # the network with every searched op replaced by zeros
    overhead_ms: float  # fitted on whole networks (--fit overhead): their median of measured - (fixed + ops)
    places: tuple[dict[str, Any], ...]
    ops_scale: float = 1.0  # fitted on whole networks (--fit scale): their median of (measured - fixed) / ops
    machine: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # what else the file records (build time, load)

    # -- what it describes ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, side, classes) of the network's input and output."""
        n = self.network
        return n["channels"], n["input_size"], n["num_classes"]

    @property
    def size(self) -> tuple[int, int]:
        return self.network["C"], self.network["N"]

    @property
    def constant_ms(self) -> float:
        """What every network of the table costs besides its searched ops: the fixed part plus the overhead."""
        return self.fixed_ms + self.overhead_ms

    def device_text(self) -> str:
        s, m = self.settings, self.machine
        where = m.get("gpu") or m.get("cpu_model") or s.device
        runtime = "ONNX Runtime" if s.runtime == "onnxruntime" else f"torch {m.get('torch', '')}".strip()
        return (f"{s.device} ({where}), {runtime}, {s.threads} thread{'s' * (s.threads != 1)}, batch {s.batch}, "
                f"{s.dtype}, {s.memory_format}, {s.clock} clock")

    def describe(self) -> str:
        C, N = self.size
        return f"{self.space} C={C} N={N} on {shape_text(self.shape)}; {self.device_text()}"

    def matrices(self) -> dict[str, int]:
        return {name: rows for name, (rows, _) in self.shapes().items()}

    def place_ops(self, place: Mapping[str, Any]) -> tuple[str, ...]:
        """The ops of a place's `ms`, in A's column order: its own, else the table's."""
        return tuple(place.get("ops") or self.ops)

    def shapes(self) -> dict[str, tuple[int, int]]:
        """{A matrix name: (rows, ops)} of the places."""
        out: dict[str, tuple[int, int]] = {}
        for place in self.places:
            rows = max(out.get(place["matrix"], (0, 0))[0], place["row"] + 1)
            out[place["matrix"]] = (rows, len(self.place_ops(place)))
        return out

    def entries(self) -> dict[str, torch.Tensor]:
        """{A matrix name: (rows, ops) ms} as measured, summed over the places that share a row (float64)."""
        out = {name: torch.zeros(shape, dtype=torch.float64) for name, shape in self.shapes().items()}
        for place in self.places:
            out[place["matrix"]][place["row"]] += torch.tensor(place["ms"], dtype=torch.float64)
        return out

    def costs(self) -> dict[str, torch.Tensor]:
        """{A matrix name: (rows, ops) ms} a search weighs by softmax(A): the entries x `ops_scale` (float32)."""
        return {name: (self.ops_scale * cost).float() for name, cost in self.entries().items()}

    # -- predictions ---------------------------------------------------------------------------------
    def sum_ms(self, choices: Mapping[str, torch.Tensor]) -> float:
        """The entries a genotype's choices pick, summed as measured (no fit)."""
        self.check_choices(choices)
        entries = self.entries()
        return float(sum((choices[name].double() * entries[name]).sum().item() for name in entries))

    def ops_ms(self, choices: Mapping[str, torch.Tensor]) -> float:
        """The searched ops' part of a network's predicted latency: `ops_scale` x their entries."""
        return self.ops_scale * self.sum_ms(choices)

    def plain_ms(self, choices: Mapping[str, torch.Tensor]) -> float:
        """The plain sum: the fixed part plus the entries, without the fitted terms."""
        return self.fixed_ms + self.sum_ms(choices)

    def predict_ms(self, choices: Mapping[str, torch.Tensor]) -> float:
        """The predicted latency of the network whose ops are `choices` (`SearchSpace.choices(genotype)`)."""
        return self.constant_ms + self.ops_ms(choices)

    # -- checks --------------------------------------------------------------------------------------
    def device_warning(self, here: Mapping[str, Any]) -> Optional[str]:
        """One line when `here` (this machine's `timing.versions`) is not the machine the table was measured on
        (CPU model, GPU name)."""
        key = "gpu" if self.settings.device.startswith("cuda") else "cpu_model"
        theirs, ours = self.machine.get(key), here.get(key)
        if theirs and ours and theirs != ours:
            return (f"gdas: warning: {self.path} was measured on {theirs}, this machine has {ours}: its timings "
                    "here are of another device than the table's")
        return None

    def check_choices(self, choices: Mapping[str, torch.Tensor], what: str = "the genotype") -> None:
        shapes = {name: tuple(c.shape) for name, c in choices.items()}
        want = self.shapes()
        if shapes != want:
            raise GdasError(f"{what} has cells {_cells_text(shapes)}, the latency table {self.path} was built for "
                            f"cells {_cells_text(want)}; build a table for its cells with {BUILD} (--steps, --frc)")

    def check_space(self, space: SearchSpace) -> None:
        if space.name != self.space:
            raise GdasError(f"the latency table {self.path} was built for the {self.space} space, not {space.name}; "
                            f"build one with {BUILD} --space {space.name}")
        if space.ops and tuple(space.ops) != self.ops:  # a module space's places name their own candidates
            raise GdasError(f"the latency table {self.path} lists other ops than the {space.name} space's "
                            f"({', '.join(self.ops)}); build it again with {BUILD}")

    def check_network(self, space: SearchSpace, cfg: Any, shape: Sequence[int]) -> None:
        """The table describes the final network of a search in `space` with `cfg`'s cells on images of `shape`
        (channels, side, classes) at the table's C, N: one line naming the difference otherwise."""
        self.check_space(space)
        if tuple(shape) != self.shape:
            raise GdasError(f"the latency table {self.path} was built for {shape_text(self.shape)}; this search "
                            f"reads {shape_text(shape)}: build one for them with {BUILD} (--dataset, or "
                            "--channels, --image-size and --num-classes for your own data)")
        if space.layout is None:
            raise GdasError(f"--cost latency is not available in the {space.name} space; drop it")
        C, N = self.size
        self.check_layout(space.layout(cfg, cfg.dataset, C, N, shape=tuple(shape)))

    def check_layout(self, layout: Layout) -> None:
        ours = [(p["matrix"], p["row"], tuple(p["input"]), tuple(p.get("ops", ()))) for p in self.places]
        theirs = [(p.matrix, p.row, tuple(p.input_shape), p.ops) for p in layout.places]
        if ours != theirs:
            raise GdasError(f"the latency table {self.path} was built for another network ({_cells_text(self.matrices())}"
                            f", {len(ours)} places) than this one ({_cells_text(layout.matrices())}, {len(theirs)} "
                            f"places); build one for it with {BUILD} (--steps, --frc, --C, --N)")

    # -- the file ------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "space": self.space, "ops": list(self.ops),
                "network": self.network, "config": self.config, "settings": self.settings.to_json(),
                "machine": self.machine, "fixed_ms": self.fixed_ms, "overhead_ms": self.overhead_ms,
                "ops_scale": self.ops_scale,
                "calibration": self.calibration, **self.extra, "places": list(self.places)}

    @classmethod
    def from_json(cls, data: Any, path: str) -> "LatencyTable":
        def need(ok: bool, why: str) -> None:
            if not ok:
                raise GdasError(f"{path} is not a usable latency table ({why}); build it again with {BUILD}")

        need(isinstance(data, dict) and data.get("format") == FORMAT, f"no \"format\": \"{FORMAT}\"")
        need(isinstance(data.get("version"), int) and data["version"] <= VERSION,
             f"version {data.get('version')!r}, this gdas reads up to {VERSION}")
        ops = data.get("ops")
        need(isinstance(data.get("space"), str) and isinstance(ops, list) and ops and
             all(isinstance(o, str) for o in ops), "space and ops")
        network = data.get("network")
        need(isinstance(network, dict) and all(_count(network.get(k)) for k in
                                               ("C", "N", "channels", "input_size", "num_classes")),
             "network: C, N, channels, input_size, num_classes")
        need(isinstance(data.get("settings"), dict) and isinstance(data.get("config"), dict), "settings and config")
        need(_number(data.get("fixed_ms")) and data["fixed_ms"] >= 0 and _number(data.get("overhead_ms"))
             and _number(data.get("ops_scale", 1.0)) and data.get("ops_scale", 1.0) > 0,
             "fixed_ms >= 0, overhead_ms, ops_scale > 0")
        places = data.get("places")
        need(isinstance(places, list) and places, "no places")
        for i, p in enumerate(places):
            own = p.get("ops", ops) if isinstance(p, dict) else None
            need(isinstance(p, dict) and isinstance(p.get("matrix"), str) and isinstance(p.get("row"), int)
                 and p["row"] >= 0 and isinstance(p.get("input"), list) and p["input"]
                 and all(_count(v) for v in p["input"]) and isinstance(own, list) and own
                 and all(isinstance(o, str) for o in own) and isinstance(p.get("ms"), list)
                 and len(p["ms"]) == len(own) and all(_number(v) and v >= 0 for v in p["ms"]),
                 f"place {i}: matrix, row, input (one sample's shape) and one latency >= 0 per op")
        widths: dict[str, set] = {}
        for p in places:
            widths.setdefault(p["matrix"], set()).add(tuple(p.get("ops", ops)))
        need(all(len(w) == 1 for w in widths.values()), "the places of one A matrix list other ops")
        try:
            settings = Settings.from_json(data["settings"])
        except TypeError as exc:
            raise GdasError(f"{path} is not a usable latency table (settings: {exc}); build it again with "
                            f"{BUILD}") from None
        known = {"format", "version", "space", "ops", "network", "config", "settings", "machine", "fixed_ms",
                 "overhead_ms", "ops_scale", "calibration", "places"}
        return cls(path=path, space=data["space"], ops=tuple(ops), network=dict(network), config=dict(data["config"]),
                   settings=settings, fixed_ms=float(data["fixed_ms"]), overhead_ms=float(data["overhead_ms"]),
                   ops_scale=float(data.get("ops_scale", 1.0)), places=tuple(places), machine=dict(data.get("machine") or {}),
                   calibration=dict(data.get("calibration") or {}),
                   extra={k: v for k, v in data.items() if k not in known})

    def save(self, path: Path) -> None:
        atomic_write_bytes(path, (json.dumps(self.to_json(), indent=1) + "\n").encode())


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cells_text(shapes: Mapping[str, Any]) -> str:
    return ", ".join(f"{name} {rows[0] if isinstance(rows, tuple) else rows} rows" for name, rows in shapes.items()) or "none"


def load_table(path: Optional[str | Path], option: str = "--latency-table") -> LatencyTable:
    """The table at `path`; a missing, unreadable or damaged file is one line."""
    if path is None:
        raise GdasError(f"{option} FILE is needed: a table of your device from {BUILD}")
    p = Path(path)
    if not p.is_file():
        raise GdasError(f"{option} {path}: no such file; build the table with {BUILD} (docs/latency.md)")
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GdasError(f"{path} is not a usable latency table (not JSON: {str(exc)[:80]}); build it again with "
                        f"{BUILD}") from None
    return LatencyTable.from_json(data, str(path))
