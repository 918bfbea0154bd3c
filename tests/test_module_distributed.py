"""A module space searched on tensors by 2 CPU processes over gloo: one draw per label on every rank, so both
ranks end with the same A, W and choice map.

Run as a script under torchrun (see the test), this file is also the per-rank entry point: it searches from
Python and dumps each rank's final A, W and choices."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from cli_helpers import launch_two_ranks


def test_two_ranks_draw_alike_and_end_alike(tmp_path: Path) -> None:
    out, dumps = tmp_path / "dist", tmp_path / "dumps"
    proc = launch_two_ranks(__file__, dumps, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(dumps / f"rank{r}.pt") for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["draws"] == r1["draws"] and len(set(map(str, r0["draws"]))) > 1  # the same, varying draws
    for a, b in zip(r0["A"], r1["A"], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(r0["W"], r1["W"]) and r0["choices"] == r1["choices"]


def _rank_main(dumps: Path, out: Path) -> None:
    import gdas
    from gdas.search import SearchTask
    from module_spaces import Regressor, regression_data

    draws: list = []
    original_sample = SearchTask._loss

    def record(self, phase, step, tau):
        archs, loss, stats = original_sample(self, phase, step, tau)
        draws.append([a.indices for a in archs])
        return archs, loss, stats

    original_finish = SearchTask.finish

    def dump(self, run, wall_time_s):
        summary = original_finish(self, run, wall_time_s)
        dumps.mkdir(parents=True, exist_ok=True)
        torch.save({"A": [p.detach().clone() for p in self.model.arch_parameters()],
                    "W": torch.cat([p.detach().flatten() for p in self.model.weight_parameters()]),
                    "choices": summary["genotype_json"]["choices"], "draws": draws,
                    "world_size": self.ctx.world_size}, dumps / f"rank{self.ctx.rank}.pt")
        return summary

    SearchTask._loss, SearchTask.finish = record, dump
    gdas.search(regression_data(), space=Regressor, loss=nn.MSELoss(), out=out, preset="smoke", threads=1)


if __name__ == "__main__":
    _rank_main(Path(sys.argv[1]), Path(sys.argv[2]))
