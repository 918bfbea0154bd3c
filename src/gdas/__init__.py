"""gdas: Gradient-based search using Differentiable Architecture Sampling (Dong & Yang, CVPR 2019).

The stable Python surface is `__all__` (docs/api.md): `search` and `train` on your own data, `load_genotype`,
`build_network` for your own loop, and `build_supernet` / `tau_at` / `derive` for a hand-written Algorithm 1.
"""

__version__ = "0.1.0"

# The modules gdas.search and gdas.train load first, so the names bound below stay the API's functions: a
# submodule is set on its package when it loads, never again once it is loaded.
import importlib as _importlib

for _module in ("gdas.search", "gdas.train"):
    _importlib.import_module(_module)
from gdas.api import (SearchResult, TrainResult, build_network, build_supernet, derive, get_space,  # noqa: E402
                      list_spaces, load_genotype, search, tau_at, train)
from gdas.errors import GdasError  # noqa: E402
from gdas.frozen import freeze  # noqa: E402
from gdas import nn  # noqa: E402  (gdas.nn.Choice, InputChoice, Repeat)

__all__ = ["__version__", "GdasError", "SearchResult", "TrainResult", "search", "train", "load_genotype",
           "build_network", "build_supernet", "derive", "tau_at", "get_space", "list_spaces", "nn", "freeze"]
