"""The random baseline of a search (`--random-baseline K`): K random cells of its space, drawn by the space's own rule
and trained with the searched cells' selection protocol on the same D_T / D_V, and where each searched cell ranks."""

from __future__ import annotations

import dataclasses
import os
import statistics
from pathlib import Path
from typing import Any, Optional

import torch

from gdas.configs.search import SearchConfig
from gdas.engine import distributed as dist
from gdas.engine import rundir as files
from gdas.engine import tracking
from gdas.engine.rundir import RunDir
from gdas.genotypes import save_genotype
from gdas.networks import image_genotype
from gdas.search import run_search
from gdas.selection import Baseline, Log, retrain_on_split, side_by_side
from gdas.spaces import get_space

# A cell to retrain: its config (the seed its retrain starts from), its folder (genotype.json; the retrain goes to
# select/), the search folder whose split.json holds D_T / D_V, and the name its log lines carry.
Job = tuple[SearchConfig, Path, Path, str]
# A searched cell to rank: its search seed, its folder (genotype.json, select/) and whether it was kept (None: the
# only one).
Searched = tuple[int, Path, Optional[bool]]


def draw_random_cells(cfg: SearchConfig, out: Path) -> list[Path]:
    """The folders out/random-i (i < K) with their genotype.json: cell i drawn by the space's rule from a generator
    seeded i. Rank 0 draws each cell once; a resumed run keeps what was drawn."""
    space = get_space(cfg.space)
    folders = [out / files.RANDOM_CELL.format(i) for i in range(cfg.random_baseline)]

    def draw() -> None:
        for i, folder in enumerate(folders):
            if not (folder / files.GENOTYPE).exists():
                genotype = space.random_genotype(torch.Generator().manual_seed(i), cfg)  # type: ignore[misc]
                save_genotype(genotype, folder / files.GENOTYPE)
    dist.main_first(draw, dist.context(), lambda: None)
    return folders


def random_jobs(cfg: SearchConfig, folders: list[Path], split_dir: Path) -> list[Job]:
    """Random cell i's retrain starts from seed i, the seed that drew it."""
    return [(dataclasses.replace(cfg, seed=i), folder, split_dir, folder.name) for i, folder in enumerate(folders)]


def _cell_job(cfg: SearchConfig, folder: Path, split_dir: Path, name: str) -> None:
    """A cell's retrain in a worker process (spawned: no state shared with the parent or the other cells)."""
    retrain_on_split(cfg, folder, split_dir=split_dir, log=lambda line: print(f"{name}: {line}", flush=True),
                     show_progress=False)


def train_cells(jobs: list[Job], parallel: int, *, log: Log = print, show_progress: bool = True) -> None:
    """Each job's retrain (done ones skipped, interrupted ones resumed), up to `parallel` side by side."""
    if parallel > 1:
        side_by_side(_cell_job, jobs, parallel)
        return
    for job_cfg, folder, split_dir, name in jobs:
        if dist.context().is_main:
            log(f"{name}: retrain of {files.read_json(folder / files.GENOTYPE)['text']}")
        retrain_on_split(job_cfg, folder, split_dir=split_dir, log=log, show_progress=show_progress)


