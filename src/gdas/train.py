"""Training a final CNN network from a genotype: schedules, losses, top-1/top-5 evaluation, best-on-validation."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from gdas.engine import distributed as dist
from gdas.configs import base as cfgbase
from gdas.configs.base import adjust_unset
from gdas.configs.runtime import autocast, environment, resolve_device, setup_runtime, with_channels_last
from gdas.configs.train import TrainConfig
from gdas.data.batches import BatchSource, LoaderBatches, Split, TensorBatches
from gdas.data.dataset import ImageDataset, seeded_split
from gdas.data.images import load_image_dataset
from gdas.data.own import class_names, count_words, data_options, data_record
from gdas.spaces import space_of
from gdas.errors import GdasError
from gdas.flops import count_mult_adds, count_parameters
from gdas.genotypes import AnyGenotype, genotype_from_json, save_genotype
from gdas.networks import check_sizes, image_genotype, network_from, split_output
from gdas.engine.loop import fit, optimizer_step, resume, seed_everything
from gdas.engine.progress import ProgressBar
from gdas.engine.rundir import BEST, CLASSES, DATA, GENOTYPE, METRICS, SPLIT, SUMMARY, RunDir

KIND = "train"
# best.pt: the weights of the lowest validation top-1 error; only runs with a validation part have one.
# metrics.jsonl names of the evaluations (the test ones unprefixed, as runs have always written them)
TEST_KEYS = ("test_loss", "top1_err", "top5_err")
VALID_KEYS = ("valid_loss", "valid_top1_err", "valid_top5_err")


# -- schedules and losses ----------------------------------------------------------------------------
def lr_at(epoch: int, cfg: TrainConfig) -> float:
    """Learning rate of `epoch`: cosine from lr to lr_min over the epochs, or lr x gamma^epoch."""
    if cfg.schedule == "exp":
        return cfg.lr * cfg.lr_gamma ** epoch
    return cfg.lr_min + (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * epoch / cfg.epochs)) / 2


def drop_path_at(epoch: int, epochs: int, final: float) -> float:
    """Drop-path probability of `epoch`: ramped linearly from 0 at the first epoch towards `final`."""
    return final * epoch / epochs


def smoothed_cross_entropy(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """(1 - s) * NLL(target) + s * mean over classes of NLL(class), in float32 (also under autocast)."""
    return F.cross_entropy(logits.float(), target, label_smoothing=smoothing)


def training_loss(logits: torch.Tensor, logits_aux: Optional[torch.Tensor], target: torch.Tensor,
                  smoothing: float, aux_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(objective, main-head loss): the auxiliary head's loss is added with `aux_weight` when it ran."""
    main = smoothed_cross_entropy(logits, target, smoothing)
    if logits_aux is None or aux_weight == 0:
        return main, main
    return main + aux_weight * smoothed_cross_entropy(logits_aux, target, smoothing), main


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """Number of samples whose target is among the top-k logits, for each k (k capped at the classes)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == target[:, None]
    return torch.stack([hits[:, :k].any(1).sum() for k in ks])


class TrainTask:
    """Network, optimizer, batch source and best result of one training run; `loop.fit` drives its epochs.

    Nothing is chosen on the test split: with a validation part, best.pt holds the weights of its lowest top-1
    error (the earliest on ties); without one, the run's result is its last weights.
    """

    epoch_files: tuple[str, ...] = ()

    def __init__(self, cfg: TrainConfig, genotype: AnyGenotype, data: BatchSource, device: torch.device, *,
                 show_progress: bool = True, test: bool = True):
        self.cfg, self.genotype, self.data, self.device, self.epochs = cfg, genotype, data, device, cfg.epochs
        self.ctx = dist.context()
        check_sizes(genotype, cfg.C)
        seed_everything(cfg.seed)
        self.network = {"dataset": cfg.dataset, "C": cfg.C, "N": cfg.N, "num_classes": data.num_classes,
                        "in_channels": data.channels, "image_size": data.image_size, "auxiliary": cfg.auxiliary,
                        "mean": list(data.mean), "std": list(data.std)}
        self.model = network_from(genotype, self.network).to(device)
        if cfg.channels_last:  # on the CPU too: oneDNN's NHWC conv backward is about twice as fast
            self.model = self.model.to(memory_format=torch.channels_last)
        dist.broadcast_module(self.model)
        self.params = list(self.model.parameters())
        cuda = device.type == "cuda"
        self.opt = torch.optim.SGD(self.params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                   weight_decay=cfg.weight_decay, foreach=not cuda, fused=cuda or None)
        self.show_progress = show_progress and self.ctx.is_main
        self.has_valid = data.split is not None
        self.test = test  # False: the test split is never evaluated (a seed's selection retrain)
        self.best: dict[str, Any] = {"epoch": -1}  # the best-validation epoch, its validation and test errors
        self.last_metrics: Optional[dict[str, Any]] = None

    # -- one epoch ---------------------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One SGD step; returns (main-head loss x batch, correct) on the device."""
        with autocast(self.device, self.cfg.amp):
            logits, logits_aux = split_output(self.model(x))
        loss, main = training_loss(logits, logits_aux, y, self.cfg.label_smoothing, self.cfg.auxiliary_weight)
        optimizer_step(loss, self.opt, self.params, self.cfg.grad_clip, self.ctx)
        return torch.stack([main.detach() * len(y), (logits.argmax(1) == y).sum().float()])

    @torch.no_grad()
    def evaluate(self, valid: bool = False) -> dict[str, float]:
        """Plain cross-entropy, top-1 and top-5 error on the test split, or the validation part with `valid`
        (eval mode: no drop-path, no aux), under their metrics.jsonl names."""
        self.model.eval()
        dist.broadcast_module(self.model)  # every rank evaluates rank 0's batch-norm statistics (the saved ones)
        sums = torch.zeros(3, device=self.device)  # loss x n, top-1 correct, top-5 correct
        seen = 0
        for x, y in self.data.valid_batches() if valid else self.data.test_batches():
            with autocast(self.device, self.cfg.amp):
                logits = split_output(self.model(x))[0]
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
            sums += torch.cat([loss[None], topk_correct(logits, y).float()])
            seen += len(y)
        totals = torch.cat([sums, sums.new_tensor([seen])])
        loss, top1, top5, n = dist.all_reduce_sum(totals, self.ctx).tolist()
        if n == 0:
            raise GdasError("the validation part is empty; raise --valid-portion" if valid else
                            "the test split is empty; use a dataset (or --test-subset) with test images")
        return dict(zip(VALID_KEYS if valid else TEST_KEYS, (loss / n, 1 - top1 / n, 1 - top5 / n)))

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        lr = lr_at(epoch, cfg)
        for group in self.opt.param_groups:
            group["lr"] = lr
        drop = drop_path_at(epoch, cfg.epochs, cfg.drop_path_prob)
        self.model.drop_path_prob = drop
        if self.ctx.world_size > 1:  # every rank seeded alike: give each its own drop-path masks, resumable per epoch
            torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1_009 + self.ctx.rank)
        self.model.train()
        steps, batches = self.data.train_batches(epoch, cfg.steps_per_epoch)
        if steps == 0:
            raise GdasError(f"--batch-size {cfg.batch_size} is larger than the training set; lower it or use "
                            "more training images")
        sums = torch.zeros(2, device=self.device)  # main loss x n, correct (on the device: no sync per step)
        seen = 0  # this rank's images
        began, shown, every = time.perf_counter(), 0, max(1, steps // 25)
        with ProgressBar(steps, f"train {epoch + 1}/{cfg.epochs}", enabled=self.show_progress) as bar:
            for step, (x, y) in enumerate(batches):
                sums += self.train_step(x, y)
                seen += len(y)
                if self.show_progress and ((step + 1) % every == 0 or step + 1 == steps):
                    loss, correct = sums.tolist()  # syncs the device: only a few times an epoch
                    bar.update(step + 1 - shown, loss=loss / seen, acc=correct / seen,
                               img_s=seen * self.ctx.world_size / (time.perf_counter() - began))
                    shown = step + 1
        totals = torch.cat([sums, sums.new_tensor([seen])])
        loss, correct, n = dist.all_reduce_sum(totals, self.ctx).tolist()
        elapsed = time.perf_counter() - began
        metrics: dict[str, Any] = {"lr": lr, "drop_path_prob": drop, "train_loss": loss / n,
                                   "train_acc": correct / n, "images_per_s": n / elapsed}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            if self.has_valid:
                metrics.update(self.evaluate(valid=True))
            if self.test:
                metrics.update(self.evaluate())
        else:
            metrics.update(dict.fromkeys((VALID_KEYS if self.has_valid else ()) + (TEST_KEYS if self.test else ())))
        return metrics

    # -- run-directory hooks -------------------------------------------------------------------------
    def after_epoch(self, epoch: int, metrics: dict[str, Any], run: RunDir) -> None:
        self.last_metrics = metrics
        err = metrics.get("valid_top1_err")
        if err is not None and (self.best["epoch"] < 0 or err < self.best["valid_top1_err"]):
            self.best = {"epoch": epoch, "valid_top1_err": err, "valid_top5_err": metrics["valid_top5_err"],
                         "test_top1_err": metrics.get("top1_err"), "test_top5_err": metrics.get("top5_err")}
            run.save_checkpoint({"epoch": epoch, "task": self.weights(), **self.best}, name=BEST)

    def weights(self) -> dict[str, Any]:
        """What rebuilds the trained network: weights, genotype and network arguments."""
        return {"model": self.model.state_dict(), "genotype": self.genotype.to_json(), "network": self.network}

    def finish(self, run: RunDir, wall_time_s: float) -> dict[str, Any]:
        last = self.last_metrics or (run.read_jsonl(METRICS)[-1:] or [{}])[0]
        size = self.network["image_size"]
        summary = {"kind": KIND, "genotype": str(self.genotype), "genotype_json": self.genotype.to_json(),
                   "dataset": self.cfg.dataset, "C": self.cfg.C, "N": self.cfg.N,
                   "params_M": round(count_parameters(self.model) / 1e6, 4),
                   "mult_adds_M": round(count_mult_adds(self.model, (self.network["in_channels"], size, size)) / 1e6,
                                        2),
                   "final_top1_err": last.get("top1_err"), "final_top5_err": last.get("top5_err"),
                   "final_test_loss": last.get("test_loss"),
                   # the images each error was measured on
                   "test_images": self.data.counts["test_images"] if self.test else 0,
                   "valid_images": self.data.counts.get("valid_images", 0)}
        if self.has_valid:  # the best-validation weights (best.pt) and their test error; else nothing was picked
            best = self.best
            summary.update(final_valid_top1_err=last.get("valid_top1_err"),
                           best_epoch=best["epoch"], best_valid_top1_err=best["valid_top1_err"],
                           best_valid_top5_err=best["valid_top5_err"], best_test_top1_err=best["test_top1_err"],
                           best_test_top5_err=best["test_top5_err"])
        summary.update(wall_time_s=round(wall_time_s, 2), device=str(self.device), world_size=self.ctx.world_size,
                       complete=True)
        run.write_json(SUMMARY, summary)
        return summary

    def state_dict(self) -> dict[str, Any]:
        return {**self.weights(), "opt": self.opt.state_dict(), "best": dict(self.best),
                "data": self.data.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        stored = state.get("genotype")
        if stored != self.genotype.to_json():
            text = str(genotype_from_json(stored))[:80] if isinstance(stored, dict) else "unknown"
            raise GdasError(f"checkpoint is from another genotype ({text}...) than this run's genotype.json; "
                            "restore the run's own checkpoint.pt or start a new run")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        if self.has_valid:  # a run without one (or from before validation parts) has no best to continue
            self.best = dict(state["best"])
        self.data.load_state_dict(state["data"])

    def rank_state_dict(self) -> dict[str, Any]:
        """This rank's own part under torchrun: its data generators (augmentation) and batch-norm statistics."""
        return {"data": self.data.state_dict(), "buffers": dist.module_buffers(self.model)}

    def load_rank_state_dict(self, state: dict[str, Any]) -> None:
        self.data.load_state_dict(state["data"])
        dist.load_module_buffers(self.model, state["buffers"])


# -- a run -------------------------------------------------------------------------------------------
def batch_source(cfg: TrainConfig, device: torch.device, ctx: dist.Context,
                 split: Optional[Split] = None) -> BatchSource:
    """The run's data: ImageNet folders through loaders, every other dataset as tensors on the device.

    With --valid-portion the training images lose a validation part: `split` (a resumed run's split.json),
    else a seeded draw.
    """
    if cfg.imagenet:
        assert cfg.data_dir is not None  # validate() checked it
        return LoaderBatches(cfg.data_dir, device, ctx, batch_size=cfg.batch_size, workers=cfg.workers,
                             image_size=cfg.imagenet_size, use_torchvision=cfg.use_torchvision,
                             channels_last=cfg.channels_last)
    return tensor_batches(cfg, *training_images(cfg, split), device, ctx)


def training_images(cfg: TrainConfig, split: Optional[Split] = None) -> tuple[ImageDataset, Optional[Split]]:
    """The images of a tensor-dataset run (any subset drawn) and its (training, validation) split: `split` (a
    resumed run's), a seeded draw with --valid-portion, else None."""
    data = load_image_dataset(cfg.dataset, cfg.data_dir, synthetic_train=cfg.synthetic_train,
                              synthetic_test=cfg.synthetic_test, seed=cfg.seed, **data_options(cfg))
    if cfg.train_subset is not None or cfg.test_subset is not None:  # a subset as large as the split: all of it
        data = data.subset(_smaller(cfg.train_subset, len(data.train_y)), _smaller(cfg.test_subset, len(data.test_y)),
                           torch.Generator().manual_seed(cfg.seed))
    n = len(data.train_y)
    if len(data.test_y) == 0 and cfg.valid_portion is None:  # nothing would ever measure the network
        where = (f"{cfg.data_dir} has no test/ folder; add {cfg.data_dir}/test/<class>/" if cfg.dataset == "folder"
                 else f"{cfg.data_dir or cfg.dataset} has no test images; add them")
        raise GdasError(f"{where} or pass --valid-portion P (a validation part of the training images)")
    if cfg.valid_portion is None:
        return data, None
    if split is None:
        valid, train = seeded_split(n, cfg.valid_portion, cfg.seed, "--valid-portion")
        return data, (train, valid)
    if int(torch.cat(split).max()) >= n:
        raise GdasError(f"{SPLIT} holds indices beyond the {n} training images: the data changed since the run "
                        "started; resume with the run's original data")
    return data, split


def tensor_batches(cfg: TrainConfig, data: ImageDataset, split: Optional[Split], device: torch.device,
                   ctx: dist.Context) -> TensorBatches:
    return TensorBatches(data, device, ctx, batch_size=cfg.batch_size,
                         eval_batch_size=cfg.eval_batch_size or cfg.batch_size, seed=cfg.seed,
                         crop_padding=cfg.crop_padding, flip=cfg.flip, cutout=cfg.cutout,
                         channels_last=cfg.channels_last, split=split)


def fit_to_images(cfg: TrainConfig, data: ImageDataset, split: Optional[Split], ctx: dist.Context,
                  check_input: Optional[Callable[[int, bool], None]]) -> TrainConfig:
    """`cfg` with the preset's batch size and auxiliary head fitted to the images (a batch no larger than the
    training part; no auxiliary head on images too small for it); a setting the user gave that the images
    cannot take is a one-line error. Runs before any run folder exists."""
    n = len(split[0]) if split is not None else len(data.train_y)
    fits = n // ctx.world_size * ctx.world_size
    if cfg.batch_size > fits > 0:
        cfg = adjust_unset(cfg, {"batch_size": fits}, f"the training part holds {n:,} images")
    if cfg.batch_size > fits:
        raise GdasError(f"--batch-size {cfg.batch_size} is larger than the {n} training images; lower it or use "
                        "more training images")
    if check_input is None:
        return cfg
    check_input(data.image_size, False)  # what no setting changes
    if cfg.auxiliary and "auxiliary" not in cfg.given:
        try:
            check_input(data.image_size, True)
        except GdasError:
            cfg = adjust_unset(cfg, {"auxiliary": False}, f"{data.image_size}-pixel images are too small for the "
                                                          "auxiliary head")
    check_input(data.image_size, cfg.auxiliary)
    return cfg


def _smaller(k: Optional[int], n: int) -> Optional[int]:
    return k if k is not None and k < n else None


def read_split(run: RunDir) -> Split:
    """The (training, validation) indices a run drew when it started."""
    stored = run.read_json(SPLIT)
    try:
        return torch.tensor(stored["train"], dtype=torch.long), torch.tensor(stored["valid"], dtype=torch.long)
    except (KeyError, TypeError, ValueError):
        raise GdasError(f"{run.file(SPLIT)} is damaged (no train/valid index lists); restore it or start a new "
                        "run") from None


def create_run(out: Path, cfg: TrainConfig, genotype: AnyGenotype, device: torch.device,
               data: BatchSource) -> RunDir:
    run = RunDir.create(out, KIND, cfgbase.to_json(cfg), environment(device))
    save_genotype(genotype, run.file(GENOTYPE))
    run.write_json(CLASSES, class_names(data))
    run.write_json(DATA, data_record(data, cfg, **data.counts))
    split = data.split
    if split is not None:  # kept, so a resumed run validates on the same images
        run.write_json(SPLIT, {"seed": cfg.seed, "valid_portion": cfg.valid_portion, "train": split[0].tolist(),
                               "valid": split[1].tolist()})
    return run


def run_train(cfg: TrainConfig, out: Path, *, resume_run: bool = False, log: Callable[[str], None] = print,
              show_progress: bool = True) -> dict[str, Any]:
    """Train `cfg.genotype` in `out` (new, or continued from its last checkpoint).

    Every check on the user's input (genotype, sizes, data) runs before a new run directory is created.
    """
    cfg.validate()
    ctx = dist.context()
    dist.local_batch(cfg.batch_size, ctx)
    device = dist.local_device(resolve_device(cfg.device), ctx)
    setup_runtime(device, cfg.threads)
    cfg = with_channels_last(cfg, device)  # auto -> on/off, recorded in config.json
    split: Optional[Split] = None
    if resume_run:
        run, _ = RunDir.open_existing(out, KIND, writer=ctx.is_main)
        genotype = image_genotype(str(run.file(GENOTYPE)))  # the one it started with, whatever --genotype says now
        split = read_split(run) if cfg.valid_portion is not None else None
    else:
        genotype = image_genotype(cfg.genotype, cfg.space)
    check_sizes(genotype, cfg.C)
    check = space_of(genotype).check_input
    if cfg.imagenet:
        data = batch_source(cfg, device, ctx)
    else:  # images the network cannot read fail before a run folder exists
        images, split = training_images(cfg, split)
        if not resume_run:
            cfg = fit_to_images(cfg, images, split, ctx, check)
        elif check is not None:
            check(images.image_size, cfg.auxiliary)
        data = tensor_batches(cfg, images, split, device, ctx)
    task = TrainTask(cfg, genotype, data, device, show_progress=show_progress, test=data.has_test)
    if not resume_run:  # rank 0 creates the folder; its refusal (an existing run) stops every rank
        run = dist.main_first(lambda: create_run(out, cfg, genotype, device, data), ctx,
                              lambda: RunDir(out, writer=False))
    start, wall = resume(task, run, map_location=device) if resume_run else (0, 0.0)
    if ctx.is_main:
        held = f", {data.counts['valid_images']:,} of them held out for validation" if data.split is not None else ""
        held += "" if data.has_test else ", no test images (validation errors only)"
        log(f"train {cfg.preset}: {cfg.dataset} C={cfg.C} N={cfg.N} genotype {genotype} "
            f"epochs {start}..{cfg.epochs - 1} on {device} -> {run.path}")
        log(f"data: {count_words(data.counts, cfg, ('train', 'test') if data.has_test else ('train',))}{held}")
        for line in cfgbase.adjustment_lines(cfg):
            log(line)
    return fit(task, run, start_epoch=start, wall_time_s=wall, log=log if ctx.is_main else (lambda _: None))
