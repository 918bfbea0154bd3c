"""Training a frozen model on a user's tensors with their loss (`TensorTrainTask`): SGD on the training part, the
loss and metric on the validation part (best.pt) and an optional test part; a multi-seed search's retrain too."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from gdas.configs import base as cfgbase
from gdas.configs.module import TensorTrainConfig
from gdas.configs.runtime import autocast, resolve_device, setup_runtime
from gdas.data.augment import batch_indices
from gdas.data.dataset import seeded_split
from gdas.data.search import new_run_dir
from gdas.data.tensor_search import (TensorInputs, as_float, check_same_inputs, current, objective_of, recorded,
                                     sizes_of)
from gdas.data.tensors import Samples, Split, data_kind, first_batch, to_device
from gdas.engine import distributed as dist
from gdas.engine import rundir as files
from gdas.engine.loop import fit, optimizer_step, resume, seed_everything
from gdas.engine.progress import ProgressBar
from gdas.engine.rundir import RunDir
from gdas.errors import GdasError
from gdas.flops import count_parameters
from gdas.frozen import freeze
from gdas.genotypes import save_genotype
from gdas.objective import Objective, check_on_batch
from gdas.spaces.module.genotype import ChoiceMap
from gdas.train import lr_at

KIND = TensorTrainConfig.KIND
Batches = Iterator[tuple[Any, Any]]


class TensorTrainData:
    """The training part (shuffled whole batches per epoch), the validation part and the test part of a run on
    tensors: rows of indexed samples, or DataLoaders (training, validation)."""

    def __init__(self, batch_size: int, seed: int, device: torch.device, *, samples: Optional[Samples] = None,
                 split: Optional[Split] = None, loaders: Optional[tuple[Any, Any]] = None,
                 test: Optional[Samples] = None):
        self.batch_size, self.device, self.samples, self.split, self.loaders = batch_size, device, samples, split, loaders
        self.test = test
        self.order_gen = torch.Generator().manual_seed(seed + 1)
        self.ctx = dist.context()
        n = samples.n if samples is not None else 0
        self.train_rows = split[0] if split is not None else torch.arange(n)
        self.has_valid = loaders is not None or split is not None
        self.has_test = test is not None

    def train_batches(self, cap: Optional[int]) -> tuple[int, Batches]:
        if self.loaders is not None:
            steps = min(len(self.loaders[0]), cap or 10 ** 12)
            it = iter(self.loaders[0])
            return steps, ((to_device(x, self.device), to_device(y, self.device)) for x, y in
                           (next(it) for _ in range(steps)))
        batches = batch_indices(len(self.train_rows), self.batch_size, self.order_gen, drop_last=True)
        steps = min(len(batches), cap or 10 ** 12)
        rows = [dist.shard(self.train_rows[b], self.ctx) for b in batches[:steps]]
        assert self.samples is not None
        return steps, (self.samples.take(r) for r in rows)

    def valid_batches(self) -> Batches:
        if self.loaders is not None:
            return ((to_device(x, self.device), to_device(y, self.device)) for x, y in self.loaders[1])
        assert self.samples is not None and self.split is not None
        return self._in_order(self.samples, self.split[1])

    def test_batches(self) -> Batches:
        assert self.test is not None
        return self._in_order(self.test, torch.arange(self.test.n))

    def _in_order(self, samples: Samples, rows: torch.Tensor) -> Batches:
        for chunk in rows.split(self.batch_size):
            yield samples.take(dist.shard(chunk, self.ctx))

    def counts(self) -> dict[str, int]:
        if self.loaders is not None:
            return {"train_batches": len(self.loaders[0]), "valid_batches": len(self.loaders[1])}
        return {"train_samples": len(self.train_rows), "valid_samples": 0 if self.split is None else len(self.split[1]),
                "test_samples": 0 if self.test is None else self.test.n}

    def state_dict(self) -> dict[str, Any]:
        return {"order_gen": self.order_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order_gen.set_state(state["order_gen"])


class TensorTrainTask:
    """Model, optimizer and best result of one training run on tensors; `loop.fit` drives its epochs."""

    epoch_files: tuple[str, ...] = ()

    def __init__(self, cfg: TensorTrainConfig, model: torch.nn.Module, data: TensorTrainData, objective: Objective,
                 device: torch.device, *, show_progress: bool = True):
        self.cfg, self.data, self.objective, self.device, self.epochs = cfg, data, objective, device, cfg.epochs
        self.ctx = dist.context()
        self.model = model.to(device)
        dist.broadcast_module(self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        cuda = device.type == "cuda"
        self.opt = torch.optim.SGD(self.params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                   weight_decay=cfg.weight_decay, foreach=not cuda, fused=cuda or None)
        self.show_progress = show_progress and self.ctx.is_main
        self.metric = objective.metric_name
        self.best: dict[str, Any] = {"epoch": -1}
        self.last_metrics: Optional[dict[str, Any]] = None

    def _sums(self, out: Any, y: Any, loss: torch.Tensor) -> torch.Tensor:
        n = float(len(y))
        metric = self.objective.metric(out, y) if self.objective.metric is not None else loss
        return torch.stack([loss.detach().float() * n, metric.detach().float() * n, torch.tensor(n, device=loss.device)])

    @torch.no_grad()
    def evaluate(self, prefix: str, batches: Batches) -> dict[str, float]:
        self.model.eval()
        sums = torch.zeros(3, device=self.device)
        for x, y in batches:
            with autocast(self.device, self.cfg.amp):
                out = as_float(self.model(x))
            sums += self._sums(out, y, self.objective.loss(out, y))
        loss, metric, n = dist.all_reduce_sum(sums, self.ctx).tolist()
        if n == 0:
            raise GdasError(f"the {prefix} part is empty; give it samples")
        result = {f"{prefix}_loss": loss / n, f"{prefix}_samples": int(n)}
        if self.metric is not None:
            result[f"{prefix}_{self.metric}"] = metric / n
        return result

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        lr = lr_at(epoch, self.cfg)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.model.train()
        steps, batches = self.data.train_batches(self.cfg.steps_per_epoch)
        if steps == 0:
            raise GdasError(f"--batch-size {self.cfg.batch_size} is larger than the training part; lower it")
        sums = torch.zeros(3, device=self.device)
        began = time.perf_counter()
        with ProgressBar(steps, f"train {epoch + 1}/{self.cfg.epochs}", enabled=self.show_progress) as bar:
            for x, y in batches:
                with autocast(self.device, self.cfg.amp):
                    out = self.model(x)
                out = as_float(out)
                loss = self.objective.loss(out, y)
                optimizer_step(loss, self.opt, self.params, self.cfg.grad_clip, self.ctx)
                with torch.no_grad():
                    sums += self._sums(out, y, loss)
                bar.update(1)
        loss_sum, metric_sum, n = dist.all_reduce_sum(sums, self.ctx).tolist()
        metrics: dict[str, Any] = {"lr": lr, "train_loss": loss_sum / n,
                                   "samples_per_s": n / (time.perf_counter() - began)}
        if self.metric is not None:
            metrics[f"train_{self.metric}"] = metric_sum / n
        if self.data.has_valid:
            metrics.update(self.evaluate("valid", self.data.valid_batches()))
        if self.data.has_test:
            metrics.update(self.evaluate("test", self.data.test_batches()))
        return metrics

    def score(self, metrics: dict[str, Any]) -> Optional[float]:
        """The validation score, higher is better (a lower-is-better one negated)."""
        value = metrics.get(self.objective.score_key())
        return None if value is None else (value if self.objective.better() == "higher" else -value)

    def after_epoch(self, epoch: int, metrics: dict[str, Any], run: RunDir) -> None:
        self.last_metrics = metrics
        score = self.score(metrics)
        if score is not None and (self.best["epoch"] < 0 or score > self.best["score"]):
            self.best = {"epoch": epoch, "score": score, **{k: v for k, v in metrics.items()
                                                             if k.startswith(("valid_", "test_"))}}
            run.save_checkpoint({"epoch": epoch, "task": {"model": self.model.state_dict()}, **self.best}, name=files.BEST)

    def finish(self, run: RunDir, wall_time_s: float) -> dict[str, Any]:
        last = self.last_metrics or (run.read_jsonl(files.METRICS)[-1:] or [{}])[0]
        summary = {"kind": KIND, "space": self.cfg.space, "genotype": self.cfg.genotype, "loss": self.cfg.loss,
                   "metric": self.metric, "metric_mode": self.objective.better(),
                   "score_key": self.objective.score_key(), "params_M": round(count_parameters(self.model, ()) / 1e6, 4),
                   **{f"final_{k}": v for k, v in last.items() if k.startswith(("valid_", "test_", "train_"))},
                   "wall_time_s": round(wall_time_s, 2), "device": str(self.device),
                   "world_size": self.ctx.world_size, "complete": True}
        if self.data.has_valid:
            summary["best_epoch"] = self.best["epoch"]
            summary.update({f"best_{k}": v for k, v in self.best.items() if k.startswith(("valid_", "test_"))})
        run.write_json(files.SUMMARY, summary)
        return summary

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "best": dict(self.best),
                "data": self.data.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.best = dict(state["best"])
        self.data.load_state_dict(state["data"])

    def rank_state_dict(self) -> dict[str, Any]:
        return {"buffers": dist.module_buffers(self.model)}

    def load_rank_state_dict(self, state: dict[str, Any]) -> None:
        dist.load_module_buffers(self.model, state["buffers"])


def build_model(cfg: TensorTrainConfig, inputs: TensorInputs, sizes: tuple[Optional[int], Optional[int]]
                ) -> torch.nn.Module:
    """The model a run trains: the plain module given, or the space frozen by the run's choice map."""
    if inputs.model is not None:
        return inputs.model
    if cfg.space is None or cfg.genotype is None:
        raise GdasError("gdas.train on tensors needs a module space's choice map (a SearchResult, a search folder or "
                        "a genotype) or a plain module to train")
    genotype = ChoiceMap.from_json(json.loads(cfg.genotype))
    return freeze(cfg.space, genotype, weights=cfg.weights, num_classes=sizes[0], in_channels=sizes[1])


