"""Tests for the progress bar (tqdm), duration and number formatting, and the summary table (tabulate)."""

from __future__ import annotations

import io

from gdas.engine.progress import ProgressBar, format_duration, format_value, summary_table


class TTYStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_duration():
    assert format_duration(4.2) == "00:04"
    assert format_duration(185) == "03:05"
    assert format_duration(3723) == "1:02:03"
    assert format_duration(-1) == "00:00"
    assert format_duration(float("inf")) == "?"


def test_format_value():
    assert format_value(1.23456) == "1.235"
    assert format_value(12345.6) == "12346"
    assert format_value(7) == "7"
    assert format_value(None) == "-"
    assert format_value("abc") == "abc"


def test_terminal_bar_shows_the_step_metrics_and_ends_its_line():
    out = TTYStream()
    with ProgressBar(100, "search 1/3", stream=out) as bar:
        for i in range(100):
            bar.update(loss=2.0 - i / 100, acc=0.5, tau=9.9, img_s=1234.5)
    final = out.getvalue().rstrip("\n").split("\r")[-1]
    assert final.startswith("search 1/3: 100%") and "100/100" in final
    assert "loss=1.01" in final and "acc=0.5" in final and "tau=9.9" in final
    assert "img/s=1234" in final  # 4 significant digits, not tqdm's 1.23e+3
    assert out.getvalue().endswith("\n")


def test_quiet_when_the_stream_is_not_a_terminal():
    out = io.StringIO()  # a log file or a pipe
    with ProgressBar(10, "epoch", stream=out) as bar:
        bar.update(5, loss=1.0)
        bar.update(5, loss=0.5)
    assert out.getvalue() == ""


def test_disabled_writes_nothing_even_on_a_terminal():
    out = TTYStream()
    with ProgressBar(10, "quiet", stream=out, enabled=False) as bar:
        bar.update(5, loss=1.0)
    assert out.getvalue() == ""


def test_unknown_total_counts_steps():
    out = TTYStream()
    with ProgressBar(0, "stream", stream=out) as bar:
        bar.update(3, ppl=2.0)
    final = out.getvalue().rstrip("\n").split("\r")[-1]
    assert final.startswith("stream: 3") and "ppl=2" in final


def test_summary_table_alignment():
    rows = [{"seed": 0, "val_acc": 87.123456, "genotype": "normal: a"},
            {"seed": 11, "val_acc": 9.5, "genotype": "normal: bb"},
            {"seed": 2}]
    lines = summary_table(rows, ["seed", "val_acc", "genotype"]).splitlines()
    assert lines[0].split() == ["seed", "val_acc", "genotype"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["0", "87.12", "normal:", "a"]
    assert lines[4].split() == ["2", "-", "-"]
    right = lines[0].index("val_acc") + len("val_acc")  # numbers (and '-') end under their header's end
    assert all(line[:right].endswith(v) for line, v in zip(lines[2:], ["87.12", "9.5", "-"]))
    assert lines[2].index("normal") == lines[0].index("genotype")  # text left-aligned
