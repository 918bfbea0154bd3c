"""Pickles of plain arrays (CIFAR and downsampled-ImageNet batches) read without running code: an unpickler that
refuses every global but NumPy's array reconstruction, and the check of a batch's images and labels."""

from __future__ import annotations

import codecs
import pickle
from typing import Any, Callable

import numpy as np

from gdas.errors import GdasError


def _numpy_global(module: str, name: str) -> Any:
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    return getattr(multiarray if module.endswith("multiarray") else numeric, name)


# The only globals a CIFAR batch needs: numpy array and dtype reconstruction (numpy 1.x and 2.x names).
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_global("multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_global("multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): lambda: _numpy_global("numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): lambda: _numpy_global("numeric", "_frombuffer"),
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: codecs.encode,  # bytes in protocol-2 pickles written by Python 3
}


class _ForbiddenGlobal(pickle.UnpicklingError):
    pass


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy array reconstruction: no code can run."""

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            raise _ForbiddenGlobal(f"{module}.{name}")
        return factory()


def load_array_pickle(path: str, what: str, fix: str) -> Any:
    """A pickle of plain arrays (a dataset batch), refusing any other global; `what`/`fix` word the errors."""
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="bytes").load()
    except _ForbiddenGlobal as e:
        raise GdasError(f"{path} refers to {e}, which {what} never contains; refusing to load it "
                        f"(replace it with the original file: {fix})") from None
    except OSError as e:
        raise GdasError(f"cannot read {path}: {e.strerror or e}; check the file and its permissions") from None
    except Exception as e:  # truncated or garbled pickles raise many types
        raise GdasError(f"{path} is truncated or corrupt ({type(e).__name__}); {fix}") from None


def checked_batch(path: str, data: Any, labels: Any, row: int, what: str, fix: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 rows of `row` values, int64 labels) of a pickled dataset batch, or one line naming what is wrong."""
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row \
            or labels is None:
        raise GdasError(f"{path} is not {what} (want a dict with 'data' uint8 (N, {row}) and labels); {fix}")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise GdasError(f"{path} has non-integer labels; {fix}") from None
    if len(labels) != len(data):
        raise GdasError(f"{path} has {len(data)} images but {len(labels)} labels; {fix}")
    return data, labels

