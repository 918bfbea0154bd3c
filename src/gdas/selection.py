"""The paper's multi-seed search: one shared D_T/D_V split, seeds side by side, the kept cell chosen on D_V."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import torch

from gdas.configs import base as cfgbase
from gdas.configs.runtime import resolve_device, setup_runtime, with_channels_last
from gdas.configs.module import TensorSearchConfig, retrain_config
from gdas.configs.search import SearchConfig
from gdas.data.tensor_search import TensorInputs, current, using
from gdas.configs.train import TRAIN_PRESETS, TrainConfig
from gdas.data.batches import TensorBatches
from gdas.data.search import load_search_data
from gdas.engine import distributed as dist
from gdas.engine import tracking
from gdas.engine import rundir as files
from gdas.engine.loop import fit, resume
from gdas.engine.rundir import RunDir
from gdas.errors import GdasError
from gdas.networks import image_genotype
from gdas.search import run_search
from gdas.spaces.module.factory import local_reason
from gdas.tensor_train import run_tensor_train
from gdas.train import TrainTask, create_run, read_split

Log = Callable[[str], None]
T = TypeVar("T")
# What ranks the seeds' retrained cells against random ones (`baseline.for_seeds`): called with the config, the
# multi-seed folder and the seeds' rows once every seed is done; returns seeds.json's "random_baseline".
Baseline = Callable[[SearchConfig, Path, list[dict[str, Any]]], dict[str, Any]]
SELECT_DIR = files.SELECT  # under a seed's folder: the retrain of its derived cell
# The space's training recipe (optimizer, schedule, weight decay) that a seed's retrain borrows.
SELECT_RECIPES = {"darts": "cifar10", "nb201": "nb201-cifar10", "mobilenet": "mobilenet-cifar10"}


def selection_config(cfg: SearchConfig, genotype: str) -> TrainConfig:
    """A seed's retrain: the space's recipe at the supernet's size (C, N) and batch on the search's images,
    for `cfg.select_epochs` epochs, without auxiliary head or drop-path. With the paper's search (C=16, N=2)
    this is DARTS's selection network: 8 cells, 16 channels."""
    recipe = TRAIN_PRESETS[SELECT_RECIPES.get(cfg.space, SELECT_RECIPES["mobilenet"])]  # a module of the user's own
    return dataclasses.replace(
        recipe, preset=f"select-{cfg.preset}", space=cfg.space, genotype=genotype, dataset=cfg.dataset,
        data_dir=cfg.data_dir, train_subset=cfg.train_subset, synthetic_train=cfg.synthetic_train,
        valid_portion=1.0 - cfg.train_portion, C=cfg.C, N=cfg.N, epochs=cfg.select_epochs,
        batch_size=cfg.batch_size, eval_batch_size=None, steps_per_epoch=cfg.steps_per_epoch,
        crop_padding=cfg.crop_padding, flip=cfg.flip, cutout=cfg.cutout, drop_path_prob=0.0, auxiliary=False,
        eval_every=cfg.select_epochs, seed=cfg.seed, device=cfg.device, amp=cfg.amp,
        channels_last=cfg.channels_last, threads=cfg.threads)


def retrain_on_split(cfg: SearchConfig, seed_dir: Path, *, split_dir: Optional[Path] = None, log: Log = print,
                     show_progress: bool = True) -> dict[str, Any]:
    """Train the cell a search derived (seed_dir/genotype.json) from scratch on its D_T and measure it on its D_V
    (never the test set), in seed_dir/select (resumed when it was interrupted, started again when it stopped
    before its first checkpoint). `split_dir`: the search whose split.json holds D_T / D_V when seed_dir has none
    (a random cell). Returns that run's summary."""
    out = seed_dir / SELECT_DIR
    step = files.next_step(out)
    if step == "complete":
        return files.read_json(out / files.SUMMARY)
    tcfg = selection_config(cfg, str(seed_dir))
    tcfg.validate()
    ctx = dist.context()
    device = dist.local_device(resolve_device(tcfg.device), ctx)
    setup_runtime(device, tcfg.threads)
    tcfg = with_channels_last(tcfg, device)  # auto (a search's None) as `gdas train` resolves it: NHWC on the CPU
    started = step == "resume"
    if started:
        run, _ = RunDir.open_existing(out, "train", writer=ctx.is_main)
        genotype = image_genotype(str(run.file(files.GENOTYPE)))
        split = read_split(run)
    else:
        genotype = image_genotype(str(seed_dir / files.GENOTYPE), cfg.space)
        search_split = files.read_json((split_dir or seed_dir) / files.SPLIT)
        split = (torch.tensor(search_split["train"]), torch.tensor(search_split["valid"]))
    images = load_search_data(cfg)  # the search's images; its test images are dropped, never measured
    images = dataclasses.replace(images, test_x=images.test_x[:0], test_y=images.test_y[:0])
    data = TensorBatches(images, device, ctx, batch_size=tcfg.batch_size, eval_batch_size=tcfg.batch_size,
                         seed=tcfg.seed, crop_padding=tcfg.crop_padding, flip=tcfg.flip, cutout=tcfg.cutout,
                         channels_last=tcfg.channels_last, split=split)
    task = TrainTask(tcfg, genotype, data, device, show_progress=show_progress, test=False)
    if not started:
        run = dist.main_first(lambda: create_run(out, tcfg, genotype, device, data), ctx,
                              lambda: RunDir(out, writer=False))
    start, wall = resume(task, run, map_location=device) if started else (0, 0.0)
    return fit(task, run, start_epoch=start, wall_time_s=wall, log=log if ctx.is_main else (lambda _: None))


