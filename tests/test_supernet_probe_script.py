"""scripts/supernet_probe.py: its edge names follow NB201's edge order, each edge's ops are compared on the same
children, its gradients are A's, and bad input is one line."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
import torch

from gdas.configs.files import resolve_config
from gdas.configs.search import SEARCH_TABLE, SearchConfig
from gdas.spaces.nb201 import derive_nb201
from gdas.spaces.nb201.ops import NB201_OPS

SMOKE = ["--preset", "nb201-smoke", "--warmup-epochs", "1", "--contexts", "2", "--batches", "2", "--draws", "3"]


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("supernet_probe")


def test_edge_names_follow_the_genotypes_edge_order(script) -> None:
    names = script.edge_names(3)
    for e, name in enumerate(names):
        probs = torch.full((6, len(NB201_OPS)), 0.1)
        probs[:, 0] = 0.5  # `none` everywhere ...
        probs[e, 3] = 0.9  # ... but nor_conv_3x3 on edge e
        node, source = name.split("<-")
        nodes = str(derive_nb201(probs)).strip("|").split("|+|")
        assert f"nor_conv_3x3~{source}" in nodes[int(node) - 1].split("|")


@pytest.fixture(scope="module")
def warmed(script):
    cfg = resolve_config(SearchConfig, SEARCH_TABLE, kind="search", preset="nb201-smoke",
                         overrides={"warmup_epochs": 1, "device": "cpu"})
    with tempfile.TemporaryDirectory() as tmp:
        yield cfg, script.warmed_up(cfg, Path(tmp) / "search")


def test_each_edges_ops_are_measured_on_the_same_children(script, warmed, monkeypatch) -> None:
    _, task = warmed
    probe = script.Probe(task, 1, seed=0)
    calls: list[list[int]] = []
    monkeypatch.setattr(probe, "child_loss", lambda ops: calls.append(list(ops)) or float(sum(ops)))
    losses = probe.edge_losses(3)
    edges, ops = task.model.arch.shape
    assert len(calls) == edges * ops * 3
    for e in range(edges):
        block = calls[e * ops * 3:(e + 1) * ops * 3]
        for k in range(ops):
            children = block[k * 3:(k + 1) * 3]
            assert all(child[e] == k for child in children)
            others = [child[:e] + child[e + 1:] for child in children]
            assert others == [c[:e] + c[e + 1:] for c in block[:3]]  # the same draws for every op
            assert losses[e][k] == pytest.approx(sum(map(sum, children)) / 3)


def test_the_darts_descent_is_minus_the_mixtures_gradient(script, warmed) -> None:
    _, task = warmed
    probe = script.Probe(task, 1, seed=0)
    descent = torch.tensor(probe.mean_descent("darts", 1.0, 2))  # one batch, twice: the mixture does not sample
    model = task.model
    model.sampler = "darts"
    try:
        x, y = probe.batches[0]
        loss = torch.nn.functional.cross_entropy(model(x, model.sample_arch(1.0, arch_grad=True)), y)
        grad, = torch.autograd.grad(loss, [model.arch])
    finally:
        model.sampler = "gdas"
    torch.testing.assert_close(descent, -grad, rtol=1e-4, atol=1e-7)
    assert model.sampler == "gdas"


def test_the_command_prints_the_tables_and_writes_the_numbers(script, tmp_path, capsys) -> None:
    out = tmp_path / "probe.json"
    script.main(SMOKE + ["--json", str(out)])
    printed = capsys.readouterr().out
    assert printed.count("| 3<-2 |") == 3
    result = json.loads(out.read_text())
    assert result["edges"] == script.edge_names(3) and result["ops"] == list(NB201_OPS)
    for key in ("edge_losses", "gdas_descent", "darts_descent"):
        assert len(result[key]) == 6 and all(len(row) == 5 and all(math.isfinite(v) for v in row)
                                             for row in result[key])
    assert result["tau"] == pytest.approx(0.1)  # nb201-smoke: 2 epochs, the A epoch is the last


@pytest.mark.parametrize("args, words", [
    (["--preset", "smoke"], "reads NB201 supernets"),
    (["--preset", "nb201-smoke"], "--warmup-epochs >= 1"),
    (SMOKE[:4] + ["--draws", "0"], "at least 1"),
])
def test_bad_input_is_one_line_and_exit_2(script, capsys, args: list[str], words: str) -> None:
    with pytest.raises(SystemExit) as stop:
        script.main(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