def run_tensor_train(cfg: TensorTrainConfig, out: Path, *, resume_run: bool = False, log: Callable[[str], None] = print,
                     show_progress: bool = True, split: Optional[Split] = None, test: bool = True) -> dict[str, Any]:
    """Train on the current `TensorInputs` in `out` (new, or continued). `split`: the (training, validation) rows
    of a multi-seed search's retrain (else --valid-portion draws one); `test` False never reads test samples.
    Every check runs before a new run folder exists."""
    cfg.validate()
    inputs = current()
    ctx = dist.context()
    device = dist.local_device(resolve_device(cfg.device), ctx)
    setup_runtime(device, cfg.threads)
    kind = data_kind(inputs.data)
    x, y = first_batch(inputs.data, kind)
    objective = objective_of(cfg, inputs, y)
    samples = None if kind == "loaders" else Samples(inputs.data, device)
    test_samples = Samples(inputs.test, device) if inputs.test is not None and test else None
    if resume_run:
        run, _ = RunDir.open_existing(out, KIND, writer=ctx.is_main)
        check_same_inputs(cfg, kind, objective, out)
        if samples is not None and (cfg.valid_portion is not None or split is not None):
            stored = run.read_json(files.SPLIT)
            split = (torch.tensor(stored["train"]), torch.tensor(stored["valid"]))
    else:
        cfg = recorded(cfg, kind, objective)
        if samples is not None and split is None and cfg.valid_portion is not None:
            valid, train = seeded_split(samples.n, cfg.valid_portion, cfg.seed, "--valid-portion")
            split = (train, valid)
    dist.local_batch(cfg.batch_size, ctx)
    sizes = sizes_of(x, samples.y if samples is not None and samples.kind == "tensors" else y)
    seed_everything(cfg.seed)
    model = build_model(cfg, inputs, sizes).to(device)
    model.eval()
    with torch.no_grad():
        check_on_batch(objective, model(to_device(x, device)), to_device(y, device))
    data = TensorTrainData(cfg.batch_size, cfg.seed, device, samples=samples, split=split,
                           loaders=inputs.data if kind == "loaders" else None, test=test_samples)
    task = TensorTrainTask(cfg, model, data, objective, device, show_progress=show_progress)
    if not resume_run:
        run = new_run_dir(out, KIND, cfg, device)
        if cfg.genotype is not None and cfg.space is not None:
            save_genotype(ChoiceMap.from_json(json.loads(cfg.genotype)), run.file(files.GENOTYPE))
        if split is not None:
            run.write_json(files.SPLIT, {"seed": cfg.seed, "train": split[0].tolist(), "valid": split[1].tolist()})
        run.write_json(files.DATA, {"data": kind, **data.counts(), "num_classes": sizes[0], "channels": sizes[1]})
    start, wall = resume(task, run, map_location=device) if resume_run else (0, 0.0)
    if ctx.is_main:
        log(f"train-tensors {cfg.preset}: {cfg.genotype or 'a plain module'} on {kind} {data.counts()} epochs "
            f"{start}..{cfg.epochs - 1} on {device} -> {run.path}")
        for line in cfgbase.adjustment_lines(cfg):
            log(line)
    return fit(task, run, start_epoch=start, wall_time_s=wall, log=log if ctx.is_main else (lambda _: None))


def trained_model(run_dir: Path, model: Optional[torch.nn.Module] = None) -> torch.nn.Module:
    """A run's trained model on the CPU in eval mode: best.pt when it has one, else its last weights; `model`: the
    plain module the run trained (else its space frozen by its choice map, rebuilt at the run's sizes)."""
    run_dir = Path(run_dir)
    cfg = files.stored_config(run_dir, KIND, TensorTrainConfig)
    if model is None:
        data = files.read_json(run_dir / files.DATA)
        genotype = ChoiceMap.from_json(json.loads(cfg.genotype or "{}"))
        model = freeze(cfg.space, genotype, num_classes=data.get("num_classes"), in_channels=data.get("channels"))
    name = files.BEST if (run_dir / files.BEST).exists() else files.CHECKPOINT
    state = torch.load(run_dir / name, map_location="cpu", weights_only=False)["task"]["model"]
    model.load_state_dict(state)
    return model.cpu().eval()


__all__ = ["TensorTrainData", "TensorTrainTask", "build_model", "run_tensor_train", "trained_model"]
