"""Algorithm 1 over any registered search space (`SearchTask`): alternating W and A steps, derivation, a run."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import torch

from gdas.budget import make_budget
from gdas.configs import base as cfgbase
from gdas.configs.runtime import resolve_device, setup_runtime, with_channels_last
from gdas.configs.module import TensorSearchConfig
from gdas.data.search import open_image_search
from gdas.data.tensor_search import open_tensor_search
from gdas.engine import distributed as dist
from gdas.engine import rundir as files
from gdas.engine.loop import fit, frozen, optimizer_step, resume, seed_everything
from gdas.engine.progress import ProgressBar
from gdas.engine.rundir import RunDir
from gdas.errors import GdasError
from gdas.genotypes import save_genotype
from gdas.guards import CollapseGuard
from gdas.lm.search import open_lm_search
from gdas.sampler import drop_idle_grads, tau_at
from gdas.spaces import get_space
from gdas.spaces.base import Benchmark, SearchSpace

Log = Callable[[str], None]


class SearchData(Protocol):
    """The data side of a search: what each W / A step reads and measures, and the metrics it reports.

    `loss(model, archs, phase, step)` returns the loss to minimise and a vector of `n_stats` sums of the
    step (summed on the device over the epoch); "w" steps read D_T, "a" steps D_V.
    """

    kind: str  # the run kind written to config.json ("search", "search-rnn")
    cfg: Any  # the run's config, as the data fitted it (e.g. a preset's batch to a small D_T)
    num_classes: int
    in_channels: int
    n_stats: int
    unit: str  # what the throughput counts ("images", "tokens")

    @property
    def steps_per_epoch(self) -> int:
        """The W / A iterations of every epoch."""
        ...

    def describe(self) -> str: ...

    def start_epoch(self, epoch: int) -> int: ...

    def loss(self, model: torch.nn.Module, archs: list, phase: str, step: int
             ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def progress(self, sums: list[float], steps_done: int) -> dict[str, float]: ...

    def epoch_metrics(self, task: "SearchTask", epoch: int, totals: list[float], steps: int, elapsed: float
                      ) -> dict[str, Any]: ...

    def summary(self, last: dict[str, Any]) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def weight_optimizer(params: list[torch.nn.Parameter], cfg: Any, device: torch.device) -> torch.optim.SGD:
    """SGD on W (fused kernels on CUDA, foreach elsewhere); parameters without a gradient are skipped."""
    cuda = device.type == "cuda"
    return torch.optim.SGD(params, lr=cfg.w_lr, momentum=cfg.w_momentum, nesterov=cfg.w_nesterov,
                           weight_decay=cfg.w_weight_decay, foreach=not cuda, fused=cuda or None)


class SearchTask:
    """Supernet, optimizers and generators of one search in any space; `loop.fit` drives its epochs."""

    epoch_files = (files.ALPHAS, files.GENOTYPES)

    def __init__(self, cfg: Any, space: SearchSpace, data: SearchData, device: torch.device, *,
                 show_progress: bool = True, mark_complete: bool = True):
        self.cfg, self.space, self.data, self.device, self.epochs = cfg, space, data, device, cfg.epochs
        self.mark_complete = mark_complete  # False: summary.json, the run's completion mark, is the caller's
        self.ctx = dist.context()
        seed_everything(cfg.seed)
        self.model = space.build_supernet(cfg, data.num_classes, data.in_channels).to(device)
        if cfg.channels_last:  # on the CPU too: oneDNN's depthwise conv backward is far faster
            self.model = self.model.to(memory_format=torch.channels_last)
        dist.broadcast_module(self.model)
        self.w_params = self.model.weight_parameters()
        self.a_params = self.model.arch_parameters()
        cuda = device.type == "cuda"
        self.w_opt = weight_optimizer(self.w_params, cfg, device)
        self.a_opt = torch.optim.Adam(self.a_params, lr=cfg.a_lr, betas=(cfg.a_beta1, cfg.a_beta2),
                                      weight_decay=cfg.a_weight_decay, foreach=not cuda, fused=cuda or None)
        # Cosine to w_lr_min over the run; None keeps the learning rate constant (the recurrent search).
        self.w_sched = (None if cfg.w_lr_min is None else
                        torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, T_max=cfg.epochs, eta_min=cfg.w_lr_min))
        # Every rank seeds the same generator: identical architecture samples on every rank.
        self.arch_gen = torch.Generator(device=device).manual_seed(cfg.seed + 3)
        self.show_progress = show_progress and self.ctx.is_main
        self.last_metrics: Optional[dict[str, Any]] = None
        self.guard = CollapseGuard(cfg, space)
        self.budget = make_budget(cfg, space, self.model, device, data) if cfg.cost else None

    # -- one iteration of Algorithm 1 ----------------------------------------------------------
    def _loss(self, phase: str, step: int, tau: float) -> tuple[list, torch.Tensor, torch.Tensor]:
        """(the sampled archs, the loss, the step's stats) of one W ("w") or A ("a") step."""
        archs = self.model.sample_arch(tau, arch_grad=phase == "a", generator=self.arch_gen)
        return (archs, *self.data.loss(self.model, archs, phase, step))

    def w_step(self, step: int, tau: float) -> torch.Tensor:
        """Update W on a D_T batch; A gets no gradient (the sampled child network alone runs). Under the
        no-acceleration ablation the unsampled ops' gradients are dropped: it differs from GDAS in compute only."""
        archs, loss, stats = self._loss("w", step, tau)
        optimizer_step(loss, self.w_opt, self.w_params, self.cfg.grad_clip, self.ctx,
                       after_backward=lambda: drop_idle_grads(archs))
        return stats

    def a_step(self, step: int, tau: float) -> torch.Tensor:
        """Update A on a D_V batch; W gets no gradient (autograd computes only what A needs)."""
        with frozen(self.w_params):
            _, loss, stats = self._loss("a", step, tau)
        if self.budget is not None:
            loss = loss + self.budget.penalty()
        self.a_opt.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward(inputs=self.a_params)
        else:  # every sampled path to the output was `none` (possible in NB201): A's gradient is exactly zero
            for p in self.a_params:
                p.grad = torch.zeros_like(p)
        dist.all_reduce_grads(self.a_params, self.ctx)
        self.a_opt.step()
        return stats

    def a_measure(self, step: int, tau: float) -> torch.Tensor:
        """A warm-up epoch's A step: the same sample and D_V batch, measured only (A and Adam stay as they are)."""
        with torch.no_grad():
            return self._loss("a", step, tau)[2]

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        tau = tau_at(epoch, cfg.epochs, cfg.tau_max, cfg.tau_min)
        lr = self.w_opt.param_groups[0]["lr"]
        self.model.train()
        steps = self.data.start_epoch(epoch)
        sums = torch.zeros(2 * self.data.n_stats, device=self.device)  # W-step sums, then A-step sums
        began, shown = time.perf_counter(), 0
        every = max(1, steps // 25)  # reading the sums syncs the device: only a few times an epoch
        warmup = epoch < cfg.warmup_epochs
        a_step = self.a_measure if warmup else self.a_step  # W-only epochs: untrained ops do not lose A early
        with ProgressBar(steps, f"{self.data.kind} {epoch + 1}/{cfg.epochs}", enabled=self.show_progress) as bar:
            for step in range(steps):
                sums += torch.cat([self.w_step(step, tau), a_step(step, tau)])
                if self.show_progress and ((step + 1) % every == 0 or step + 1 == steps):
                    shown_fields = self.data.progress(sums.tolist(), step + 1)
                    per_s = shown_fields.pop("per_s", None)
                    extra = {} if per_s is None else {f"{self.data.unit[:3]}_s": per_s / (time.perf_counter() - began)}
                    bar.update(step + 1 - shown, **shown_fields, tau=tau, **extra)
                    shown = step + 1
        totals = dist.all_reduce_sum(sums, self.ctx).tolist()  # waits for the device: `elapsed` is real
        elapsed = time.perf_counter() - began
        if self.w_sched is not None:
            self.w_sched.step()
        metrics = {"tau": tau, "lr": lr, **self.data.epoch_metrics(self, epoch, totals, steps, elapsed)}
        if warmup:
            metrics["warmup"] = True
        return metrics if self.budget is None else {**metrics, **self.budget.metrics(self.genotype())}

    # -- run-directory hooks ---------------------------------------------------------------------
    def genotype(self) -> Any:
        return self.space.derive(self.model.probabilities(), self.cfg)

    def after_epoch(self, epoch: int, metrics: dict[str, Any], run: RunDir) -> None:
        self.last_metrics = metrics  # identical on every rank (reduced), unlike a file only rank 0 writes
        probs = self.model.probabilities()
        names = getattr(self.model, "choice_names", None)  # a module space: each label's own candidates
        run.append_jsonl(files.ALPHAS, {"epoch": epoch, "tau": metrics["tau"], "ops": list(self.space.ops),
                                        **({"candidates": names()} if names is not None else {}),
                                        **{k: None if v is None else v.cpu().tolist() for k, v in probs.items()}})
        genotype = self.space.derive(probs, self.cfg)
        guarded = self.guard.observe(epoch, probs, genotype)
        run.append_jsonl(files.GENOTYPES, {"epoch": epoch, "genotype": genotype.to_json(), "text": str(genotype),
                                           **guarded})

    @property
    def stop_early(self) -> bool:
        """A guard (--stop-on-collapse) ended the search before its last epoch."""
        return self.guard.stop

    def finish(self, run: RunDir, wall_time_s: float) -> dict[str, Any]:
        kept = self.guard.kept()
        genotype = self.space.from_json(kept["genotype"]) if self.guard.stop and kept else self.genotype()
        if run.writer:
            save_genotype(genotype, run.file(files.GENOTYPE))
        last = self.last_metrics or (run.read_jsonl(files.METRICS)[-1:] or [{}])[0]
        hours = wall_time_s / 3600
        summary = {"kind": self.data.kind, "space": self.space.name, "genotype": str(genotype),
                   "genotype_json": genotype.to_json(), "param_free_ops": genotype.param_free_count(),
                   **self.data.summary(last),
                   "wall_time_s": round(wall_time_s, 2), "device": str(self.device),
                   "world_size": self.ctx.world_size,
                   "search_cost_device_hours": round(hours * self.ctx.world_size, 4), **self.guard.summary(),
                   **self._cost_summary(genotype), "complete": True}
        if run.writer and self.cfg.benchmark and self.space.benchmark is not None:
            summary["benchmark"] = self._lookup(genotype, self.space.benchmark)
        if self.mark_complete:
            run.write_json(files.SUMMARY, summary)
        return summary

    def _lookup(self, genotype: Any, benchmark: Benchmark) -> dict[str, Any]:
        """The derived cell's true accuracies; a failure now (e.g. a damaged archive) is recorded, never
        fatal: the search's result is on disk already."""
        try:
            return {"name": benchmark.name, **benchmark.query(genotype, self.cfg.benchmark)}
        except GdasError as exc:
            print(f"gdas: warning: no {benchmark.name} look-up ({exc}); the search itself is complete",
                  file=sys.stderr)
            return {"name": benchmark.name, "error": str(exc)}

    def _cost_summary(self, genotype: Any) -> dict[str, Any]:
        if self.budget is None:
            return {}
        b = self.budget
        measured = b.measured(genotype) if self.ctx.is_main else {}  # one process times it, alone
        return {"cost": b.kind, "cost_weight": self.cfg.cost_weight, "cost_target": self.cfg.cost_target,
                "cost_target_of": b.target_of, "cost_size": {**b.size, "dataset": getattr(self.cfg, "dataset", None)},
                **b.metrics(genotype), **measured}

    def state_dict(self) -> dict[str, Any]:
        state = {"space": self.space.name, "model": self.model.state_dict(), "w_opt": self.w_opt.state_dict(),
                 "a_opt": self.a_opt.state_dict(), "arch_gen": self.arch_gen.get_state(),
                 "guard": self.guard.state_dict(), **self.data.state_dict()}
        if self.w_sched is not None:
            state["w_sched"] = self.w_sched.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        stored = state.get("space", self.space.name)  # checkpoints from before the space was recorded: by their keys
        if stored != self.space.name:
            raise GdasError(f"the checkpoint is of a {stored} search, but the run's config says space "
                            f"{self.space.name}; restore its config.json or start a new run")
        self.model.load_state_dict(state["model"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        if self.w_sched is not None:
            self.w_sched.load_state_dict(state["w_sched"])
        self.arch_gen.set_state(state["arch_gen"])
        self.guard.load_state_dict(state.get("guard"))
        self.data.load_state_dict(state)

    def rank_state_dict(self) -> dict[str, Any]:
        """This rank's own part under torchrun: its data generators (augmentation) and batch-norm statistics."""
        return {"data": self.data.state_dict(), "buffers": dist.module_buffers(self.model)}

    def load_rank_state_dict(self, state: dict[str, Any]) -> None:
        self.data.load_state_dict(state["data"])
        dist.load_module_buffers(self.model, state["buffers"])


def _search_data(space: SearchSpace, cfg: Any) -> Callable[..., Any]:
    """The data side of a search: a user's tensors (a module space from Python), images (CNN and module spaces)
    or a token stream (the recurrent space)."""
    if isinstance(cfg, TensorSearchConfig):
        return open_tensor_search
    return open_lm_search if space.data == "lm" else open_image_search


def open_search(cfg: Any, out: Path, *, resume_run: bool = False, show_progress: bool = True,
                mark_complete: bool = True) -> tuple["SearchTask", RunDir]:
    """The task of a search in `out` and its run directory, before any epoch runs (a continued run's checkpoint is
    not loaded yet): the config validated, the device and threads set up, the data opened and fitted."""
    cfg.validate()
    space = get_space(cfg.space)
    device = dist.local_device(resolve_device(cfg.device), dist.context())
    setup_runtime(device, cfg.threads)
    if cfg.channels_last is None and space.data == "image":  # auto -> on/off, recorded in config.json
        cfg = with_channels_last(cfg, device)
    data, run = _search_data(space, cfg)(cfg, out, device, resume_run)
    task = SearchTask(data.cfg, space, data, device, show_progress=show_progress, mark_complete=mark_complete)
    return task, run


def run_search(cfg: Any, out: Path, *, resume_run: bool = False, log: Log = print,
               show_progress: bool = True, mark_complete: bool = True) -> dict[str, Any]:
    """One search run in `out` (new, or continued from its last checkpoint), in the space `cfg.space` names.
    `mark_complete=False` returns the summary without writing summary.json: the caller completes the run (a
    --random-baseline follows), and until then the run resumes from its last checkpoint."""
    task, run = open_search(cfg, out, resume_run=resume_run, show_progress=show_progress,
                            mark_complete=mark_complete)
    cfg, space, data, device, ctx = task.cfg, task.space, task.data, task.device, task.ctx
    start, wall = resume(task, run, map_location=device) if resume_run else (0, 0.0)
    if ctx.is_main:
        log(f"{data.kind} {cfg.preset}: space {space.name}, {data.describe()} sampler={cfg.sampler} "
            f"epochs {start}..{cfg.epochs - 1} on {device} -> {run.path}")
        log(cfg.a_steps_line(data.steps_per_epoch))
        for line in cfgbase.adjustment_lines(cfg):
            log(line)
    return fit(task, run, start_epoch=start, wall_time_s=wall, log=log if ctx.is_main else (lambda _: None))


def stored_search_config(out: Path) -> tuple[Any, Optional[list[int]]]:
    """The config of an existing search folder (one run or a multi-seed folder) and its seeds (None: one run)."""
    from gdas.configs.rnn import RNNSearchConfig
    from gdas.configs.search import SearchConfig

    if (out / files.MULTISEED).exists():
        meta = files.read_json(out / files.MULTISEED)
        cls = TensorSearchConfig if meta.get("kind") == TensorSearchConfig.KIND else SearchConfig
        return cfgbase.from_json(cls, meta["config"]), list(meta["seeds"])
    stored = files.read_json(out / files.CONFIG) if (out / files.CONFIG).exists() else None
    kind = stored.get("kind") if isinstance(stored, dict) else None
    if kind == "search-rnn":
        return files.stored_config(out, kind, RNNSearchConfig), None
    if kind == TensorSearchConfig.KIND:
        return files.stored_config(out, kind, TensorSearchConfig), None
    if (out / files.SUMMARY).exists() and kind == "search":
        raise GdasError(f"{out} is already complete ({files.SUMMARY} exists); nothing to resume")
    return files.stored_config(out, "search", SearchConfig), None
