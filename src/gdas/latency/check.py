"""`gdas latency check`: how far to trust a table, measured: random networks of its space timed end to end under
its settings, against its prediction (mean absolute percentage error, Spearman's rank correlation)."""

from __future__ import annotations

import os
import statistics
import sys
from typing import Any, Callable, Optional, Sequence

from gdas.configs import base as cfgbase
from gdas.configs.search import SearchConfig
from gdas.engine.progress import ProgressBar
from gdas.errors import GdasError
from gdas.latency.networks import network_ms, random_genotypes
from gdas.latency.table import LatencyTable
from gdas.latency.timing import versions
from gdas.spaces import get_space

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Spearman's rank correlation (Pearson's on the ranks); None when either side has no spread."""
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else None


def mape(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Mean absolute percentage error of the predictions, in percent of the measured values."""
    return 100 * statistics.fmean(abs(p - m) / m for p, m in zip(predicted, measured))


def check_table(table: LatencyTable, samples: int, seed: int = 1, log: Log = _stderr,
                progress: bool = True) -> dict[str, Any]:
    """`samples` random networks (none of the table's calibration networks) measured under the table's
    settings, with the table's prediction (fixed part + overhead + ops) and its plain sum (no overhead)."""
    if samples < 2:
        raise GdasError(f"--samples must be at least 2 (a rank correlation needs two networks), got {samples}")
    space = get_space(table.space)
    table.check_space(space)
    table.settings.check()
    here = versions(table.settings)
    warning = table.device_warning(here)
    if warning:
        log(warning)
    try:
        cfg = cfgbase.from_json(SearchConfig, table.config)
    except (GdasError, TypeError):
        raise GdasError(f"{table.path} was built by another gdas version (its search config does not read here); "
                        "build it again with gdas latency build") from None
    assert space.choices is not None
    table.check_network(space, cfg, table.shape)  # the table still describes this gdas's network of its size
    seen = {n["genotype"] for n in table.calibration.get("networks", [])}
    genotypes = random_genotypes(space, cfg, table.shapes(), samples, seed, exclude=seen)
    log(f"checking {table.describe()} on {len(genotypes)} random networks (load {here['load_avg_1m']})")
    rows = []
    with ProgressBar(len(genotypes), "latency check", enabled=progress) as bar:
        for genotype in genotypes:
            choices = space.choices(genotype)
            timing = network_ms(table, space, genotype)
            rows.append({"genotype": str(genotype), "measured_ms": timing.ms, "predicted_ms": table.predict_ms(choices),
                         "plain_ms": table.plain_ms(choices), "stable": timing.stable})
            bar.update(1, measured=timing.ms, predicted=rows[-1]["predicted_ms"])
    measured = [r["measured_ms"] for r in rows]
    predicted = [r["predicted_ms"] for r in rows]
    plain = [r["plain_ms"] for r in rows]
    return {"table": table.path, "space": table.space, "samples": len(rows), "seed": seed,
            "mape_percent": mape(predicted, measured), "spearman": spearman(predicted, measured),
            "plain_mape_percent": mape(plain, measured), "plain_spearman": spearman(plain, measured),
            "fit": table.calibration.get("fit", "none"), "overhead_ms": table.overhead_ms,
            "ops_scale": table.ops_scale, "fixed_ms": table.fixed_ms,
            "calibration_networks": len(seen), "mean_measured_ms": statistics.fmean(measured),
            "settings": table.settings.to_json(), "machine": {**here, "load_avg_1m_after": round(os.getloadavg()[0], 2)},
            "table_machine": {k: table.machine.get(k) for k in ("cpu_model", "gpu", "torch", "onnxruntime")
                              if table.machine.get(k)},
            "device_warning": warning, "networks": rows}
