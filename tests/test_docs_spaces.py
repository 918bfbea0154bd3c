"""docs/spaces.md: every ```python block runs, in order and in one namespace, in a fresh working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_docs_api import python_blocks

DOC = Path(__file__).resolve().parents[1] / "docs" / "spaces.md"


def test_doc_shows_the_blocks_and_the_calls() -> None:
    blocks = python_blocks(DOC.read_text())
    for call in ("gdas.nn.Choice(", "Choice.from_values(", "gdas.nn.InputChoice(", "gdas.nn.Repeat(", "gdas.search(",
                 "gdas.freeze(", "gdas.train(", "metric=", "seeds=", "cost=", "weights=", "torch.jit.trace("):
        assert any(call in block for block in blocks), call


def test_every_example_runs(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_spaces"}
    for i, block in enumerate(python_blocks(DOC.read_text())):
        try:
            exec(compile(block, f"docs/spaces.md block {i + 1}", "exec"), namespace)
        except Exception as exc:  # name the block: the traceback's file is the doc
            pytest.fail(f"docs/spaces.md block {i + 1} failed: {type(exc).__name__}: {exc}")
    printed = capsys.readouterr().out
    assert "choice 'op' at op: candidate halve gives an output of shape (1, 4, 3, 3)" in printed
    assert "3.5 M parameters" in printed
    assert set(namespace["result"].genotype.choices) == {"block", "depth"}
    assert namespace["again"].best_seed in (0, 1)
    assert not (tmp_path / "runs" / "never").exists()
    assert (tmp_path / "runs" / "mine" / "genotype.json").is_file()
