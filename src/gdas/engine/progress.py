"""The per-epoch progress bar, duration formatting and the plain-text summary table."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Optional, TextIO

_TTY_INTERVAL = 0.1  # seconds between redraws on a terminal (~10 Hz)
_LOG_INTERVAL = 30.0  # on a log file, an intermediate line only for epochs slower than this
_BAR_WIDTH = 20


def format_duration(seconds: float) -> str:
    """Compact duration: '4.2s' under a minute, '3m05s', '1h02m03s'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if round(seconds, 1) < 60:
        return f"{seconds:.1f}s"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def format_value(value: Any) -> str:
    """Numbers compactly (4 significant digits, no exponent for large values); others via str()."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1e4:
        return f"{value:.0f}"
    return f"{value:.4g}"


def _metric_name(key: str) -> str:
    return key[:-2] + "/s" if key.endswith("_s") else key  # img_s -> img/s


def summary_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """An aligned plain-text table: header, dashes, one line per row; numbers right-aligned."""
    cells = [[format_value(row.get(col)) for col in columns] for row in rows]
    numeric = [all(isinstance(row.get(col), (int, float)) and not isinstance(row.get(col), bool)
                   for row in rows if row.get(col) is not None) for col in columns]
    widths = [max([len(col)] + [len(line[i]) for line in cells]) for i, col in enumerate(columns)]

    def fmt(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    lines = [fmt(list(columns)), "  ".join("-" * w for w in widths)]
    lines += [fmt(line) for line in cells]
    return "\n".join(lines)


class ProgressBar:
    """Progress of one epoch: redrawn in place on a TTY, a few whole lines otherwise (readable logs)."""

    def __init__(self, total: int, desc: str, stream: Optional[TextIO] = None, enabled: bool = True,
                 *, clock: Callable[[], float] = time.monotonic):
        self.total = max(0, int(total))
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.n = 0
        self.metrics: dict[str, Any] = {}
        self._clock = clock
        self._start = clock()
        self._last_draw = -math.inf
        self._last_len = 0
        self._next_milestone = 1  # in tenths of the epoch, for non-TTY lines
        self._closed = False
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())

    @property
    def elapsed(self) -> float:
        return self._clock() - self._start

    def update(self, n: int = 1, **metrics: Any) -> None:
        """Advance by `n` steps; `metrics` (e.g. loss=, acc=, tau=, img_s=) replace the shown values."""
        self.n += n
        self.metrics.update(metrics)
        if not self.enabled or self._closed:
            return
        now = self._clock()
        if self.tty:
            if now - self._last_draw >= _TTY_INTERVAL or (self.total and self.n >= self.total):
                self._draw_tty(now)
        elif self.total and self.n * 10 >= self._next_milestone * self.total:
            self._next_milestone = self.n * 10 // self.total + 1
            # Short epochs log one line at close; long ones also at most every 10%.
            if self.n < self.total and now - self._start >= _LOG_INTERVAL:
                self._write_line(self.render(now))

    def render(self, now: Optional[float] = None) -> str:
        """The current progress line (without any carriage return or newline)."""
        elapsed = (self._clock() if now is None else now) - self._start
        parts = [self.desc] if self.desc else []
        if self.total:
            frac = min(1.0, self.n / self.total)
            if self.tty:
                filled = int(frac * _BAR_WIDTH)
                parts.append("[" + "#" * filled + "." * (_BAR_WIDTH - filled) + "]")
            parts.append(f"{self.n}/{self.total} {frac * 100:3.0f}%")
            eta = elapsed * (self.total - self.n) / self.n if 0 < self.n < self.total else 0.0
            parts.append(format_duration(elapsed) + (f"<{format_duration(eta)}" if eta > 0 else ""))
        else:
            parts += [str(self.n), format_duration(elapsed)]
        parts += [f"{_metric_name(k)}={format_value(v)}" for k, v in self.metrics.items()]
        return " ".join(parts)

    def _draw_tty(self, now: float) -> None:
        line = self.render(now)
        pad = max(0, self._last_len - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._last_len = len(line)
        self._last_draw = now

    def _write_line(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        now = self._clock()
        if self.tty:
            self._draw_tty(now)
            self.stream.write("\n")
            self.stream.flush()
        else:
            self._write_line(self.render(now))

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
