"""Tests for the progress bar, duration formatting and summary table."""

from __future__ import annotations

import io

from gdas.engine.progress import ProgressBar, format_duration, format_value, summary_table


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class TTYStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_duration():
    assert format_duration(4.2) == "4.2s"
    assert format_duration(0) == "0.0s"
    assert format_duration(59.94) == "59.9s"
    assert format_duration(59.96) == "1m00s"
    assert format_duration(185) == "3m05s"
    assert format_duration(3723) == "1h02m03s"
    assert format_duration(3599.6) == "1h00m00s"
    assert format_duration(100 * 3600) == "100h00m00s"
    assert format_duration(-1) == "0.0s"
    assert format_duration(float("inf")) == "?"


def test_format_value():
    assert format_value(1.23456) == "1.235"
    assert format_value(12345.6) == "12346"
    assert format_value(7) == "7"
    assert format_value(None) == "-"
    assert format_value("abc") == "abc"


def test_non_tty_short_epoch_prints_one_final_line():
    clock, out = FakeClock(), io.StringIO()
    with ProgressBar(100, "epoch 1/3", stream=out, clock=clock) as bar:
        for i in range(100):
            clock.t += 0.05
            bar.update(loss=2.0 - i / 100, acc=0.5, tau=9.9, img_s=1234.5)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("epoch 1/3 100/100 100%")
    assert "loss=1.01" in lines[0] and "acc=0.5" in lines[0] and "tau=9.9" in lines[0]
    assert "img/s=1234" in lines[0]  # 1234.5 -> 4 significant digits
    assert "5.0s" in lines[0]


def test_non_tty_long_epoch_logs_at_most_every_ten_percent():
    clock, out = FakeClock(), io.StringIO()
    bar = ProgressBar(1000, "search", stream=out, clock=clock)
    for _ in range(1000):
        clock.t += 1.0  # 1000 s epoch
        bar.update(loss=1.0)
    bar.close()
    bar.close()  # idempotent
    lines = out.getvalue().splitlines()
    # Intermediate lines start once 30 s have passed: 10%..90% -> 9 lines, plus the final one.
    assert len(lines) == 10
    assert lines[0].startswith("search 100/1000  10%")
    assert lines[-2].startswith("search 900/1000  90%")
    assert lines[-1].startswith("search 1000/1000 100%")
    assert "1m40s<15m00s" in lines[0]  # elapsed 100 s, ETA 900 s


def test_tty_redraws_in_place_throttled():
    clock, out = FakeClock(), TTYStream()
    bar = ProgressBar(50, "ep", stream=out, clock=clock)
    for _ in range(49):
        clock.t += 0.01  # 100 Hz updates
        bar.update(loss=0.5)
    text = out.getvalue()
    redraws = text.count("\r")
    assert 3 <= redraws <= 6  # ~0.49 s at <=10 Hz, not 49
    assert "\n" not in text
    assert "[" in text and "#" in text
    clock.t += 0.01
    bar.update(loss=0.25)  # the last step always draws
    bar.close()
    text = out.getvalue()
    assert text.endswith("\n")
    final = text.rstrip("\n").split("\r")[-1]
    assert final.startswith("ep [" + "#" * 20 + "] 50/50 100%")
    assert "loss=0.25" in final


def test_tty_pads_shorter_line_over_longer():
    clock, out = FakeClock(), TTYStream()
    bar = ProgressBar(2, "x", stream=out, clock=clock)
    bar.update(note="a-very-long-metric-value")
    first = out.getvalue().split("\r")[-1]
    clock.t += 1
    bar.update(note="b")
    second = out.getvalue().split("\r")[-1]
    assert len(second) >= len(first)
    bar.close()


def test_disabled_writes_nothing_but_counts():
    out = io.StringIO()
    with ProgressBar(10, "quiet", stream=out, enabled=False) as bar:
        bar.update(5, loss=1.0)
        assert bar.n == 5
    assert out.getvalue() == ""


def test_unknown_total():
    clock, out = FakeClock(), io.StringIO()
    with ProgressBar(0, "stream", stream=out, clock=clock) as bar:
        bar.update(3, loss=2.0)
    assert out.getvalue().startswith("stream 3 0.0s loss=2")


def test_summary_table_alignment():
    rows = [{"seed": 0, "val_acc": 87.123456, "genotype": "normal: a"},
            {"seed": 11, "val_acc": 9.5, "genotype": "normal: bb"},
            {"seed": 2}]
    table = summary_table(rows, ["seed", "val_acc", "genotype"])
    lines = table.splitlines()
    assert lines[0] == "seed  val_acc  genotype"
    assert lines[1] == "----  -------  ----------"
    assert lines[2] == "   0    87.12  normal: a"
    assert lines[3] == "  11      9.5  normal: bb"
    assert lines[4] == "   2        -  -"
    assert summary_table([], ["a"]) == "a\n-"