def retrain_tensors(cfg: TensorSearchConfig, seed_dir: Path, *, log: Log = print, show_progress: bool = True
                    ) -> dict[str, Any]:
    """A seed's retrain on tensors: its frozen model trained from scratch on D_T with the search's loss, measured
    on D_V (seed_dir/select; resumed or started again as an image retrain is)."""
    out = seed_dir / SELECT_DIR
    step = files.next_step(out)
    if step == "complete":
        return files.read_json(out / files.SUMMARY)
    genotype = files.read_json(seed_dir / files.GENOTYPE)
    genotype.pop("text", None)
    tcfg = retrain_config(cfg, json.dumps(genotype))
    split_file = seed_dir / files.SPLIT
    split = None
    if split_file.exists():
        stored = files.read_json(split_file)
        split = (torch.tensor(stored["train"]), torch.tensor(stored["valid"]))
    return run_tensor_train(tcfg, out, resume_run=step == "resume", log=log, show_progress=show_progress, split=split,
                            test=False)


def search_score(summary: dict[str, Any]) -> tuple[Optional[float], bool]:
    """(a search's final score on D_V, whether higher is better): valid accuracy, or a run on tensors' metric
    (else its loss)."""
    if summary.get("kind") == TensorSearchConfig.KIND:
        return summary.get(f"final_{summary['score_key']}"), summary["metric_mode"] == "higher"
    return summary["final_valid_acc"], True


def seed_result(cfg: Any, seed_dir: Path, retrain: bool, *, log: Log = print,
                show_progress: bool = True) -> dict[str, Any]:
    """One seed of a multi-seed search: its search (skipped when done, resumed from its last checkpoint, started
    again when it stopped before its first), then its retrain."""
    step = files.next_step(seed_dir)
    if step == "complete":
        summary = files.read_json(seed_dir / files.SUMMARY)
    else:
        summary = run_search(cfg, seed_dir, resume_run=step == "resume", log=log, show_progress=show_progress)
    score, higher = search_score(summary)
    # Each accuracy with the D_V images it was measured on (searches from before the counts: None).
    row = {"seed": cfg.seed, "valid_acc": score, "valid_images": summary.get("valid_images"),
           "train_acc": summary.get("final_train_acc"), "select_valid_acc": None, "wall_time_s": summary["wall_time_s"],
           "genotype": summary["genotype"], "dir": str(seed_dir)}
    if not higher or summary.get("kind") == TensorSearchConfig.KIND:  # a run on tensors: its own score, named
        row.update(score_key=summary["score_key"], higher_is_better=higher, valid_images=summary.get("valid_samples"))
    if retrain and isinstance(cfg, TensorSearchConfig):
        selected = retrain_tensors(cfg, seed_dir, log=log, show_progress=show_progress)
        row.update(select_valid_acc=selected.get(f"final_{selected['score_key']}"),
                   select_wall_time_s=selected["wall_time_s"])
    elif retrain:
        selected = retrain_on_split(cfg, seed_dir, log=log, show_progress=show_progress)
        row.update(select_valid_acc=1.0 - selected["final_valid_top1_err"],
                   select_valid_images=selected.get("valid_images"), select_wall_time_s=selected["wall_time_s"])
    return row


def _seed_job(cfg: Any, seed_dir: Path, retrain: bool, inputs: Optional[TensorInputs] = None) -> dict[str, Any]:
    """A seed run in a worker process (spawned: no state shared with the parent or the other seeds; a search on
    tensors gets its data and loss pickled)."""
    log = lambda line: print(f"seed {cfg.seed}: {line}", flush=True)  # noqa: E731
    if inputs is None:
        return seed_result(cfg, seed_dir, retrain, log=log, show_progress=False)
    with using(inputs):
        return seed_result(cfg, seed_dir, retrain, log=log, show_progress=False)


def side_by_side(job: Callable[..., T], jobs: list[tuple[Any, ...]], parallel: int) -> list[T]:
    """`job(cfg, *args)` for every (cfg, *args) of `jobs`, up to `parallel` at once in spawned processes (no state
    shared), each with its share of the CPU threads: the same result as one after another, K at once."""
    parallel = min(parallel, len(jobs))
    threads = jobs[0][0].threads or max(1, torch.get_num_threads() // parallel)
    jobs = [(dataclasses.replace(job_cfg, threads=threads), *args) for job_cfg, *args in jobs]
    with ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(job, *zip(*jobs)))


