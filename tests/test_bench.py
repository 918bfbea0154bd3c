"""Tests for the benchmark logic that do not depend on timing: the static child is the W step, CLI output keys."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from cli_helpers import expect_error

from gdas.bench.measure import KINDS, BenchConfig, worker_memory
from gdas.spaces.darts.child import ChildCell, child_network
from gdas.cli.main import main
from gdas.configs.search import SearchConfig
from gdas.engine.distributed import Context
from gdas.engine.loop import optimizer_step
from gdas.spaces.darts.ops import PRIMITIVES
from gdas.search import weight_optimizer
from gdas.spaces.darts.supernet import CellArch, SearchCell, SearchNetwork

NONE = PRIMITIVES.index("none")


def _setup(frc: bool = False, seed: int = 0, channels_last: bool = False):
    torch.manual_seed(seed)
    net = SearchNetwork(8, 1, 3, frc=frc)
    g = torch.Generator().manual_seed(seed + 1)
    x, y = torch.randn(4, 3, 16, 16, generator=g), torch.randint(0, 3, (4,), generator=g)
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    archs = net.sample_arch(2.0, arch_grad=False, generator=torch.Generator().manual_seed(seed + 2))
    return net, x, y, archs


def _pairs(net: SearchNetwork, child, archs):
    """(supernet module, child module) for every module the child copied: stem, preprocessing, sampled ops."""
    pairs = [(net.stem, child.stem), (net.classifier, child.classifier)]
    for cell, ccell, arch in zip(net.cells, child.cells, archs):
        if arch is None:
            pairs.append((cell, ccell))
            continue
        assert isinstance(ccell, ChildCell)
        sampled = [(e, k) for e, k in enumerate(arch.indices) if k != NONE]
        assert len(ccell.ops) == len(sampled)
        pairs += [(cell.pre0, ccell.pre0), (cell.pre1, ccell.pre1)]
        pairs += [(cell.edges[e][k], op) for (e, k), op in zip(sampled, ccell.ops)]
    return pairs


@pytest.mark.parametrize("frc,channels_last", [(False, False), (True, False), (False, True)])
def test_child_network_is_exactly_the_w_step(frc, channels_last):
    net, x, y, archs = _setup(frc, channels_last=channels_last)
    child = child_network(net, archs)
    n_child = sum(p.numel() for p in child.parameters())
    assert n_child < sum(p.numel() for p in net.weight_parameters())
    assert not any(p.shape == net.arch_normal.shape for p in child.parameters())  # no architecture parameters

    out_net, out_child = net(x, archs), child(x)
    assert torch.equal(out_net, out_child)  # train mode: batch statistics, bit-identical
    F.cross_entropy(out_net, y).backward()
    F.cross_entropy(out_child, y).backward()
    pairs = _pairs(net, child, archs)
    covered = 0
    for big, small in pairs:
        for p, q in zip(big.parameters(), small.parameters(), strict=True):
            assert p.grad is not None and torch.equal(p.grad, q.grad)
            covered += q.numel()
        for b1, b2 in zip(big.buffers(), small.buffers(), strict=True):  # BN running statistics too
            assert torch.equal(b1, b2)
    assert covered == n_child  # every child parameter has its supernet twin
    with_grad = sum(p.numel() for p in net.weight_parameters() if p.grad is not None)
    assert with_grad == n_child  # the supernet trained exactly the child's parameters


def test_one_sgd_update_is_identical():
    net, x, y, archs = _setup(seed=3)
    child = child_network(net, archs)
    cfg, ctx, cpu = SearchConfig(), Context(), torch.device("cpu")
    w_params, c_params = net.weight_parameters(), list(child.parameters())
    for model, params, logits in ((net, w_params, lambda: net(x, archs)), (child, c_params, lambda: child(x))):
        opt = weight_optimizer(params, cfg, cpu)
        for _ in range(2):  # the second step uses momentum
            optimizer_step(F.cross_entropy(logits(), y), opt, params, cfg.grad_clip, ctx)
    for big, small in _pairs(net, child, archs):
        for p, q in zip(big.parameters(), small.parameters(), strict=True):
            assert torch.equal(p, q)


def test_child_network_refuses_darts_weights():
    torch.manual_seed(0)
    net = SearchNetwork(8, 1, 3, sampler="darts")
    with pytest.raises(ValueError, match="sampled op indices"):
        child_network(net, net.sample_arch(1.0, arch_grad=False))
    with pytest.raises(ValueError, match="one arch per cell"):
        child_network(net, [None])


def test_all_none_cell_matches_supernet():
    torch.manual_seed(0)
    cell = SearchCell(4, 6, 6, 4, reduction=True, reduction_prev=False)
    arch = CellArch(None, [NONE] * 14)
    s = torch.randn(2, 6, 7, 7)
    assert torch.equal(ChildCell(cell, arch.indices)(s, s), cell(s, s, arch))


TINY = ["--samples", "2", "--warmup", "1", "--C", "8", "--N", "1", "--batch", "4", "--threads", "1", "--device", "cpu"]


def test_bench_search_json_keys(capsys):
    assert main(["bench", "search", *TINY, "--no-memory", "--channels-last", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["channels_last"] is True
    for k in KINDS:
        assert out[f"{k}_step_ms"] > 0 and len(out["samples_ms"][k]) == 2
    assert out["gdas_over_child"] == pytest.approx(out["gdas_step_ms"] / out["child_step_ms"], rel=1e-3)
    assert out["darts_over_gdas"] == pytest.approx(out["darts_step_ms"] / out["gdas_step_ms"], rel=1e-3)
    assert out["machine"]["torch"] == torch.__version__ and out["machine"]["threads"] == 1
    assert out["config"]["C"] == 8 and out["config"]["memory"] is False
    assert "gdas_peak_mb" not in out


def test_bench_search_nb201_gives_the_darts_keys(capsys):
    results = {}
    for space in ("darts", "nb201"):
        assert main(["bench", "search", *TINY, "--space", space, "--no-memory", "--json"]) == 0
        results[space] = json.loads(capsys.readouterr().out)
    darts, nb201 = results["darts"], results["nb201"]
    assert set(nb201) == set(darts)
    for key, value in darts.items():
        if isinstance(value, dict):
            assert set(nb201[key]) == set(value), key
    assert nb201["config"]["space"] == "nb201" and nb201["config_search"]["steps"] == 3
    assert all(nb201[f"{k}_step_ms"] > 0 and len(nb201["samples_ms"][k]) == 2 for k in KINDS)
    nb201_child = BenchConfig(space="nb201", device="cpu", C=8, N=1, batch=4, samples=1, warmup=0, threads=1)
    assert worker_memory(nb201_child, "child") > 0  # the space's own child network, in its own process


def test_memory_worker_runs_in_its_own_process():
    b = BenchConfig(device="cpu", C=8, N=1, batch=4, samples=1, warmup=0, threads=1)
    assert worker_memory(b, "gdas") > 0


def test_bench_data_and_epoch_json(capsys):
    assert main(["bench", "data", *TINY, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["augment_images_per_s"] > 0 and data["w_step_images_per_s"] > 0
    assert data["augment_over_step"] == pytest.approx(data["augment_images_per_s"] / data["w_step_images_per_s"],
                                                      rel=0.01)
    assert main(["bench", "epoch", "--preset", "smoke", "--warmup-steps", "1", "--threads", "1", "--json"]) == 0
    epoch = json.loads(capsys.readouterr().out)
    assert epoch["steps_per_epoch"] == 4 and epoch["epochs"] == 2
    assert epoch["projected_search_s"] == pytest.approx(2 * epoch["epoch_s"], abs=0.06)  # rounded to 0.1 s
    assert epoch["config"]["preset"] == "smoke"
    assert main(["bench", "epoch", "--preset", "smoke", "--warmup-steps", "0", "--time-steps", "2", "--threads", "1",
                 "--json"]) == 0
    part = json.loads(capsys.readouterr().out)
    assert part["timed_steps"] == 2 and part["steps_per_epoch"] == 4
    assert part["epoch_s"] == pytest.approx(2 * part["measured_s"], abs=0.002)


@pytest.mark.parametrize("argv,contains", [
    (["bench", "search", "--C", "7"], "--C must be even"),
    (["bench", "search", "--samples", "0"], "--samples"),
    (["bench", "search", "--device", "tpu"], "--device"),
    (["bench", "epoch", "--preset", "smoke", "--warmup-steps", "-1"], "--warmup-steps"),
    (["bench", "epoch", "--preset", "smoke", "--time-steps", "0"], "--time-steps"),
])
def test_bad_bench_options(capsys, argv, contains):
    expect_error(capsys, *argv, contains=contains)
