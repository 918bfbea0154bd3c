"""docs/api.md: every ```python block runs, in order and in one namespace, in a fresh working directory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_doc_has_the_examples_the_api_promises() -> None:
    text = DOC.read_text()
    blocks = python_blocks(text)
    assert len(blocks) >= 7
    for call in ("gdas.search(", "gdas.train(", "gdas.build_network(", "gdas.build_supernet(", "gdas.derive(",
                 "gdas.tau_at(", "sample_arch(", "config=", "Dataset"):
        assert any(call in block for block in blocks), call


def test_every_example_runs(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GDAS_CACHE_DIR", str(tmp_path / "cache"))  # the folder example's decoded images
    namespace: dict = {"__name__": "docs_api"}
    for i, block in enumerate(python_blocks(DOC.read_text())):
        try:
            exec(compile(block, f"docs/api.md block {i + 1}", "exec"), namespace)
        except Exception as exc:  # name the block: the traceback's file is the doc
            pytest.fail(f"docs/api.md block {i + 1} failed: {type(exc).__name__}: {exc}")
    printed = capsys.readouterr().out
    assert "did you mean 'epochs'?" in printed
    # The examples' claims hold: a complete run comes back unchanged, a config.json repeats its run.
    assert namespace["again"].genotype == namespace["result"].genotype
    assert namespace["repeat"].genotype == namespace["from_file"].genotype
    assert (tmp_path / "runs" / "arrays-search" / "data.npz").is_file()
    assert not (tmp_path / "runs" / "never").exists()
    assert namespace["several"].best_seed in (0, 1)
    assert json.loads((tmp_path / "runs" / "folder-search" / "classes.json").read_text()) == [
        "blue", "green", "grey", "red"]
