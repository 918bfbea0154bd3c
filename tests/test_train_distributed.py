"""Distributed training: 2 CPU processes over gloo end with identical weights and one run directory.

Run as a script under torchrun (see `_launch`), this file is also the per-rank entry point: it runs the real
`gdas train` CLI and dumps each rank's final weights for the test to compare.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_helpers import launch_two_ranks

from gdas.cli.main import main
from gdas.configs.train import TrainConfig
from gdas.engine.distributed import Context
from gdas.genotypes import REGISTRY
from gdas.engine.rundir import RunDir, stored_config
from gdas.train import KIND, TrainTask, batch_source, read_split

ARGS = ["--preset", "smoke", "--no-progress", "--no-report", "--device", "cpu", "--threads", "1", "--batch", "8",
        "--synthetic-train", "16", "--synthetic-test", "10", "--valid-portion", "0.25"]


def _launch(out: Path, dumps: Path) -> subprocess.CompletedProcess:
    return launch_two_ranks(__file__, dumps, "train", *ARGS, "--out", out)


def test_two_ranks_train_the_same_network(tmp_path: Path) -> None:
    out, dumps = tmp_path / "dist", tmp_path / "dumps"
    proc = _launch(out, dumps)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run directory:") == 1  # only rank 0 prints
    r0, r1 = (torch.load(dumps / f"rank{r}.pt") for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    # Gradients are averaged before every step: the ranks' weights stay identical (batch-norm statistics are
    # per rank, as in DDP, until evaluation takes rank 0's).
    params = [k for k in r0["model"] if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(r0["model"][k], r1["model"][k]) for k in params)
    saved = RunDir(out).load_checkpoint()["task"]["model"]
    assert all(torch.equal(saved[k], r0["model"][k]) for k in saved)
    # The test split and the validation part are sharded and the counts reduced: both ranks report the errors
    # of the whole split and part, the same as one process evaluating the saved weights.
    timeless = [{k: v for k, v in r["summary"].items() if k != "wall_time_s"} for r in (r0, r1)]
    assert timeless[0] == timeless[1] and "best_valid_top1_err" in timeless[0]
    cfg, cpu = stored_config(out, KIND, TrainConfig), torch.device("cpu")
    single = TrainTask(cfg, REGISTRY["GDAS"], batch_source(cfg, cpu, Context(), read_split(RunDir(out))), cpu,
                       show_progress=False)
    single.model.load_state_dict(saved)
    assert single.evaluate()["top1_err"] == pytest.approx(r0["summary"]["final_top1_err"])
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [0, 1]  # written once, by rank 0
    assert single.evaluate(valid=True)["valid_top1_err"] == pytest.approx(metrics[-1]["valid_top1_err"])


if __name__ == "__main__":  # one rank of the torchrun job started by `_launch`
    from gdas.engine import distributed as dist

    dump_dir = Path(sys.argv[1])
    finish = TrainTask.finish

    def finish_and_dump(self: TrainTask, run: RunDir, wall_time_s: float) -> dict:
        summary = finish(self, run, wall_time_s)
        ctx = dist.context()
        dump_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"model": {k: v.cpu() for k, v in self.model.state_dict().items()}, "summary": summary,
                    "world_size": ctx.world_size}, dump_dir / f"rank{ctx.rank}.pt")
        return summary

    TrainTask.finish = finish_and_dump  # type: ignore[method-assign]
    sys.exit(main(sys.argv[2:]))
