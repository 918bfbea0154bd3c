"""A user's class folders (`DIR/train/<class>/*`, optional `test/` or `val/`): the scan, the parallel decode
(each file by `data.decode`), the cache, and the choice between memory and streaming."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, Optional, Sequence, TextIO

import numpy as np
import torch

from gdas.data.dataset import ImageDataset, channel_stats
from gdas.data.decode import GRAY_MODES, decode_image, oriented_size, stack_images, unreadable
from gdas.data.stream import FolderImages
from gdas.engine import distributed as dist
from gdas.errors import GdasError

DEFAULT_IMAGE_SIZE = 32
# Decoded folders above this stream from disk (GDAS_STREAM_LIMIT_MB overrides it); the decode briefly needs twice it.
STREAM_LIMIT_MB = 4096
STATS_SAMPLE = 10_000  # a streamed folder's mean / std come from at most this many training images
MAX_PROCESSES = 8
CHUNK = 64  # images per decode task: few tasks, each worth a process round trip
# Part of every cache key: raise it when decoding changes, so that folders cached by the old decoder are decoded
# again (2: 16-bit grey scaled, not clipped; EXIF orientation applied).
CACHE_VERSION = 2


# -- decoding ------------------------------------------------------------------------------------------
def _decode_chunk(root: str, files: Sequence[str], size: int, how: str
                  ) -> list[tuple[Optional[np.ndarray], tuple[int, int], str, str]]:
    """(pixels or None, original size, mode, error) per file. `how`: "pixels" decodes; "verify" decodes but
    returns no pixels (a streamed folder's check for bad files in bounded memory); "header" reads headers only."""
    from PIL import Image

    out = []
    for rel in files:
        path = os.path.join(root, rel)
        try:
            if how == "header":
                with Image.open(path) as img:
                    out.append((None, oriented_size(img), img.mode, ""))
            else:
                pixels, original = decode_image(path, size)
                out.append((pixels if how == "pixels" else None, original,
                            "L" if pixels.shape[0] == 1 else "RGB", ""))
        except Exception as exc:  # Pillow raises many types on corrupt files
            out.append((None, (0, 0), "", f"{type(exc).__name__}: {exc}".splitlines()[0][:200]))
    return out


def decode_files(root: str, files: Sequence[str], size: int, *, how: str = "pixels") -> tuple[list, int]:
    """`_decode_chunk` over every file, in chunks on a few processes; (results in file order, processes used)."""
    chunks = [list(files[i:i + CHUNK]) for i in range(0, len(files), CHUNK)]
    processes = min(os.cpu_count() or 1, MAX_PROCESSES, len(chunks))
    if processes <= 1:
        parts = [_decode_chunk(root, chunk, size, how) for chunk in chunks]
    else:  # fork where there is one: the workers need no re-import of torch
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context(method)) as pool:
            parts = list(pool.map(_decode_chunk, repeat(root), chunks, repeat(size), repeat(how)))
    return [r for part in parts for r in part], max(processes, 1)


# -- the scan ------------------------------------------------------------------------------------------
@dataclass
class Split:
    """The image files of one split: paths relative to the data folder, labels, and what was not used."""

    files: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    listing: list[tuple[str, int, int]] = field(default_factory=list)  # (name, bytes, mtime ns): the cache key
    ignored: int = 0  # files that are not images (by extension), hidden files

    def keep(self, good: Sequence[bool]) -> None:
        self.files = [f for f, g in zip(self.files, good) if g]
        self.labels = [y for y, g in zip(self.labels, good) if g]


def image_extensions() -> frozenset[str]:
    from PIL import Image

    return frozenset(ext.lower() for ext in Image.registered_extensions())


