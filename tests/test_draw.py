"""Tests for drawing genotypes as DOT (and SVG/PNG through graphviz when present)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from gdas.reporting import draw
from gdas.reporting.draw import draw_genotype, genotype_to_dot, resolve_and_draw
from gdas.errors import GdasError
from gdas.genotypes import REGISTRY, Genotype, save_genotype

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HAS_DOT = shutil.which("dot") is not None


def _edges(dot: str) -> set[tuple[str, str, str | None]]:
    found = set()
    for m in re.finditer(r'^\s*"([^"]+)" -> "([^"]+)" \[([^\]]*)\];$', dot, re.M):
        label = re.search(r'label="((?:[^"\\]|\\.)*)"', m.group(3))
        found.add((m.group(1), m.group(2), label.group(1) if label else None))
    return found


def _nodes(dot: str) -> set[str]:
    return set(re.findall(r'^\s*"([^"]+)" \[fillcolor', dot, re.M))


def test_gdas_normal_and_reduce_cells():
    normal = genotype_to_dot(REGISTRY["GDAS"], "normal")
    assert "rankdir=LR" in normal and "style=filled" in normal and "shape=rect" in normal
    assert _nodes(normal) == {"c_{k-2}", "c_{k-1}", "0", "1", "2", "3", "c_{k}"}
    edges = _edges(normal)
    # GDAS normal: (skip,0)(skip,1) | (skip,0)(sep5,2) | (sep3,3)(skip,0) | (sep5,4)(sep3,3)
    assert {("c_{k-2}", "0", "skip_connect"), ("c_{k-1}", "0", "skip_connect"),
            ("c_{k-2}", "1", "skip_connect"), ("0", "1", "sep_conv_5x5"),
            ("1", "2", "sep_conv_3x3"), ("c_{k-2}", "2", "skip_connect"),
            ("2", "3", "sep_conv_5x5"), ("1", "3", "sep_conv_3x3")} <= edges
    assert {(str(i), "c_{k}", None) for i in range(4)} <= edges
    assert len(edges) == 12

    reduce_edges = _edges(genotype_to_dot(REGISTRY["GDAS"], "reduce"))
    assert ("0", "2", "dil_conv_5x5") in reduce_edges  # (dil5, node 2) into node 4
    assert ("c_{k-2}", "0", "sep_conv_5x5") in reduce_edges and ("c_{k-1}", "0", "sep_conv_3x3") in reduce_edges
    assert len(reduce_edges) == 12


def test_fixed_reduction_cell_drawn_as_fix_r():
    dot = genotype_to_dot(REGISTRY["GDAS_FRC"], "reduce")
    edges = _edges(dot)
    into = {(src, dst) for src, dst, label in edges if label and label.startswith("conv_1x3_3x1")}
    pools = {(src, dst) for src, dst, label in edges if label and label.startswith("max_pool_3x3")}
    assert {src for src, _ in into} == {"c_{k-2}", "c_{k-1}"} and len(into) == 2
    assert {src for src, _ in pools} == {"c_{k-2}", "c_{k-1}"} and len(pools) == 2
    branch_nodes = {dst for _, dst in into | pools}
    assert {(b, "c_{k}", None) for b in branch_nodes} <= edges
    assert len(edges) == 8
    assert "FIX-R" in dot
    # The FRC normal cell is a regular searched cell.
    assert ("0", "1", "sep_conv_3x3") in _edges(genotype_to_dot(REGISTRY["GDAS_FRC"], "normal"))


def test_recurrent_cell():
    dot = genotype_to_dot(REGISTRY["GDAS_RNN"], "recurrent")
    assert _nodes(dot) == {"x_{t}", "h_{t-1}", "h_{t}"} | {str(i) for i in range(9)}
    edges = _edges(dot)
    # (relu,0) (relu,0) (identity,1) (relu,1) (tanh,0) (relu,2) (identity,4) (identity,2)
    expected = [("0", "1", "relu"), ("0", "2", "relu"), ("1", "3", "identity"), ("1", "4", "relu"),
                ("0", "5", "tanh"), ("2", "6", "relu"), ("4", "7", "identity"), ("2", "8", "identity")]
    assert set(expected) <= edges
    assert {("x_{t}", "0", None), ("h_{t-1}", "0", None)} <= edges
    assert {(str(i), "h_{t}", None) for i in range(1, 9)} <= edges
    assert len(edges) == 2 + 8 + 8
    assert "mean" in dot


def test_concat_subset_and_inputs_in_concat():
    g = Genotype(REGISTRY["GDAS"].normal, (1, 4, 5), None, None)
    edges = _edges(genotype_to_dot(g, "normal"))
    out = {src for src, dst, _ in edges if dst == "c_{k}"}
    assert out == {"c_{k-1}", "2", "3"}


def test_labels_are_quoted():
    assert draw._q('a "b" \\ c\nd') == '"a \\"b\\" \\\\ c\\nd"'


def test_wrong_cell_or_object():
    with pytest.raises(GdasError, match="recurrent"):
        genotype_to_dot(REGISTRY["GDAS_RNN"], "normal")
    with pytest.raises(GdasError, match="normal, reduce"):
        genotype_to_dot(REGISTRY["GDAS"], "recurrent")
    with pytest.raises(GdasError, match="cannot draw"):
        genotype_to_dot("GDAS", "normal")  # type: ignore[arg-type]


def test_without_dot_only_dot_files(tmp_path, monkeypatch):
    monkeypatch.setattr(draw.shutil, "which", lambda name: None)
    paths = draw_genotype(REGISTRY["GDAS"], tmp_path / "cells")
    assert paths == [tmp_path / "cells" / "normal.dot", tmp_path / "cells" / "reduce.dot"]
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == ["normal.dot", "reduce.dot"]
    rnn_paths = draw_genotype(REGISTRY["GDAS_RNN"], tmp_path / "rnn")
    assert [p.name for p in rnn_paths] == ["recurrent.dot"]
    assert rnn_paths[0].read_text() == genotype_to_dot(REGISTRY["GDAS_RNN"], "recurrent")


@pytest.mark.skipif(not HAS_DOT, reason="graphviz dot not installed")
def test_with_dot_renders_svg_and_png(tmp_path):
    paths = draw_genotype(REGISTRY["GDAS_FRC"], tmp_path)
    assert [p.name for p in paths] == ["normal.dot", "normal.svg", "normal.png",
                                       "reduce.dot", "reduce.svg", "reduce.png"]
    for p in paths:
        assert p.is_file() and p.stat().st_size > 0
    assert (tmp_path / "normal.png").read_bytes()[:8] == PNG_SIGNATURE
    svg = (tmp_path / "reduce.svg").read_text()
    assert "<svg" in svg and "concat" in svg and "max_pool_3x3" in svg
    rnn = draw_genotype(REGISTRY["GDAS_RNN"], tmp_path / "rnn", formats=("png",))
    assert [p.name for p in rnn] == ["recurrent.dot", "recurrent.png"]
    assert rnn[1].read_bytes()[:8] == PNG_SIGNATURE


def test_dot_failure_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(draw.shutil, "which", lambda name: "/nonexistent/dot")

    def fake_run(cmd, **kwargs):
        assert kwargs["timeout"] > 0
        return subprocess.CompletedProcess(cmd, 1, "", "Error: syntax error in line 3\nmore\n")

    monkeypatch.setattr(draw.subprocess, "run", fake_run)
    with pytest.raises(GdasError) as info:
        draw_genotype(REGISTRY["GDAS"], tmp_path)
    message = str(info.value)
    assert "\n" not in message and "syntax error in line 3" in message and "normal.dot" in message

    def timeout_run(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    monkeypatch.setattr(draw.subprocess, "run", timeout_run)
    with pytest.raises(GdasError, match="timed out"):
        draw_genotype(REGISTRY["GDAS"], tmp_path)


def test_bad_format_rejected_before_writing(tmp_path):
    with pytest.raises(GdasError, match="invalid drawing format"):
        draw_genotype(REGISTRY["GDAS"], tmp_path / "x", formats=("svg", "../evil"))
    assert not (tmp_path / "x").exists()


def test_resolve_and_draw_from_name_and_run_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(draw.shutil, "which", lambda name: None)
    assert [p.name for p in resolve_and_draw("GDAS_RNN", tmp_path / "a")] == ["recurrent.dot"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_genotype(REGISTRY["DARTS_V2"], run_dir / "genotype.json")
    paths = resolve_and_draw(str(run_dir), tmp_path / "b")
    assert [p.name for p in paths] == ["normal.dot", "reduce.dot"]
    assert ("c_{k-2}", "0", "max_pool_3x3") in _edges(paths[1].read_text())
    with pytest.raises(GdasError):
        resolve_and_draw("NOT_A_GENOTYPE", tmp_path / "c")
    (tmp_path / "bad.json").write_text(json.dumps({"normal": "oops"}))
    with pytest.raises(GdasError):
        resolve_and_draw(str(tmp_path / "bad.json"), tmp_path / "d")
