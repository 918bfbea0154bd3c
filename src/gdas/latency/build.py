"""`gdas latency build`: every candidate op measured at every place of a final network (identical places once),
the network without its searched ops as the fixed part, and an overhead term fitted on whole random networks."""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time
from typing import Any, Callable, Iterable, Optional

from torch import nn

from gdas.configs import base as cfgbase
from gdas.configs.latency import LatencyConfig
from gdas.engine.progress import ProgressBar
from gdas.latency.networks import measure, network_ms, random_genotypes
from gdas.latency.table import FITS, LatencyTable
from gdas.latency.timing import Settings, versions
from gdas.spaces import get_space
from gdas.spaces.base import Layout, SearchSpace

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def unique_ops(layout: Layout, ops: tuple[str, ...]) -> dict[tuple, tuple[nn.Module, tuple[int, int, int],
                                                                         list[tuple[int, int]]]]:
    """{(op, input shape, module): (module, input shape, [(place, op index), ...])}: the measurements a layout
    needs, each identical op configuration (same module at the same input shape) once."""
    groups: dict[tuple, tuple[nn.Module, tuple[int, int, int], list[tuple[int, int]]]] = {}
    for i, place in enumerate(layout.places):
        for k, op in enumerate(place.ops or ops):
            module = place.build(op)
            if module is None:  # the op leaves the place empty: it costs nothing
                continue
            key = (op, tuple(place.input_shape), repr(module))
            groups.setdefault(key, (module, tuple(place.input_shape), []))[2].append((i, k))
    return groups


def call_overheads(shapes: Iterable[tuple[int, int, int]], settings: Settings) -> dict[tuple[int, int, int], float]:
    """ONNX Runtime: the cost of one session run itself at each input shape (a model that returns its input), which
    every op timed in its own session pays and no op inside a network's one session does; torch: none (each op is
    a module call in the network too)."""
    if settings.runtime != "onnxruntime":
        return {}
    return {shape: measure(nn.Identity(), shape, settings).ms for shape in dict.fromkeys(shapes)}


def calibrate(table: LatencyTable, space: SearchSpace, cfg: Any, count: int, seed: int, fit: str = "scale",
              bar: Optional[ProgressBar] = None, log: Log = _stderr) -> LatencyTable:
    """The table with its correction for what ops timed alone miss of a whole network, fitted on `count` random
    networks measured whole: `scale` multiplies the ops (their median of (measured - fixed) / ops; ops in a
    network run slower than alone, their data no longer in cache), `overhead` adds a constant (their median of
    measured - (fixed + ops)), `none` keeps the plain sum."""
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}")
    networks = []
    for n, genotype in enumerate(random_genotypes(space, cfg, table.shapes(), count, seed)):
        timing = network_ms(table, space, genotype)
        assert space.choices is not None
        ops = table.sum_ms(space.choices(genotype))
        networks.append({"genotype": str(genotype), "measured_ms": timing.ms, "fixed_ms": table.fixed_ms,
                         "ops_ms": ops, "stable": timing.stable})
        log(f"calibration network {n + 1}/{count}: measured {timing.ms:.3f} ms, fixed part + ops "
            f"{table.fixed_ms + ops:.3f} ms")
        if bar is not None:
            bar.update(1)
    overhead, scale = 0.0, 1.0
    if networks and fit == "overhead":
        overhead = statistics.median(r["measured_ms"] - r["fixed_ms"] - r["ops_ms"] for r in networks)
    elif fit == "scale" and any(r["ops_ms"] > 0 for r in networks):
        scale = statistics.median((r["measured_ms"] - r["fixed_ms"]) / r["ops_ms"] for r in networks if r["ops_ms"] > 0)
        scale = max(scale, 1e-3)  # a whole network faster than its fixed part alone: noise, never a negative scale
    return dataclasses.replace(table, overhead_ms=overhead, ops_scale=scale,
                               calibration={"seed": seed, "fit": fit, "networks": networks})


def build_table(cfg: LatencyConfig, path: str, log: Log = _stderr, progress: bool = True) -> LatencyTable:
    """Measure the table `cfg` describes on this machine (the caller writes it to `path`)."""
    cfg.validate()
    search = cfg.search_config()
    space = get_space(cfg.space)
    assert space.layout is not None and space.choices is not None
    settings: Settings = cfg.settings()
    shape = cfg.shape(search)
    C, N = cfg.size(search)
    layout = space.layout(search, search.dataset, C, N, shape=shape)
    groups = unique_ops(layout, space.ops)
    machine = versions(settings)
    log(f"latency table: {space.name} C={C} N={N} on {shape[0]}x{shape[1]}x{shape[1]} images, {shape[2]} classes; "
        f"{len(layout.places)} places, {len(groups)} distinct op measurements + the fixed part + {cfg.calibration} "
        f"whole networks; {settings.device} ({machine.get('gpu', machine['cpu_model'])}), runtime {settings.runtime}, "
        f"{settings.threads} thread{'s' * (settings.threads != 1)}, batch {settings.batch}, {settings.clock} clock, "
        f"load {machine['load_avg_1m']}")
    began = time.perf_counter()
    ms = [[0.0] * len(p.ops or space.ops) for p in layout.places]
    unstable = 0
    floors = call_overheads((shape for _, shape, _ in groups.values()), settings)
    with ProgressBar(len(groups) + 1 + cfg.calibration, "latency build", enabled=progress) as bar:
        for (op, input_shape, _), (module, _, where) in groups.items():
            timing = measure(module, input_shape, settings)
            unstable += not timing.stable
            for place, k in where:
                ms[place][k] = max(0.0, timing.ms - floors.get(input_shape, 0.0))
            bar.update(1, op=op, ms=timing.ms)
        fixed = measure(layout.free_network(), layout.input_shape, settings)
        unstable += not fixed.stable
        bar.update(1)
        log(f"fixed part (the network without its searched ops): {fixed.ms:.3f} ms")
        places = tuple({"matrix": p.matrix, "row": p.row, "input": list(p.input_shape),
                        **({"ops": list(p.ops)} if p.ops else {}), "ms": row} for p, row in zip(layout.places, ms))
        ops = tuple(space.ops) or tuple(dict.fromkeys(op for p in layout.places for op in p.ops))
        table = LatencyTable(path=path, space=space.name, ops=ops, network=cfg.record(search),
                             config=cfgbase.to_json(search), settings=settings, fixed_ms=fixed.ms, overhead_ms=0.0,
                             places=places, machine=machine)
        table = calibrate(table, space, search, cfg.calibration, cfg.seed, cfg.fit, bar, log)
    machine = {**machine, "load_avg_1m_after": round(os.getloadavg()[0], 2)}
    if unstable:
        log(f"gdas: warning: {unstable} of {len(groups) + 1} op timings did not settle (the machine is busy?); "
            "their medians are kept")
    return dataclasses.replace(table, machine=machine,
                               extra={"built_s": round(time.perf_counter() - began, 1), "unstable_timings": unstable,
                                      "distinct_ops": len(groups),
                                      "call_overhead_ms": {"x".join(map(str, k)): v for k, v in floors.items()}})