def class_folders(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_split(root: Path, split_dir: Path, classes: list[str], exts: frozenset[str]) -> Split:
    """Every image under `split_dir/<class>/` (sub-folders too), sorted; an empty class folder is an error."""
    split = Split()
    split.ignored = sum(1 for p in split_dir.iterdir() if not p.is_dir())
    for label, name in enumerate(classes):
        before = len(split.files)
        for dirpath, dirnames, filenames in os.walk(split_dir / name):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fname in sorted(filenames):
                if fname.startswith(".") or os.path.splitext(fname)[1].lower() not in exts:
                    split.ignored += 1
                    continue
                path = os.path.join(dirpath, fname)
                st = os.stat(path)
                rel = os.path.relpath(path, root)
                split.files.append(rel)
                split.labels.append(label)
                split.listing.append((rel, st.st_size, st.st_mtime_ns))
        if len(split.files) == before:
            raise GdasError(f"class folder {split_dir / name} holds no images; add images (any format Pillow reads) "
                            "or remove the folder")
    return split


def scan_folder(data_dir: Optional[str]) -> tuple[Path, list[str], Split, Optional[Split]]:
    """(root, class names, training split, test split or None) of a folder dataset."""
    if data_dir is None:
        raise GdasError("--dataset folder needs --data-dir DIR with train/<class>/ image folders")
    root = Path(os.path.expanduser(data_dir))
    if not root.is_dir():
        raise GdasError(f"--data-dir {root} does not exist; pass a folder holding train/<class>/ image folders")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise GdasError(f"{root} has no train/ folder; put each class's training images in {root}/train/<class>/")
    classes = class_folders(train_dir)
    if len(classes) < 2:
        found = f"only one class folder ({classes[0]})" if classes else "no class folders"
        raise GdasError(f"{train_dir} has {found}; a classifier needs at least two: add {train_dir}/<class>/ "
                        "folders of images")
    exts = image_extensions()
    train = scan_split(root, train_dir, classes, exts)
    test_dir = next((root / name for name in ("test", "val") if (root / name).is_dir()), None)
    if test_dir is None:
        return root, classes, train, None
    test_classes = class_folders(test_dir)
    unknown = sorted(set(test_classes) - set(classes))
    if unknown:
        raise GdasError(f"{test_dir}/{unknown[0]} is not a class of {train_dir}; rename it to one of the training "
                        f"classes or add {train_dir}/{unknown[0]}/")
    test = scan_split(root, test_dir, test_classes, exts)
    test.labels = [classes.index(test_classes[y]) for y in test.labels]
    return root, classes, train, test


# -- the cache -----------------------------------------------------------------------------------------
def cache_dir(purpose: str) -> Path:
    """$GDAS_CACHE_DIR, else $XDG_CACHE_HOME/gdas or ~/.cache/gdas; one sub-folder per purpose."""
    base = os.environ.get("GDAS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gdas")
    return Path(base) / purpose


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()


def read_cache(path: Path, key: str) -> Optional[dict[str, Any]]:
    """The cached entry of `key`, or None (missing, stale or damaged: it is then rebuilt and written over)."""
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a missing or damaged cache file is never fatal
        return None
    return entry if isinstance(entry, dict) and entry.get("key") == key else None


def write_cache(path: Path, entry: dict[str, Any]) -> bool:
    """`entry` saved to `path` atomically (rundir's write-then-rename, straight to the file: no copy in memory)."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            torch.save(entry, handle)
        os.replace(tmp, path)
    except OSError as exc:  # e.g. a read-only home: the run goes on, the next one decodes again
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        _log(f"gdas: warning: cannot write the folder cache {path} ({exc.strerror or exc}); set GDAS_CACHE_DIR",
             sys.stderr)
        return False
    return True


# -- loading -------------------------------------------------------------------------------------------
def _log(line: str, stream: Optional[TextIO] = None) -> None:
    if dist.context().is_main:
        print(line, file=stream or sys.stdout, flush=True)


def stream_limit_mb() -> float:
    raw = os.environ.get("GDAS_STREAM_LIMIT_MB")
    try:
        return STREAM_LIMIT_MB if raw is None else float(raw)
    except ValueError:
        raise GdasError(f"GDAS_STREAM_LIMIT_MB must be a number of megabytes, got {raw!r}; fix or unset it") from None


def _drop_bad(results: list, split: Split, root: Path, skip: bool) -> tuple[list, int]:
    """The results of the readable files (the split keeps only those); an unreadable one stops the run unless
    `skip`, and an emptied class is an error."""
    bad = [i for i, r in enumerate(results) if r[3]]
    if bad and not skip:
        raise GdasError(unreadable(str(root / split.files[bad[0]]), results[bad[0]][3]))
    if not bad:
        return results, 0
    good = [not r[3] for r in results]
    before = set(split.labels)
    split.keep(good)
    if set(split.labels) != before:
        raise GdasError(f"a class of {root} has no readable images left after --skip-bad-images; replace its files")
    return [r for r, g in zip(results, good) if g], len(bad)


def _resized_note(originals: list[tuple[int, int]], size: int) -> str:
    if not originals:
        return ""
    common, _ = Counter(originals).most_common(1)[0]
    other = sum(1 for o in originals if o != common)
    note = f", resized {other} images of other sizes than the most common {common[0]}x{common[1]}" if other else ""
    return note + (f", all resized to {size}x{size}" if common != (size, size) else "")


def load_folder(data_dir: Optional[str], *, image_size: Optional[int] = None, channels: Optional[int] = None,
                skip_bad_images: bool = False, stream: Optional[bool] = None) -> ImageDataset:
    """A folder dataset: decoded into uint8 tensors (cached), or, streamed, `FolderImages` read by loader
    workers batch by batch. Labels follow the sorted class-folder names of train/."""
    size = image_size or DEFAULT_IMAGE_SIZE
    root, classes, train, test = scan_folder(data_dir)
    splits = [train] + ([test] if test is not None else [])
    n = sum(len(s.files) for s in splits)
    megabytes = n * (channels or 3) * size * size / 2 ** 20
    limit = stream_limit_mb()
    streamed = stream if stream is not None else megabytes > limit
    why = ("--stream" if stream else "--no-stream") if stream is not None else (
        f"up to {megabytes:.0f} MB decoded, {'over' if streamed else 'under'} the {limit:.0f} MB limit "
        "(GDAS_STREAM_LIMIT_MB)")
    options = [str(root.resolve()), size, channels, skip_bad_images, streamed]
    key = _digest([options, CACHE_VERSION, [s.listing for s in splits]])
    path = cache_dir("folders") / f"{_digest(options)[:24]}.pt"  # a new decoder writes over the old entry
    entry = read_cache(path, key)
    if entry is not None:
        done = f"read {len(entry['train_y']) + len(entry['test_y'])} images of {root} from the cache {path}"
    else:
        build = _build_streamed if streamed else _build_in_memory
        entry, done = build(root, splits, size, channels, skip_bad_images)
        entry["key"] = key
        done += f" (cached in {path})" if write_cache(path, entry) else ""
    ignored = sum(s.ignored for s in splits)
    _log(f"folder {root}: {len(entry['train_y'])} training and {len(entry['test_y'])} test images, {len(classes)} "
         f"classes{f', {ignored} other files ignored' if ignored else ''}; {'streamed' if streamed else 'in memory'} "
         f"({why}); {done}{entry['note']}")
    return _dataset(root, classes, entry, streamed)


def _build_in_memory(root: Path, splits: list[Split], size: int, channels: Optional[int], skip: bool
                     ) -> tuple[dict[str, Any], str]:
    files = [f for s in splits for f in s.files]
    results, processes = decode_files(str(root), files, size)
    parts, bad = [], 0
    for split in splits:
        mine, results = results[:len(split.files)], results[len(split.files):]
        kept, dropped = _drop_bad(mine, split, root, skip)
        parts.append(kept)
        bad += dropped
    c = channels or (1 if all(r[0].shape[0] == 1 for r in parts[0]) else 3)
    xs = [stack_images([r[0] for r in part], c, size) for part in parts]
    if len(xs) == 1:
        xs.append(torch.empty((0, c, size, size), dtype=torch.uint8))
    mean, std = channel_stats(xs[0])
    labels = [torch.tensor(s.labels, dtype=torch.int64) for s in splits] + [torch.empty(0, dtype=torch.int64)]
    entry = {"train_x": xs[0], "train_y": labels[0], "test_x": xs[1], "test_y": labels[1], "mean": list(mean),
             "std": list(std), "channels": c}
    skipped = f", left out {bad} unreadable images" if bad else ""
    entry["note"] = skipped + _resized_note([r[1] for part in parts for r in part], size)
    return entry, f"decoded {sum(len(p) for p in parts)} images with {processes} processes"


def _build_streamed(root: Path, splits: list[Split], size: int, channels: Optional[int], skip: bool
                    ) -> tuple[dict[str, Any], str]:
    # Headers find most bad files; with --skip-bad-images every file is decoded once (pixels dropped), so that
    # no unreadable file is left to stop the run when its batch comes.
    results, processes = decode_files(str(root), [f for s in splits for f in s.files], size,
                                      how="verify" if skip else "header")
    bad, modes, originals = 0, [], []
    for i, split in enumerate(splits):
        mine, results = results[:len(split.files)], results[len(split.files):]
        kept, dropped = _drop_bad(mine, split, root, skip)
        bad += dropped
        modes += [r[2] for r in kept] if i == 0 else []
        originals += [r[1] for r in kept]
    c = channels or (1 if all(m in GRAY_MODES for m in modes) else 3)
    train = splits[0]
    # mean / std from a seeded sample of the training images (all of them when there are few), in file order
    k = min(STATS_SAMPLE, len(train.files))
    pick = torch.randperm(len(train.files), generator=torch.Generator().manual_seed(0))[:k].sort().values.tolist()
    sample, _ = decode_files(str(root), [train.files[i] for i in pick], size)
    failed = {pick[i]: r for i, r in enumerate(sample) if r[3]}  # headers that opened, pixels that did not
    if failed:
        _drop_bad([failed.get(i, (None, (0, 0), "", "")) for i in range(len(train.files))], train, root, skip)
        bad += len(failed)
    mean, std = channel_stats(stack_images([r[0] for r in sample if not r[3]], c, size))
    entry = {"train_files": train.files, "train_y": torch.tensor(train.labels, dtype=torch.int64),
             "test_files": splits[1].files if len(splits) > 1 else [],
             "test_y": torch.tensor(splits[1].labels if len(splits) > 1 else [], dtype=torch.int64),
             "mean": list(mean), "std": list(std), "channels": c, "size": size}
    skipped = f", left out {bad} unreadable images" if bad else ""
    entry["note"] = f"{skipped}{_resized_note(originals, size)}; mean / std from {k} training images"
    return entry, f"{'decoded' if skip else 'checked the headers of'} {len(originals)} images with {processes} processes"


def _dataset(root: Path, classes: list[str], entry: dict[str, Any], streamed: bool) -> ImageDataset:
    mean, std = tuple(entry["mean"]), tuple(entry["std"])
    if streamed:
        c, size = entry["channels"], entry["size"]
        train_x: Any = FolderImages(str(root), entry["train_files"], c, size)
        test_x: Any = FolderImages(str(root), entry["test_files"], c, size)
    else:
        train_x, test_x = entry["train_x"], entry["test_x"]
    return ImageDataset("folder", train_x, entry["train_y"], test_x, entry["test_y"], len(classes), mean, std,
                        classes=tuple(classes))
