"""Where a batch's uint8 images come from: a tensor indexed on its device, or a streamed folder's files decoded
by loader workers (`FolderImages`); `BatchReader` serves searches and training runs alike."""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import torch
from torch.utils.data import DataLoader, Dataset

from gdas.data.decode import decode_image, stack_images, unreadable
from gdas.errors import GdasError

STREAM_WORKERS = min(4, os.cpu_count() or 1)  # loader processes of one streamed reader


class FolderImages:
    """A streamed folder's images, left on disk but shaped like the uint8 (N, C, H, W) tensor they decode to.

    Indexing (and `index_select`) gives a subset, as a tensor's would; `decode` reads the pixels. It stays on the
    CPU side whatever `to` asks: its batches move to the device when they are read.
    """

    dtype = torch.uint8
    device = torch.device("cpu")

    def __init__(self, root: str, files: Sequence[str], channels: int, size: int):
        self.root, self.files, self.channels, self.size = root, list(files), channels, size

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), self.channels, self.size, self.size))

    def dim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: Union[slice, torch.Tensor, Sequence[int]]) -> "FolderImages":
        if isinstance(index, slice):
            files = self.files[index]
        else:
            positions = index.tolist() if isinstance(index, torch.Tensor) else list(index)
            files = [self.files[i] for i in positions]
        return FolderImages(self.root, files, self.channels, self.size)

    def index_select(self, dim: int, index: torch.Tensor) -> "FolderImages":
        assert dim == 0
        return self[index]

    def to(self, *args: Any, **kwargs: Any) -> "FolderImages":
        return self

    def pin_memory(self) -> "FolderImages":
        return self

    def decode(self, index: Sequence[int]) -> tuple[torch.Tensor, str]:
        """(uint8 (len(index), C, H, W) pixels, "") or (an empty tensor, the one-line error of a bad file)."""
        arrays = []
        for i in index:
            path = os.path.join(self.root, self.files[i])
            try:
                arrays.append(decode_image(path, self.size)[0])
            except Exception as exc:  # Pillow raises many types on corrupt files
                return torch.empty(0, dtype=torch.uint8), unreadable(path, f"{type(exc).__name__}: {exc}")
        return stack_images(arrays, self.channels, self.size), ""


class _Batches(Dataset):
    """Loader items are whole batches: the sampler yields index lists, a worker decodes one list at a time."""

    def __init__(self, images: FolderImages):
        self.images = images

    def __getitem__(self, index: Sequence[int]) -> tuple[torch.Tensor, str]:  # type: ignore[override]
        return self.images.decode(index)


Images = Union[torch.Tensor, FolderImages]


class BatchReader:
    """The uint8 images of a list of index batches, by position: a tensor's are indexed on its device (each
    batch at any time); a streamed folder's are decoded ahead by loader workers, read in order."""

    def __init__(self, images: Images, batches: Union[torch.Tensor, Sequence[torch.Tensor]], device: torch.device,
                 workers: int = STREAM_WORKERS):
        self.images, self.batches, self.device, self.workers = images, batches, device, workers
        self.iterator: Optional[Any] = None
        self.last: tuple[int, Optional[torch.Tensor]] = (-1, None)

    @property
    def streamed(self) -> bool:
        return isinstance(self.images, FolderImages)

    def __getitem__(self, step: int) -> torch.Tensor:
        if not isinstance(self.images, FolderImages):
            return self.images[self.batches[step]]
        if step == self.last[0]:  # the same batch again (e.g. a benchmark's warm-up steps)
            return self.last[1]
        if step != self.last[0] + 1:
            raise RuntimeError(f"streamed batches are read in order: batch {step} after {self.last[0]}")
        if self.iterator is None:
            lists = [b.tolist() for b in self.batches]
            cuda = self.device.type == "cuda"
            self.iterator = iter(DataLoader(_Batches(self.images), sampler=lists, batch_size=None,
                                            num_workers=self.workers, pin_memory=cuda))
        x, error = next(self.iterator)
        if error:
            raise GdasError(error)
        self.last = (step, x.to(self.device, non_blocking=True))
        return self.last[1]


def take(images: Images, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The uint8 images at `index` at once (decoded here for a streamed folder)."""
    return BatchReader(images, [index], device, workers=0)[0]
