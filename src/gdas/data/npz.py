"""`--dataset npz`: a user's images in one NumPy .npz file (x_train, y_train; optional x_test, y_test, classes)."""

from __future__ import annotations

import os
import zipfile
import zlib
from typing import Optional

import numpy as np

from gdas.data.arrays import dataset_from_arrays
from gdas.data.dataset import ImageDataset
from gdas.errors import GdasError

REQUIRED = ("x_train", "y_train")
OPTIONAL = ("x_test", "y_test", "classes")
_HOW = "write it with numpy.savez(FILE, x_train=..., y_train=..., x_test=..., y_test=...)"


def _read(archive: "np.lib.npyio.NpzFile", key: str, path: str) -> np.ndarray:
    try:
        value = archive[key]
    except ValueError:  # object arrays need pickle, which a data file never gets
        raise GdasError(f"{path}: {key} holds Python objects, not a plain array; save it as a numeric (or, "
                        "for classes, string) NumPy array") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise GdasError(f"{path}: {key} is truncated or corrupt ({type(e).__name__}); {_HOW}") from None
    if not isinstance(value, np.ndarray):  # a zip member that is no .npy comes back as its raw bytes
        raise GdasError(f"{path}: {key}.npy is not a NumPy array file; {_HOW}")
    return value


def _class_names(names: np.ndarray, path: str) -> tuple[str, ...]:
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise GdasError(f"{path}: classes has dtype {names.dtype} and shape {names.shape}; want a 1-D array of "
                        "class names (strings), one per label")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())


def load_npz(path: Optional[str | os.PathLike], *, image_size: Optional[int] = None,
             channels: Optional[int] = None) -> ImageDataset:
    """The ImageDataset of an npz file: images NHWC / NCHW / NHW, uint8 or floats in [0, 1] (see `arrays`)."""
    if path is None:
        raise GdasError("--dataset npz needs --data-dir FILE.npz with x_train, y_train")
    path = os.path.expanduser(os.fspath(path))
    if os.path.isdir(path):
        raise GdasError(f"{path} is a folder; --dataset npz reads one FILE.npz (class sub-folders of images are "
                        "--dataset folder)")
    if not os.path.isfile(path):
        raise GdasError(f"{path} does not exist; pass --data-dir FILE.npz, a NumPy file with x_train, y_train "
                        f"({_HOW})")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise GdasError(f"{path} is not a readable .npz file ({type(e).__name__}); {_HOW}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise GdasError(f"{path} holds a single array (.npy), not named arrays; {_HOW}")
    with archive:
        keys = archive.files
        missing = [k for k in REQUIRED if k not in keys]
        if missing:
            found = ", ".join(keys) if keys else "none"
            raise GdasError(f"{path} has no {' or '.join(missing)} (arrays found: {found}); want x_train, y_train "
                            f"and optionally {', '.join(OPTIONAL)}")
        arrays = {k: _read(archive, k, path) for k in REQUIRED + OPTIONAL if k in keys}
    classes = _class_names(arrays.pop("classes"), path) if "classes" in arrays else None
    return dataset_from_arrays(arrays["x_train"], arrays["y_train"], arrays.get("x_test"), arrays.get("y_test"),
                               classes=classes, image_size=image_size, channels=channels, name="npz", source=path)
