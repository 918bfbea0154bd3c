"""The tensor side of a module-space search: the user's data, loss and metric (`TensorInputs`, which config.json
cannot hold), the D_T / D_V batches, the checks on a first batch, and the run folder."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from gdas.configs.runtime import autocast
from gdas.data.dataset import seeded_split
from gdas.data.search import fit_batch, new_run_dir
from gdas.data.tensors import Samples, SplitBatches, TwoLoaders, data_kind, first_batch
from gdas.engine import distributed as dist
from gdas.engine import rundir as files
from gdas.engine.rundir import RunDir
from gdas.errors import GdasError
from gdas.nn.labels import value_of
from gdas.objective import Fn, Objective, check_on_batch, integer_labels, make_objective
from gdas.spaces import get_space

KIND = "search-tensors"


@dataclass(frozen=True)
class TensorInputs:
    """What a run on tensors reads besides its config: the data, the loss and the metric (None: the defaults); a
    training run's test data and the plain module it trains (None: its space frozen by its choice map)."""

    data: Any
    loss: Optional[Fn] = None
    metric: Optional[Fn] = None
    test: Any = None
    model: Optional[torch.nn.Module] = None


_CURRENT: list[TensorInputs] = []


@contextlib.contextmanager
def using(inputs: TensorInputs) -> Iterator[None]:
    """The runs started inside the block (searches, seeds, retrains) read `inputs`."""
    _CURRENT.append(inputs)
    try:
        yield
    finally:
        _CURRENT.pop()


def current() -> TensorInputs:
    if not _CURRENT:
        raise GdasError("a search on tensors runs from Python, where its data and loss are given: "
                        "gdas.search(data, space=..., loss=..., out=RUN_DIR, resume=True) continues it")
    return _CURRENT[-1]


def as_float(out: Any) -> Any:
    """A model's output for the loss in float32 (under --amp bf16 the forward ran in bf16)."""
    return out.float() if isinstance(out, torch.Tensor) and out.is_floating_point() else out


def sizes_of(x: Any, y: Any) -> tuple[Optional[int], Optional[int]]:
    """(num_classes, in_channels) a factory may take: the labels' count for integer targets, x's dim 1."""
    classes = int(y.max()) + 1 if integer_labels(y) and y.numel() else None
    channels = int(x.shape[1]) if isinstance(x, torch.Tensor) and x.dim() >= 2 else None
    return classes, channels


def objective_of(cfg: Any, inputs: TensorInputs, sample_target: Any) -> Objective:
    return make_objective(inputs.loss, inputs.metric, cfg.metric_mode, sample_target)


def recorded(cfg: Any, kind: str, objective: Objective) -> Any:
    """`cfg` with what the run reads recorded (data kind, the loss's and metric's names)."""
    return dataclasses.replace(cfg, data=kind, loss=objective.loss_name, metric=objective.metric_name)


def with_inputs(cfg: Any, inputs: TensorInputs) -> Any:
    """A new run's config with what `inputs` are recorded (before it is compared with a stored run's)."""
    kind = data_kind(inputs.data)
    return recorded(cfg, kind, objective_of(cfg, inputs, first_batch(inputs.data, kind)[1]))


def check_same_inputs(cfg: Any, kind: str, objective: Objective, out: Path) -> None:
    """A continued run must be given the data, loss and metric it started with."""
    now = recorded(cfg, kind, objective)
    for field in ("data", "loss", "metric"):
        if getattr(now, field) != getattr(cfg, field):
            raise GdasError(f"{out} was started with {field} {getattr(cfg, field)!r}, but this call gives "
                            f"{getattr(now, field)!r}; pass what the run started with to continue it")


def dry_check(cfg: Any, classes: Optional[int], channels: Optional[int], x: Any, y: Any,
              objective: Objective) -> None:
    """Before any run folder exists: the space's dry forward (shapes, cost target), then the loss and metric on
    the model's output for a first batch."""
    space = get_space(cfg.space)
    assert space.check_model is not None
    supernet = space.check_model(cfg, classes, channels, x)
    supernet.eval()
    with torch.no_grad():
        archs = supernet.fixed_archs({label: _first(supernet.block(label)) for label in supernet.labels})
        output = supernet(x, archs)
    check_on_batch(objective, output, y)


def _first(block: Any) -> Any:
    return value_of(block, list(range(block.n_chosen)) if block.n_chosen > 1 else 0)


