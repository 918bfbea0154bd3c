"""Shared test settings: one torch thread, since the tests' tiny tensors only lose time to thread contention; the
folder-data cache in a temporary folder, never the user's own."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GDAS_CACHE_DIR", str(tmp_path_factory.mktemp("gdas-cache")))
        yield
