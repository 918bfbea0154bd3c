"""Shared test settings: one torch thread, since the tests' tiny tensors only lose time to thread contention; the
folder-data cache in a temporary folder, never the user's own; the scripts under scripts/ loaded as modules."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GDAS_CACHE_DIR", str(tmp_path_factory.mktemp("gdas-cache")))
        yield


@pytest.fixture(scope="session")
def load_script():
    """`load_script(name)`: scripts/NAME.py as a module (registered under NAME, as its dataclasses need)."""
    def load(name: str) -> ModuleType:
        path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    return load