class TensorSearchData:
    """D_T (W) and D_V (A) batches of a user's data with their loss and metric (see `search.SearchData`): the sums
    of a step are (loss x n, metric x n, n)."""

    kind = KIND
    n_stats = 3
    unit = "samples"

    def __init__(self, cfg: Any, batches: Any, objective: Objective, device: torch.device,
                 sizes: tuple[Optional[int], Optional[int]]):
        self.cfg, self.batches, self.objective, self.device = cfg, batches, objective, device
        self.num_classes, self.in_channels = sizes
        self.metric = objective.metric_name
        self.example: Any = None  # one sample on the device: what --cost counts at

    def describe(self) -> str:
        d_t, d_v = self.batches.sizes()
        return f"{self.cfg.data}: D_T {d_t:,}, D_V {d_v:,} samples, loss {self.objective.loss_name}"

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.steps(self.cfg.steps_per_epoch)

    def start_epoch(self, epoch: int) -> int:
        steps = self.batches.start_epoch(self.cfg.steps_per_epoch)
        if steps == 0:
            raise GdasError(f"--batch-size {self.cfg.batch_size} is larger than D_T/D_V {self.batches.sizes()}; "
                            "lower it or use more data")
        return steps

    def loss(self, model: torch.nn.Module, archs: list, phase: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.batches.get(phase, step)
        if self.cfg.channels_last and isinstance(x, torch.Tensor) and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.cfg.amp):
            out = model(x, archs)
        loss = self.objective.loss(as_float(out), y)
        n = float(len(y)) if hasattr(y, "__len__") else 1.0
        with torch.no_grad():
            metric = self.objective.metric(out, y) if self.objective.metric is not None else loss
            stats = torch.stack([loss.detach().float() * n, metric.detach().float() * n,
                                 torch.tensor(n, device=loss.device)])
        return loss, stats

    def progress(self, sums: list[float], steps_done: int) -> dict[str, float]:
        shown = {"loss": sums[0] / max(sums[2], 1.0), "per_s": 2 * sums[2]}
        if self.metric is not None:
            shown[self.metric[:8]] = sums[1] / max(sums[2], 1.0)
        return shown

    def epoch_metrics(self, task: Any, epoch: int, totals: list[float], steps: int, elapsed: float
                      ) -> dict[str, Any]:
        n_t, n_v = max(totals[2], 1.0), max(totals[5], 1.0)
        metrics = {"train_loss": totals[0] / n_t, "valid_loss": totals[3] / n_v}
        if self.metric is not None:
            metrics.update({f"train_{self.metric}": totals[1] / n_t, f"valid_{self.metric}": totals[4] / n_v})
        metrics["valid_samples"] = int(totals[5])
        return {**metrics, "samples_per_s": (totals[2] + totals[5]) / elapsed}

    def summary(self, last: dict[str, Any]) -> dict[str, Any]:
        out = {"final_train_loss": last.get("train_loss"), "final_valid_loss": last.get("valid_loss"),
               "loss": self.objective.loss_name, "metric": self.metric, "metric_mode": self.objective.better(),
               "score_key": self.objective.score_key(), "valid_samples": last.get("valid_samples")}
        if self.metric is not None:
            out.update({f"final_valid_{self.metric}": last.get(f"valid_{self.metric}"),
                        f"final_train_{self.metric}": last.get(f"train_{self.metric}")})
        return out

    def state_dict(self) -> dict[str, Any]:
        gen = getattr(self.batches, "order_gen", None)
        return {} if gen is None else {"order_gen": gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        gen = getattr(self.batches, "order_gen", None)
        if gen is not None and "order_gen" in state:
            gen.set_state(state["order_gen"])


def open_tensor_search(cfg: Any, out: Path, device: torch.device, resume_run: bool
                       ) -> tuple[TensorSearchData, RunDir]:
    """The data and run folder of a search on tensors: every check (data, sizes, the dry forward, the loss) runs
    before a new run folder exists; a new run writes its split, a resumed one reads it."""
    inputs = current()
    ctx = dist.context()
    kind = data_kind(inputs.data)
    x, y = first_batch(inputs.data, kind)
    objective = objective_of(cfg, inputs, y)
    samples = None if kind == "loaders" else Samples(inputs.data, device)
    if resume_run:
        run, _ = RunDir.open_existing(out, KIND, writer=ctx.is_main)
        check_same_inputs(cfg, kind, objective, out)
        stored = run.read_json(files.DATA).get("fingerprint")
        if samples is not None and stored != samples.fingerprint():
            raise GdasError(f"{out} holds a run on other data (its {files.DATA} fingerprint differs); pass the data "
                            "it started with to continue it, or choose another out")
        split_json = run.read_json(files.SPLIT) if samples is not None else None
        split = None if split_json is None else (torch.tensor(split_json["train"]), torch.tensor(split_json["valid"]))
    else:
        cfg = recorded(cfg, kind, objective)
        split = None if samples is None else seeded_split(samples.n, cfg.train_portion, cfg.data_seed,
                                                          "--train-portion")
        if split is not None:
            cfg = fit_batch(cfg, split, "samples")
        dist.local_batch(cfg.batch_size, ctx)
    sizes = sizes_of(x, samples.y if samples is not None and samples.kind == "tensors" else y)
    dry_check(cfg, *sizes, x, y, objective)  # on the CPU, where the checked model is built
    order_gen = torch.Generator().manual_seed(cfg.seed + 1)  # every rank draws the same batch order
    batches = TwoLoaders(inputs.data, device) if samples is None else SplitBatches(samples, split, cfg.batch_size,
                                                                                     order_gen)
    # Fitted alike when a run starts and when it continues (a stored, fitted config is left as it is).
    cfg = cfg.fit_a_lr(batches.steps(cfg.steps_per_epoch))
    if not resume_run:
        run = new_run_dir(out, KIND, cfg, device)
        if split is not None:
            run.write_json(files.SPLIT, {"seed": cfg.data_seed, "train": split[0].tolist(),
                                         "valid": split[1].tolist()})
        d_t, d_v = batches.sizes()
        run.write_json(files.DATA, {"data": kind, "d_t_samples": d_t, "d_v_samples": d_v, "num_classes": sizes[0],
                                    "channels": sizes[1],
                                    "fingerprint": None if samples is None else samples.fingerprint(),
                                    "x_shape": list(x.shape[1:]) if isinstance(x, torch.Tensor) else None,
                                    "y_shape": list(y.shape[1:]) if isinstance(y, torch.Tensor) else None})
    data = TensorSearchData(cfg, batches, objective, device, sizes)
    data.example = x[:1].to(device) if isinstance(x, torch.Tensor) else x
    return data, run
