"""Distributed search: 2 CPU processes over gloo agree with each other and with one process on the global batch.

Run as a script under torchrun (see `_launch`), this file is also the per-rank entry point: it runs the real
`gdas search` CLI and dumps each rank's final A, W and genotype for the test to compare.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_helpers import launch_two_ranks

from gdas.cli.main import main
from gdas.engine.distributed import Context, local_batch, shard
from gdas.errors import GdasError
from gdas.genotypes import load_genotype
from gdas.engine.rundir import RunDir
from gdas.data.search import ImageSearchData, loss_and_correct
from gdas.search import SearchTask

# Crop padding 0 and no flip: every image is seen unaugmented, so one process and two see the same pixels.
ARGS = ["--preset", "smoke", "--no-progress", "--threads", "1", "--crop-padding", "0", "--no-flip"]


def _launch(out: Path, dumps: Path, *extra: str) -> subprocess.CompletedProcess:
    return launch_two_ranks(__file__, dumps, "search", *ARGS, "--out", out, *extra)


def test_two_ranks_agree_and_match_one_process(tmp_path: Path, capsys, monkeypatch) -> None:
    out, dumps = tmp_path / "dist", tmp_path / "dumps"
    proc = _launch(out, dumps)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("genotype: normal:") == 1  # only rank 0 prints
    r0, r1 = (torch.load(dumps / f"rank{r}.pt") for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    # Same sample on every rank and gradients averaged before every update: bit-identical A, W and genotype.
    for a, b in zip(r0["A"], r1["A"], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(r0["W"], r1["W"])
    assert r0["genotype"] == r1["genotype"] == str(load_genotype(out))
    saved = RunDir(out).load_checkpoint()["task"]["model"]
    assert torch.equal(saved["arch_normal"], r0["A"][0])  # rank 0 wrote the run

    # One process on the same global batch, computing each rank's half in its own forward pass: batch-norm
    # statistics are per rank in DDP (8 images each, not 16), so this is the single-process computation that
    # DDP is exact for. Only float summation order differs (all-reduce vs autograd accumulation): ~1e-7
    # relative in the gradients, but Adam divides by sqrt(v), so where a gradient is near zero (sharp soft
    # samples at tau 0.1) that rounding shows in the update. Tolerance: 2% of how far A moved. The plain
    # single-process run (BN over all 16 images) differs by about as much as A moved, so this discriminates.
    emulated = tmp_path / "emulated"
    monkeypatch.setattr(ImageSearchData, "batch_loss", _loss_per_half)
    assert main(["search", *ARGS, "--out", str(emulated)]) == 0
    capsys.readouterr()
    ref = RunDir(emulated).load_checkpoint()["task"]["model"]
    start = r0["A0"]
    for name, a0, a_start in zip(("arch_normal", "arch_reduce"), r0["A"], start):
        moved = (ref[name] - a_start).abs().max()
        assert moved > 1e-4  # A really moved: the comparison is not vacuous
        assert (a0 - ref[name]).abs().max() <= 0.02 * moved, (name, (a0 - ref[name]).abs().max(), moved)
    assert str(load_genotype(emulated)) == r0["genotype"]


def _loss_per_half(self, model, archs, x, y):
    """ImageSearchData.batch_loss as two ranks compute it together: one draw, one forward (and BN batch) per half."""
    parts = [loss_and_correct(model(xs, archs), ys) for xs, ys in zip(x.chunk(2), y.chunk(2))]
    loss = (parts[0][0] + parts[1][0]) / 2
    return loss, torch.stack([loss.detach(), (parts[0][1] + parts[1][1]).float()])


def test_two_ranks_search_a_folder_and_agree(tmp_path: Path) -> None:
    from image_files import write_image_folder

    folder = write_image_folder(tmp_path / "images", n_per_class=40, fmt="png", mode="L", size=16)
    out, dumps, cache = tmp_path / "dist", tmp_path / "dumps", tmp_path / "cache"
    proc = launch_two_ranks(__file__, dumps, "search", *ARGS, "--dataset", "folder", "--data-dir", folder,
                            "--image-size", "16", "--out", out, env={"GDAS_CACHE_DIR": str(cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("decoded 120 images") == 1 and "from the cache" not in proc.stdout  # rank 0 logs
    assert len(list((cache / "folders").iterdir())) == 1
    r0, r1 = (torch.load(dumps / f"rank{r}.pt") for r in (0, 1))
    for a, b in zip(r0["A"], r1["A"], strict=True):  # rank 1 read the same images from the cache
        assert torch.equal(a, b)
    assert (out / "classes.json").read_text().split() == ["[", '"boot",', '"coat",', '"shirt"', "]"]


def test_rank_zero_refusal_stops_every_rank(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")  # an existing run: rank 0 refuses to overwrite it
    proc = _launch(out, tmp_path / "dumps")
    assert proc.returncode != 0
    assert proc.stderr.count("gdas: error:") == 2 and "already holds a run" in proc.stderr  # both ranks, no hang


def test_batch_must_split_evenly_over_ranks() -> None:
    assert local_batch(16, Context(0, 2, 0)) == 8
    with pytest.raises(GdasError, match="multiple of 2"):
        local_batch(15, Context(1, 2, 1))
    rows = torch.arange(12).view(3, 4)
    assert torch.equal(shard(rows, Context(1, 2, 1), dim=1), rows[:, 2:])
    assert torch.equal(shard(rows, Context()), rows)


def _rank_main(dumps: Path, argv: list[str]) -> int:
    """Per-rank entry point: the real CLI, with each rank's final state dumped when the search finishes."""
    original = SearchTask.finish
    init: dict = {}
    original_init = SearchTask.__init__

    def record_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        init["A0"] = [p.detach().clone() for p in self.model.arch_parameters()]

    def dump(self, run, wall_time_s):
        summary = original(self, run, wall_time_s)
        dumps.mkdir(parents=True, exist_ok=True)
        torch.save({"A": [p.detach().clone() for p in self.model.arch_parameters()], "A0": init["A0"],
                    "W": torch.cat([p.detach().flatten() for p in self.model.weight_parameters()]),
                    "genotype": summary["genotype"],
                    "world_size": self.ctx.world_size}, dumps / f"rank{self.ctx.rank}.pt")
        return summary

    SearchTask.__init__ = record_init
    SearchTask.finish = dump
    return main(argv)


if __name__ == "__main__":
    raise SystemExit(_rank_main(Path(sys.argv[1]), sys.argv[2:]))
