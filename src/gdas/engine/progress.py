"""The per-epoch progress bar (tqdm), duration and number formatting, and plain-text tables (tabulate)."""

from __future__ import annotations

import math
from typing import Any, Optional, TextIO

from tabulate import tabulate
from tqdm import tqdm


def format_duration(seconds: float) -> str:
    """A duration as tqdm writes it: 'MM:SS', or 'H:MM:SS' from an hour on; '?' when unknown."""
    return tqdm.format_interval(max(0.0, seconds)) if math.isfinite(seconds) else "?"


def format_value(value: Any) -> str:
    """Numbers compactly (4 significant digits, no exponent for large values); others via str()."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    if isinstance(value, int) or not math.isfinite(value):
        return str(value)
    return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def _metric_name(key: str) -> str:
    return key[:-2] + "/s" if key.endswith("_s") else key  # img_s -> img/s


def summary_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """An aligned plain-text table: header, dashes, one line per row; numbers right-aligned, '-' if missing."""
    cells = [[None if row.get(col) is None else format_value(row.get(col)) for col in columns] for row in rows]
    return tabulate(cells, headers=columns, tablefmt="simple", missingval="-", numalign="right")


class ProgressBar(tqdm):
    """One epoch's tqdm bar, with the step metrics (loss, acc, tau, img/s, ...) as its postfix.

    It draws only on a terminal (tqdm's `disable=None`): redirected to a file or a pipe it stays silent,
    and the epoch loop's one line per epoch is the log.
    """

    def __init__(self, total: int, desc: str, stream: Optional[TextIO] = None, enabled: bool = True):
        super().__init__(total=total or None, desc=desc, file=stream, disable=None if enabled else True,
                         unit="step", dynamic_ncols=True, mininterval=0.1, leave=True)

    def update(self, n: float = 1, **metrics: Any) -> Optional[bool]:  # type: ignore[override]
        """Advance by `n` steps; `metrics` (e.g. loss=, acc=, tau=, img_s=) replace the shown values."""
        if metrics and not self.disable:
            self.set_postfix({_metric_name(k): format_value(v) for k, v in metrics.items()}, refresh=False)
        return super().update(n)
