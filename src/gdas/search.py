"""Algorithm 1 for CNN cells: alternating W (on D_T) and A (on D_V) steps, derivation, multi-seed search."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from gdas.engine import distributed as dist
from gdas.configs import base as cfgbase
from gdas.configs.runtime import autocast, environment, resolve_device, setup_runtime, with_channels_last
from gdas.configs.search import SearchConfig
from gdas.data.augment import BatchAugment, batch_indices
from gdas.data.images import ImageDataset, load_image_dataset
from gdas.spaces.darts.derive import derive_genotype
from gdas.errors import GdasError
from gdas.genotypes import Genotype, save_genotype
from gdas.engine.loop import fit, frozen, optimizer_step, resume, seed_everything
from gdas.spaces.darts.ops import PRIMITIVES
from gdas.engine.progress import ProgressBar
from gdas.engine.rundir import RunDir
from gdas.sampler import tau_at
from gdas.spaces.darts.supernet import SearchNetwork

KIND = "search"
ALPHAS = "alphas.jsonl"
GENOTYPES = "genotypes.jsonl"


def split_indices(n: int, train_portion: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random split of n training images into D_T and D_V."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(round(n * train_portion))
    if cut < 1 or cut >= n:
        raise GdasError(f"cannot split {n} images into D_T/D_V with --train-portion {train_portion}; "
                             "use more images or a portion nearer 0.5")
    return order[:cut].sort().values, order[cut:].sort().values


def loss_and_correct(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy (in float32 under autocast) and the number of correct predictions, both on the device."""
    return F.cross_entropy(logits.float(), y), (logits.argmax(1) == y).sum()


def weight_optimizer(params: list[torch.nn.Parameter], cfg: SearchConfig, device: torch.device) -> torch.optim.SGD:
    """SGD on W (fused kernels on CUDA, foreach elsewhere); parameters without a gradient are skipped."""
    cuda = device.type == "cuda"
    return torch.optim.SGD(params, lr=cfg.w_lr, momentum=cfg.w_momentum, weight_decay=cfg.w_weight_decay,
                           foreach=not cuda, fused=cuda or None)


