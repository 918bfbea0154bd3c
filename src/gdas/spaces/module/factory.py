"""A module space's factory by import path (`module:package.module:Factory`): naming a class or function, importing
it again (resume, other processes), the factories this process holds that no other can import, and building one."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any, Callable, Optional

from torch import nn

from gdas.errors import GdasError

PREFIX = "module:"
Factory = Callable[..., nn.Module]
# Factories defined where no other process can import them (`__main__`, a notebook, inside a function), by path.
_LOCAL: dict[str, Factory] = {}


def importable(factory: Any) -> bool:
    """Whether another process can import `factory` by its path: its module is a real one (not `__main__`, a
    notebook or code run by exec) that holds it under its qualified name."""
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname or module not in sys.modules:
        return False
    target: Any = sys.modules[module]
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target is factory


def path_of(factory: Any) -> str:
    """`module:package.module:Qualname` of a class or function (kept in this process when it cannot be imported)."""
    if isinstance(factory, nn.Module):
        raise GdasError("space= takes the module's class or a function that builds it, not a built module (each "
                        "search, seed and retrain builds its own): pass space=Net instead of space=Net()")
    if not callable(factory) or not hasattr(factory, "__qualname__"):
        raise GdasError(f"space must be a registered name, module:package.module:Factory, or a module class or "
                        f"factory; got a {type(factory).__name__}")
    path = f"{PREFIX}{factory.__module__}:{factory.__qualname__}"
    if not importable(factory):
        _LOCAL[path] = factory
    return path


def is_local(path: str) -> bool:
    """A factory of this process that no other process can import (defined in `__main__` or a notebook)."""
    return path in _LOCAL


def local_reason(path: str) -> Optional[str]:
    """Why other processes cannot rebuild `path`'s space (None when they can)."""
    if path not in _LOCAL:
        return None
    where = ("__main__ (a script or notebook)" if ":__main__:" in path else
             "a function body" if "<locals>" in path else "code no module holds")
    return f"{path[len(PREFIX):]} is defined in {where}, which other processes cannot import"


def load(path: str) -> Factory:
    """The factory a `module:package.module:Factory` path names."""
    if path in _LOCAL:
        return _LOCAL[path]
    module_name, sep, qualname = path[len(PREFIX):].partition(":")
    if not path.startswith(PREFIX) or not sep or not module_name or not qualname:
        raise GdasError(f"space {path!r} must read module:package.module:Factory (the module's import path, a "
                        "colon, the class or function)")
    if module_name == "__main__" or "<" in qualname:
        raise GdasError(f"space {path!r} was defined in a script, notebook or function that this process does not "
                        "hold; move it into an importable module (package/module.py) and search it from there")
    try:
        target: Any = _import(module_name)
    except ImportError as exc:
        raise GdasError(f"cannot import {module_name} for space {path!r} ({exc}); check the path and that the "
                        "package is importable (installed, on PYTHONPATH, or in the current folder)") from None
    for part in qualname.split("."):
        if not hasattr(target, part):
            raise GdasError(f"{module_name} has no {qualname} for space {path!r}; check the name")
        target = getattr(target, part)
    if not callable(target):
        raise GdasError(f"space {path!r} names a {type(target).__name__}, not a module class or factory")
    return target


def _import(module_name: str) -> Any:
    """The module, also from the current folder (as `python -m` and uvicorn find an app there)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        here = os.getcwd()
        if exc.name != module_name.split(".")[0] or here in sys.path:
            raise
        sys.path.append(here)
        return importlib.import_module(module_name)


def build(factory: Factory, path: str, **sizes: Optional[int]) -> nn.Module:
    """`factory()` with the sizes (num_classes, in_channels) it takes as keywords; the others are left out."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in sizes.items() if v is not None and (takes_all or k in params)}
    try:
        model = factory(**kwargs)
    except GdasError:
        raise
    except TypeError as exc:
        raise GdasError(f"cannot build space {path!r} ({exc}); its factory is called with no arguments, or with "
                        "num_classes= / in_channels= when it takes them") from None
    if not isinstance(model, nn.Module):
        raise GdasError(f"space {path!r} built a {type(model).__name__}, not an nn.Module")
    return model