def ranking(cfg: SearchConfig, out: Path, searched: list[Searched], random: list[Path], split_dir: Path
            ) -> dict[str, Any]:
    """summary.json's / seeds.json's "random_baseline": each cell's D_V error (its retrain's last weights, as the
    selection compares them) with its final network's parameters and mult-adds (as `gdas info` counts them, at
    the size `--cost` counts at, on the searched images' shape); the random cells' mean, sample standard
    deviation, least and greatest D_V error; each searched cell's rank, 1 + the random cells with a lower D_V
    error (`ties`: those with the same)."""
    space = get_space(cfg.space)
    assert space.info is not None
    C, N = cfg.final_size
    data = files.read_json(split_dir / files.DATA)
    shape = (data["channels"], data["image_size"], data["num_classes"])

    def measured(folder: Path) -> dict[str, Any]:
        genotype = image_genotype(str(folder / files.GENOTYPE), cfg.space)
        retrain = files.read_json(folder / files.SELECT / files.SUMMARY)
        size = space.info(genotype, cfg.dataset, C, N, shape=shape)
        return {"dir": os.path.relpath(folder, out), "genotype": str(genotype),
                "valid_err": retrain["final_valid_top1_err"], "valid_images": retrain.get("valid_images"),
                "params_M": round(size["params_M"], 4), "mult_adds_M": round(size["mult_adds_M"], 2)}

    cells = [{"index": i, "seed": i, **measured(folder)} for i, folder in enumerate(random)]
    errors = [cell["valid_err"] for cell in cells]
    ranked = []
    for seed, folder, kept in searched:
        row = {"seed": seed, **measured(folder)}
        row.update(rank=1 + sum(e < row["valid_err"] for e in errors), ties=sum(e == row["valid_err"] for e in errors),
                   kept=kept)
        ranked.append(row)
    return {"cells": len(cells), "select_epochs": cfg.select_epochs, "split_seed": cfg.data_seed,
            "valid_images": cells[0]["valid_images"],
            "size": {"C": C, "N": N, "dataset": cfg.dataset, "channels": shape[0], "input_size": shape[1],
                     "num_classes": shape[2]},
            "valid_err_mean": statistics.fmean(errors),
            "valid_err_std": statistics.stdev(errors) if len(errors) > 1 else None,
            "valid_err_min": min(errors), "valid_err_max": max(errors),
            "params_M_mean": statistics.fmean(cell["params_M"] for cell in cells),
            "mult_adds_M_mean": statistics.fmean(cell["mult_adds_M"] for cell in cells),
            "searched": ranked, "random": cells}


def search_with_baseline(cfg: SearchConfig, out: Path, *, resume_run: bool = False, parallel: int = 1,
                         log: Log = print, show_progress: bool = True) -> dict[str, Any]:
    """One search whose cell is retrained (out/select) and ranked against K random cells (out/random-i), each
    retrain up to `parallel` side by side. summary.json, its completion mark, is written last, with the ranking
    under "random_baseline": a run killed before it continues from its parts (`next_step` of each)."""
    summary = run_search(cfg, out, resume_run=resume_run, log=log, show_progress=show_progress,
                         mark_complete=False)
    # The config the search ran with (its batch fitted to D_T / D_V, the memory format resolved), as a resumed
    # run reads it, on this command's device, threads and data folder.
    ran = dataclasses.replace(files.stored_config(out, "search", SearchConfig), device=cfg.device,
                              threads=cfg.threads, data_dir=cfg.data_dir)
    random = draw_random_cells(ran, out)
    train_cells([(ran, out, out, "searched"), *random_jobs(ran, random, out)], parallel, log=log,
                show_progress=show_progress)
    summary["random_baseline"] = ranking(ran, out, [(ran.seed, out, None)], random, out)
    run = RunDir(out, writer=dist.context().is_main)
    run.write_json(files.SUMMARY, summary)
    tracking.current().run_ended(run)  # the search's tracked run gets its summary
    return summary


def for_seeds(parallel: int = 1, *, log: Log = print, show_progress: bool = True) -> Baseline:
    """The baseline of a multi-seed search: its seeds' retrained cells ranked against K random cells trained on
    the split every seed shares."""
    def rank(cfg: SearchConfig, out: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
        split_dir = Path(rows[0]["dir"])
        random = draw_random_cells(cfg, out)
        train_cells(random_jobs(cfg, random, split_dir), parallel, log=log, show_progress=show_progress)
        return ranking(cfg, out, [(row["seed"], Path(row["dir"]), row["kept"]) for row in rows], random, split_dir)
    return rank