class SearchTask:
    """Supernet, optimizers, data and generators of one CNN search; `loop.fit` drives its epochs."""

    epoch_files = (ALPHAS, GENOTYPES)

    def __init__(self, cfg: SearchConfig, data: ImageDataset, split: tuple[torch.Tensor, torch.Tensor],
                 device: torch.device, *, show_progress: bool = True):
        self.cfg, self.device, self.epochs = cfg, device, cfg.epochs
        self.ctx = dist.context()
        self.local_batch = dist.local_batch(cfg.batch_size, self.ctx)
        self.data = data.to(device)
        self.d_t, self.d_v = split
        seed_everything(cfg.seed)
        self.model = SearchNetwork(cfg.C, cfg.N, data.num_classes, in_channels=data.channels, steps=cfg.steps,
                                   frc=cfg.frc, sampler=cfg.sampler, sample_scope=cfg.sample_scope).to(device)
        if cfg.channels_last:  # on the CPU too: oneDNN's depthwise/dilated conv backward is far faster in NHWC
            self.model = self.model.to(memory_format=torch.channels_last)
        dist.broadcast_module(self.model)
        self.w_params = self.model.weight_parameters()
        self.a_params = self.model.arch_parameters()
        cuda = device.type == "cuda"
        self.w_opt = weight_optimizer(self.w_params, cfg, device)
        self.a_opt = torch.optim.Adam(self.a_params, lr=cfg.a_lr, betas=(cfg.a_beta1, cfg.a_beta2),
                                      weight_decay=cfg.a_weight_decay, foreach=not cuda, fused=cuda or None)
        self.w_sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, T_max=cfg.epochs, eta_min=cfg.w_lr_min)
        self.augment = BatchAugment(data.mean, data.std, crop_padding=cfg.crop_padding, flip=cfg.flip,
                                    cutout=cfg.cutout, channels_last=cfg.channels_last)
        # Every rank seeds the same generators: identical batch order and identical architecture samples.
        self.order_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 2 + self.ctx.rank)
        self.arch_gen = torch.Generator(device=device).manual_seed(cfg.seed + 3)
        self.show_progress = show_progress and self.ctx.is_main
        self.last_metrics: Optional[dict[str, Any]] = None

    # -- one iteration of Algorithm 1 ----------------------------------------------------------
    def epoch_indices(self, split: torch.Tensor, batches: list[torch.Tensor], steps: int) -> torch.Tensor:
        """(steps, local batch) image indices of this rank for an epoch, moved to the device in one copy."""
        rows = split[torch.stack(batches[:steps])]
        return dist.shard(rows, self.ctx, dim=1).to(self.device)

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented images and labels at device-resident training-set `indices`."""
        return self.augment(self.data.train_x[indices], self.aug_gen), self.data.train_y[indices]

    def _loss(self, x: torch.Tensor, y: torch.Tensor, tau: float, arch_grad: bool):
        archs = self.model.sample_arch(tau, arch_grad=arch_grad, generator=self.arch_gen)
        with autocast(self.device, self.cfg.amp):
            logits = self.model(x, archs)
        return loss_and_correct(logits, y)

    def w_step(self, x: torch.Tensor, y: torch.Tensor, tau: float):
        """Update W on a D_T batch; A gets no gradient (the sampled child network alone runs)."""
        loss, correct = self._loss(x, y, tau, arch_grad=False)
        optimizer_step(loss, self.w_opt, self.w_params, self.cfg.grad_clip, self.ctx)
        return loss.detach(), correct

    def a_step(self, x: torch.Tensor, y: torch.Tensor, tau: float):
        """Update A on a D_V batch; W gets no gradient (autograd computes only what A needs)."""
        with frozen(self.w_params):
            loss, correct = self._loss(x, y, tau, arch_grad=True)
        self.a_opt.zero_grad(set_to_none=True)
        loss.backward(inputs=self.a_params)
        dist.all_reduce_grads(self.a_params, self.ctx)
        self.a_opt.step()
        return loss.detach(), correct

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        tau = tau_at(epoch, cfg.epochs, cfg.tau_max, cfg.tau_min)
        lr = self.w_opt.param_groups[0]["lr"]
        self.model.train()
        t_batches = batch_indices(len(self.d_t), cfg.batch_size, self.order_gen, drop_last=True)
        v_batches = batch_indices(len(self.d_v), cfg.batch_size, self.order_gen, drop_last=True)
        steps = min(len(t_batches), len(v_batches), cfg.steps_per_epoch or 10 ** 12)
        if steps == 0:
            raise GdasError(f"--batch-size {cfg.batch_size} is larger than D_T/D_V ({len(self.d_t)}/"
                                 f"{len(self.d_v)} images); lower it or use more data")
        t_indices = self.epoch_indices(self.d_t, t_batches, steps)
        v_indices = self.epoch_indices(self.d_v, v_batches, steps)
        sums = torch.zeros(4, device=self.device)  # train loss, train correct, valid loss, valid correct
        began, shown = time.perf_counter(), 0
        every = max(1, steps // 25)  # reading the sums syncs the device: only a few times an epoch
        with ProgressBar(steps, f"search {epoch + 1}/{cfg.epochs}", enabled=self.show_progress) as bar:
            for step in range(steps):
                loss_t, correct_t = self.w_step(*self.batch(t_indices[step]), tau)
                loss_v, correct_v = self.a_step(*self.batch(v_indices[step]), tau)
                sums += torch.stack([loss_t, correct_t.float(), loss_v, correct_v.float()])
                if self.show_progress and ((step + 1) % every == 0 or step + 1 == steps):
                    values = (sums / (step + 1)).tolist()
                    bar.update(step + 1 - shown, loss=values[0], acc=values[1] / self.local_batch, tau=tau,
                               img_s=2 * (step + 1) * cfg.batch_size / (time.perf_counter() - began))
                    shown = step + 1
        total = dist.all_reduce_sum(sums, self.ctx).tolist()  # waits for the device: `elapsed` is real
        elapsed = time.perf_counter() - began
        self.w_sched.step()
        n = steps * cfg.batch_size
        world = self.ctx.world_size
        return {"tau": tau, "lr": lr, "train_loss": total[0] / (steps * world), "train_acc": total[1] / n,
                "valid_loss": total[2] / (steps * world), "valid_acc": total[3] / n,
                "images_per_s": 2 * n / elapsed}

    # -- run-directory hooks ---------------------------------------------------------------------
    def genotype(self) -> Genotype:
        probs = self.model.probabilities()
        return derive_genotype(probs["normal"], probs["reduce"], steps=self.cfg.steps)

    def after_epoch(self, epoch: int, metrics: dict[str, Any], run: RunDir) -> None:
        self.last_metrics = metrics  # identical on every rank (reduced), unlike a file only rank 0 writes
        probs = self.model.probabilities()
        run.append_jsonl(ALPHAS, {"epoch": epoch, "tau": metrics["tau"], "ops": list(PRIMITIVES),
                                  **{k: None if v is None else v.cpu().tolist() for k, v in probs.items()}})
        genotype = self.genotype()
        run.append_jsonl(GENOTYPES, {"epoch": epoch, "genotype": genotype.to_json(), "text": str(genotype)})

    def finish(self, run: RunDir, wall_time_s: float) -> dict[str, Any]:
        genotype = self.genotype()
        if run.writer:
            save_genotype(genotype, run.file("genotype.json"))
        last = self.last_metrics or (run.read_jsonl("metrics.jsonl")[-1:] or [{}])[0]
        hours = wall_time_s / 3600
        summary = {"kind": KIND, "genotype": str(genotype), "genotype_json": genotype.to_json(),
                   "final_valid_acc": last.get("valid_acc"), "final_train_acc": last.get("train_acc"),
                   "wall_time_s": round(wall_time_s, 2), "device": str(self.device),
                   "world_size": self.ctx.world_size,
                   "search_cost_device_hours": round(hours * self.ctx.world_size, 4), "complete": True}
        run.write_json("summary.json", summary)
        return summary

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "w_opt": self.w_opt.state_dict(),
                "a_opt": self.a_opt.state_dict(), "w_sched": self.w_sched.state_dict(),
                "order_gen": self.order_gen.get_state(), "aug_gen": self.aug_gen.get_state(),
                "arch_gen": self.arch_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.w_sched.load_state_dict(state["w_sched"])
        self.order_gen.set_state(state["order_gen"])
        self.aug_gen.set_state(state["aug_gen"])
        self.arch_gen.set_state(state["arch_gen"])


def load_search_data(cfg: SearchConfig) -> ImageDataset:
    data = load_image_dataset(cfg.dataset, cfg.data_dir, synthetic_train=cfg.synthetic_train, seed=cfg.seed)
    if cfg.train_subset is not None and cfg.train_subset < len(data.train_y):
        data = data.subset(cfg.train_subset, None, torch.Generator().manual_seed(cfg.seed))
    return data


def run_search(cfg: SearchConfig, out: Path, *, resume_run: bool = False, log: Callable[[str], None] = print,
               show_progress: bool = True) -> dict[str, Any]:
    """One search run in `out` (new, or continued from its last checkpoint)."""
    cfg.validate()
    ctx = dist.context()
    dist.local_batch(cfg.batch_size, ctx)  # every rank fails alike on a batch that does not split
    device = dist.local_device(resolve_device(cfg.device), ctx)
    setup_runtime(device, cfg.threads)
    cfg = with_channels_last(cfg, device)  # auto -> on/off, recorded in config.json
    if resume_run:
        run, _ = RunDir.open_existing(out, KIND, writer=ctx.is_main)
    else:  # rank 0 creates the folder; its refusal (an existing run) stops every rank
        run = dist.main_first(lambda: RunDir.create(out, KIND, cfgbase.to_json(cfg), environment(device)), ctx,
                              lambda: RunDir(out, writer=False))
    data = load_search_data(cfg)
    if resume_run:
        split_json = run.read_json("split.json")
        split = (torch.tensor(split_json["train"]), torch.tensor(split_json["valid"]))
    else:
        split = split_indices(len(data.train_y), cfg.train_portion, cfg.seed)
        run.write_json("split.json", {"seed": cfg.seed, "train": split[0].tolist(), "valid": split[1].tolist()})
    task = SearchTask(cfg, data, split, device, show_progress=show_progress)
    start, wall = resume(task, run, map_location=device) if resume_run else (0, 0.0)
    if ctx.is_main:
        log(f"search {cfg.preset}: {cfg.dataset} C={cfg.C} N={cfg.N} sampler={cfg.sampler} "
            f"epochs {start}..{cfg.epochs - 1} on {device} -> {run.path}")
    return fit(task, run, start_epoch=start, wall_time_s=wall, log=log if ctx.is_main else (lambda _: None))



def with_seed(cfg: SearchConfig, seed: int) -> SearchConfig:
    return dataclasses.replace(cfg, seed=seed)