def check_parallel(parallel: int, seeds: Optional[list[int]], random_cells: int = 0) -> None:
    """--parallel K runs at most one process per seed or per random cell, on one machine (not under torchrun)."""
    n = len(seeds) if seeds else 1
    if parallel < 1:
        raise GdasError(f"--parallel must be at least 1, got {parallel}")
    if parallel > max(n, random_cells):
        cells = f" and of --random-baseline cells ({random_cells})" if random_cells else ""
        raise GdasError(f"--parallel {parallel} is larger than the number of seeds ({n}){cells}; give at most "
                        f"{max(n, random_cells)}")
    if parallel > 1 and dist.context().distributed:
        raise GdasError("--parallel runs seeds (and random cells) as separate processes on one device; drop it "
                        "under torchrun, where they run one after another")


def multi_seed_search(cfg: Any, out: Path, seeds: list[int], *, resume_run: bool = False,
                      parallel: int = 1, log: Log = print, show_progress: bool = True,
                      baseline: Optional[Baseline] = None) -> dict[str, Any]:
    """One search per seed under out/seed-S on one shared D_T/D_V split (each resumed or skipped when already
    there), up to `parallel` at once; the kept cell is the best retrain on D_V (cfg.select_by "retrain", with
    several seeds) or the best final search accuracy on D_V ("search"). With `baseline` (--random-baseline) every
    seed's cell is retrained, whatever keeps one, and ranked against random cells before seeds.json is written.
    Returns {"best_seed", "select_by", "split_seed", "seeds": rows, "genotype"} (and "random_baseline")."""
    if len(set(seeds)) != len(seeds):
        raise GdasError(f"--seeds has repeated values {seeds}; give distinct seeds")
    check_parallel(parallel, seeds, cfg.random_baseline)
    inputs = _parallel_inputs(cfg) if parallel > 1 else None  # refused before the folder is written
    cfg = dataclasses.replace(cfg, split_seed=seeds[0] if cfg.split_seed is None else cfg.split_seed)
    ctx = dist.context()
    parent = RunDir(out, writer=ctx.is_main)
    if not resume_run:
        def start() -> None:  # on rank 0 only: other ranks would see the file it has just written
            files.refuse_existing_run(out)
            kind = {"kind": cfg.KIND} if isinstance(cfg, TensorSearchConfig) else {}
            parent.write_json(files.MULTISEED, {"seeds": seeds, **kind, "config": cfgbase.to_json(cfg)})
        dist.main_first(start, ctx, lambda: None)
    # With --tracking: one parent run, a child run per seed (seeds run in other processes with --parallel
    # are not tracked: their tracker lives in this process).
    with tracking.parent_run(out, cfgbase.to_json(cfg)):
        judged = cfg.select_by == "retrain" and len(seeds) > 1  # the retrain keeps the cell
        retrain = judged or baseline is not None
        jobs = [(dataclasses.replace(cfg, seed=seed), out / f"seed-{seed}", retrain) for seed in seeds]
        if parallel > 1:
            rows = side_by_side(_seed_job, [(*job, inputs) for job in jobs], parallel)
        else:
            rows = [seed_result(job_cfg, seed_dir, retrain, log=log, show_progress=show_progress)
                    for job_cfg, seed_dir, _ in jobs]
        key = "select_valid_acc" if judged else "valid_acc"
        sign = 1.0 if rows[0].get("higher_is_better", True) else -1.0  # a loss: the lowest is best
        best = max(rows, key=lambda r: (sign * r[key], -r["seed"]))
        for row in rows:
            row["kept"] = row is best
        select_by = "retrain" if judged else "search"
        result = {"best_seed": best["seed"], "select_by": select_by, "split_seed": cfg.split_seed,
                  "select_epochs": cfg.select_epochs if judged else None, "seeds": rows}
        if baseline is not None:
            result["random_baseline"] = baseline(cfg, out, rows)
        parent.write_json(files.SEEDS, result)  # it marks the multi-seed search complete
        if ctx.is_main:
            parent.write_text(files.GENOTYPE, (Path(best["dir"]) / files.GENOTYPE).read_text())
    return {**{k: v for k, v in result.items() if k != "select_epochs"}, "genotype": best["genotype"]}


def _parallel_inputs(cfg: Any) -> Optional[TensorInputs]:
    """What seeds in other processes need besides their config: a search on tensors' data and loss (pickled).
    A space other processes cannot import, or a loss they cannot be sent, is refused in one line."""
    reason = local_reason(cfg.space)
    if reason is not None:
        raise GdasError(f"--parallel runs seeds in other processes, but {reason}; move it into a module "
                        "(package/module.py) or drop --parallel")
    if not isinstance(cfg, TensorSearchConfig):
        return None
    inputs = current()
    try:
        pickle.dumps((inputs.loss, inputs.metric, inputs.data))
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise GdasError(f"--parallel sends the data, loss and metric to other processes, which cannot take them "
                        f"({str(exc).splitlines()[0][:120]}); define them at module level (no lambdas) or drop "
                        "--parallel") from None
    return inputs
