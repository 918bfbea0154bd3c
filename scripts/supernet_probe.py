"""What an NB201 supernet ranks first on each edge, against where A's mean gradient moves (docs/quality.md).

Trains the warm-up epochs of a search (W only, exactly as `gdas search` runs them, in a temporary folder), then,
on D_V batches of the search's own split, with batch statistics as an A step uses them:

- the loss of children with one edge fixed to each op and the other edges drawn uniformly (the same draws for
  every op, so the ops of an edge are compared on paired children): the supernet's own ranking of the ops;
- the mean of minus A's gradient over `--draws` GDAS draws at the temperature of the first A epoch, and under
  the DARTS mixture: the direction the next A steps take (positive: the op's logit rises).

    python scripts/supernet_probe.py --preset nb201-demo --seed 0 [any gdas search option, e.g.
        --train-subset 16000 --epochs 20 --warmup-epochs 10] [--contexts 8] [--batches 8] [--draws 256] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F

from gdas.configs import base as cfgbase
from gdas.configs.files import resolve_config
from gdas.configs.search import SEARCH_TABLE, SearchConfig
from gdas.engine.loop import frozen
from gdas.errors import GdasError
from gdas.sampler import CellArch, tau_at
from gdas.search import SearchTask, open_search
from gdas.spaces.nb201.ops import NB201_OPS


def edge_names(steps: int) -> list[str]:
    """NB201's edge order: node i's inputs j < i, node by node ("1<-0", "2<-0", "2<-1", ...)."""
    return [f"{i}<-{j}" for i in range(1, steps + 1) for j in range(i)]


class Probe:
    """A warmed-up supernet and fixed D_V batches (augmented once, as the search's A steps see them)."""

    def __init__(self, task: SearchTask, batches: int, seed: int) -> None:
        self.model, data = task.model, task.data
        self.model.train()  # batch statistics, as in an A step
        data.start_epoch(task.cfg.warmup_epochs)
        batches = min(batches, data.steps_per_epoch)
        self.batches = [(data.augment(data.readers["a"][b], data.aug_gen), data.data.train_y[data.indices["a"][b]])
                        for b in range(batches)]
        self.gen = torch.Generator().manual_seed(seed)

    def child_loss(self, ops: list[int]) -> float:
        """Mean D_V loss of the child with op ops[e] on edge e of every cell."""
        archs = [None if a is None else CellArch(None, list(ops))
                 for a in self.model.sample_arch(1.0, arch_grad=False)]
        with torch.no_grad():
            return sum(F.cross_entropy(self.model(x, archs), y).item() for x, y in self.batches) / len(self.batches)

    def edge_losses(self, contexts: int) -> list[list[float]]:
        """[edge][op]: mean loss over `contexts` uniform draws of the other edges, the same draws for every op."""
        edges, ops = self.model.arch.shape
        drawn = torch.randint(0, ops, (contexts, edges), generator=self.gen).tolist()
        return [[sum(self.child_loss(row[:e] + [k] + row[e + 1:]) for row in drawn) / contexts for k in range(ops)]
                for e in range(edges)]

    def mean_descent(self, sampler: str, tau: float, draws: int) -> list[list[float]]:
        """[edge][op]: minus A's gradient averaged over `draws` forward passes (one draw each under GDAS; the
        batches in turn)."""
        saved, self.model.sampler = self.model.sampler, sampler
        total = torch.zeros_like(self.model.arch)
        try:
            with frozen(self.model.weight_parameters()):  # as in an A step: a graph to A alone
                for i in range(draws):
                    x, y = self.batches[i % len(self.batches)]
                    archs = self.model.sample_arch(tau, arch_grad=True, generator=self.gen)
                    loss = F.cross_entropy(self.model(x, archs), y)
                    if loss.requires_grad:  # every sampled path `none`: A's gradient is exactly zero
                        total -= torch.autograd.grad(loss, [self.model.arch])[0]
        finally:
            self.model.sampler = saved
        return (total / draws).tolist()


def warmed_up(cfg: SearchConfig, folder: Path) -> SearchTask:
    """The search's task after its W-only warm-up epochs (the search itself writes nothing else)."""
    if cfg.space != "nb201":
        raise GdasError(f"supernet_probe reads NB201 supernets; the {cfg.space} space is not one (use an nb201-* "
                        "preset)")
    if cfg.warmup_epochs < 1:
        raise GdasError("supernet_probe probes the supernet at the end of the warm-up; give --warmup-epochs >= 1")
    task, _ = open_search(cfg, folder, show_progress=False)
    for epoch in range(cfg.warmup_epochs):
        task.run_epoch(epoch)
    return task


def probe(cfg: SearchConfig, *, contexts: int, batches: int, draws: int) -> dict[str, Any]:
    """The probe's numbers for the search `cfg` (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        task = warmed_up(cfg, Path(tmp) / "search")
        p = Probe(task, batches, cfg.seed)
        tau = tau_at(cfg.warmup_epochs, cfg.epochs, cfg.tau_max, cfg.tau_min)
        return {"edges": edge_names(task.model.steps), "ops": list(NB201_OPS), "warmup_epochs": cfg.warmup_epochs,
                "tau": tau, "edge_losses": p.edge_losses(contexts),
                "gdas_descent": p.mean_descent("gdas", tau, draws), "darts_descent": p.mean_descent("darts", tau, draws),
                "contexts": contexts, "batches": len(p.batches), "draws": draws}


def table(title: str, result: dict[str, Any], key: str, scale: float, mark_best: bool) -> str:
    lines = [title, "| edge | " + " | ".join(result["ops"]) + " |", "| --- |" + " ---: |" * len(result["ops"])]
    for edge, row in zip(result["edges"], result[key]):
        best = min(range(len(row)), key=row.__getitem__) if mark_best else max(range(len(row)), key=row.__getitem__)
        cells = [f"**{scale * v:.3f}**" if k == best else f"{scale * v:.3f}" for k, v in enumerate(row)]
        lines.append(f"| {edge} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="nb201-demo")
    parser.add_argument("--contexts", type=int, default=8, help="draws of the other edges per edge and op")
    parser.add_argument("--batches", type=int, default=8, help="D_V batches each child is measured on")
    parser.add_argument("--draws", type=int, default=256, help="forward passes A's mean gradient is taken over")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    cfgbase.add_config_options(parser, SearchConfig, skip=("preset",))
    args = parser.parse_args(argv)
    try:
        if min(args.contexts, args.batches, args.draws) < 1:
            raise GdasError("--contexts, --batches and --draws must be at least 1")
        values = {k: v for k, v in vars(args).items() if k not in ("preset", "contexts", "batches", "draws", "json")}
        cfg = resolve_config(SearchConfig, SEARCH_TABLE, kind="search", preset=args.preset,
                             overrides={"threads": 1, **values, "device": "cpu"})  # one thread unless --threads
        result = probe(cfg, contexts=args.contexts, batches=args.batches, draws=args.draws)
    except GdasError as exc:
        print(f"supernet_probe: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(table(f"D_V loss of children with the edge's op fixed (lowest in bold; {args.contexts} draws of the "
                f"other edges x {result['batches']} batches), after the {cfg.warmup_epochs} warm-up epoch(s):",
                result, "edge_losses", 1.0, True))
    for sampler, how in (("gdas", f"draws at tau {result['tau']:.2f}"), ("darts", "passes of the mixture")):
        print()
        print(table(f"Mean -grad of A x 1e3 under {sampler} ({args.draws} {how}; largest in bold: the op the next "
                    "A steps raise most):", result, f"{sampler}_descent", 1e3, False))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
