"""A user's data as tensors: (x, y) arrays or tensors, a torch Dataset of (x, y), or two DataLoaders (D_T, D_V);
the seeded split and per-epoch batches on the device, and a fingerprint that tells the same data again."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from gdas.data.augment import batch_indices
from gdas.engine import distributed as dist
from gdas.errors import GdasError

Split = tuple[torch.Tensor, torch.Tensor]


def data_kind(data: Any) -> str:
    """"tensors", "dataset" or "loaders": what a run on tensors reads; anything else is a one-line error."""
    if isinstance(data, Dataset) and not isinstance(data, DataLoader):
        return "dataset"
    if isinstance(data, (tuple, list)) and len(data) == 2:
        if all(isinstance(d, DataLoader) for d in data):
            return "loaders"
        if all(isinstance(d, (torch.Tensor, np.ndarray)) for d in data):
            return "tensors"
    raise GdasError("data for a module space must be an (x, y) pair of arrays or tensors, a torch Dataset of (x, y) "
                    "samples, or a pair of DataLoaders (D_T, D_V); got a " + type(data).__name__)


def to_device(value: Any, device: torch.device) -> Any:
    """Tensors (also inside tuples, lists and dicts) on `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def _pair(item: Any, where: str) -> tuple[Any, Any]:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise GdasError(f"{where} must give (x, y) pairs, got a {type(item).__name__}"
                        + (f" of {len(item)} items" if isinstance(item, (tuple, list)) else ""))
    return item[0], item[1]


class Samples:
    """Indexed samples: (x, y) tensors (held on the device) or a Dataset (collated per batch)."""

    def __init__(self, data: Any, device: torch.device):
        self.kind, self.device = data_kind(data), device
        if self.kind == "tensors":
            x, y = (torch.as_tensor(v) for v in data)
            if x.dim() == 0 or y.dim() == 0 or len(x) != len(y):
                raise GdasError(f"x and y must hold one sample per row, alike in number; got shapes "
                                f"{tuple(x.shape)} and {tuple(y.shape)}")
            self.x, self.y = x.to(device), y.to(device)
            self.n = len(x)
        else:
            assert self.kind == "dataset"
            self.dataset = data
            try:
                self.n = len(data)
            except TypeError:
                raise GdasError("the Dataset must have a length (an IterableDataset: pass two DataLoaders)") from None
        if self.n < 2:
            raise GdasError(f"the data hold {self.n} samples; a search needs at least two (D_T and D_V)")

    def take(self, indices: torch.Tensor) -> tuple[Any, Any]:
        if self.kind == "tensors":
            return self.x[indices], self.y[indices]
        batch = default_collate([_pair(self.dataset[int(i)], "the Dataset") for i in indices.tolist()])
        return to_device(batch[0], self.device), to_device(batch[1], self.device)

    def fingerprint(self) -> dict[str, Any]:
        """Shapes and sums of (x, y) (tensors), or the length (a Dataset): a resumed run must read the same."""
        if self.kind != "tensors":
            return {"kind": self.kind, "samples": self.n}
        return {"kind": self.kind, "samples": self.n, "x": list(self.x.shape), "y": list(self.y.shape),
                "x_dtype": str(self.x.dtype), "y_dtype": str(self.y.dtype),
                "x_sum": float(self.x.double().sum()), "y_sum": float(self.y.double().sum())}


class SplitBatches:
    """D_T and D_V batches of indexed samples: a seeded order per epoch, whole batches, this rank's share."""

    def __init__(self, samples: Samples, split: Split, batch_size: int, order_gen: torch.Generator):
        self.samples, self.split, self.batch_size, self.order_gen = samples, split, batch_size, order_gen
        self.ctx = dist.context()
        self.rows: dict[str, torch.Tensor] = {}

    def sizes(self) -> tuple[int, int]:
        return len(self.split[0]), len(self.split[1])

    def steps(self, cap: Optional[int]) -> int:
        """The W / A iterations of every epoch: whole batches of D_T and of D_V, at most `cap`."""
        d_t, d_v = self.sizes()
        return min(d_t // self.batch_size, d_v // self.batch_size, cap or 10 ** 12)

    def start_epoch(self, cap: Optional[int]) -> int:
        t = batch_indices(len(self.split[0]), self.batch_size, self.order_gen, drop_last=True)
        v = batch_indices(len(self.split[1]), self.batch_size, self.order_gen, drop_last=True)
        steps = self.steps(cap)
        if steps:
            self.rows = {"w": dist.shard(self.split[0][torch.stack(t[:steps])], self.ctx, dim=1),
                         "a": dist.shard(self.split[1][torch.stack(v[:steps])], self.ctx, dim=1)}
        return steps

    def get(self, phase: str, step: int) -> tuple[Any, Any]:
        return self.samples.take(self.rows[phase][step])


class TwoLoaders:
    """D_T and D_V as the user's DataLoaders: each epoch reads both from their start, as many batches as the
    shorter one holds (under torchrun each rank reads its own loaders)."""

    def __init__(self, loaders: tuple[DataLoader, DataLoader], device: torch.device):
        self.loaders, self.device = loaders, device
        self.iters: dict[str, Any] = {}
        for loader, name in zip(loaders, ("D_T", "D_V")):
            try:
                len(loader)
            except TypeError:
                raise GdasError(f"the {name} DataLoader must have a length (a map-style Dataset or a sized "
                                "iterable)") from None

    def sizes(self) -> tuple[int, int]:
        return tuple(len(loader.dataset) if hasattr(loader.dataset, "__len__") else len(loader)  # type: ignore
                     for loader in self.loaders)

    def steps(self, cap: Optional[int]) -> int:
        """The W / A iterations of every epoch: as many batches as the shorter loader holds, at most `cap`."""
        return min(len(self.loaders[0]), len(self.loaders[1]), cap or 10 ** 12)

    def start_epoch(self, cap: Optional[int]) -> int:
        self.iters = {"w": iter(self.loaders[0]), "a": iter(self.loaders[1])}
        return self.steps(cap)

    def get(self, phase: str, step: int) -> tuple[Any, Any]:
        x, y = _pair(next(self.iters[phase]), "a DataLoader")
        return to_device(x, self.device), to_device(y, self.device)


def first_batch(data: Any, kind: str, n: int = 8) -> tuple[Any, Any]:
    """A few samples (on the CPU) for the checks before a run starts: sizes, a dry forward, the loss."""
    if kind == "loaders":
        return _pair(next(iter(data[0])), "a DataLoader")
    if kind == "tensors":
        return torch.as_tensor(data[0])[:n], torch.as_tensor(data[1])[:n]
    return default_collate([_pair(data[i], "the Dataset") for i in range(min(n, len(data)))])
