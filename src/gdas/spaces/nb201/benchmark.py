"""True accuracies of an NB201 architecture, read from the NATS-Bench topology benchmark (optional nats_bench)."""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any, Optional

from gdas.errors import GdasError
from gdas.spaces.nb201.genotype import NB201Genotype

NATS_FILE = "NATS-tss-v1_0-3ffb9-simple"
NATS_URL = "https://github.com/D-X-Y/NATS-Bench"
INSTALL = "pip install 'gdas-nas[nb201]'"
EPOCHS = "200"  # NB201's full training setting (hp=200); 12 is its low-fidelity one
# Our dataset names -> the benchmark's: (dataset holding the validation accuracy, dataset holding the test one).
# CIFAR-10 test accuracy comes from training on train+valid ("cifar10"), its validation accuracy from
# training on train only ("cifar10-valid"): the authors' reporting (NATS-Bench issues #17, #38).
BENCH_DATASETS: dict[str, tuple[str, str]] = {
    "cifar10": ("cifar10-valid", "cifar10"),
    "cifar100": ("cifar100", "cifar100"),
    "imagenet16-120": ("ImageNet16-120", "ImageNet16-120"),
}
_APIS: dict[str, Any] = {}  # benchmark path -> loaded API (loading the archive takes seconds)


def check_benchmark(benchmark_path: str) -> str:
    """The absolute path of a usable benchmark: nats_bench importable and the file there (not loaded: seconds)."""
    try:
        import nats_bench  # noqa: F401
    except ImportError:
        raise GdasError(f"querying NB201 needs the nats_bench package; {INSTALL}") from None
    path = os.path.abspath(os.path.expanduser(benchmark_path))
    if not os.path.exists(path):
        raise GdasError(f"NATS-Bench benchmark {path} does not exist; download {NATS_FILE} (the topology "
                        f"benchmark, linked from {NATS_URL}), extract it and pass its folder with --benchmark")
    return path


def _api(benchmark_path: str) -> Any:
    path = os.path.abspath(os.path.expanduser(benchmark_path))
    if path in _APIS:
        return _APIS[path]
    check_benchmark(path)
    import nats_bench
    # The folder (NATS-tss-v1_0-3ffb9-simple) loads lazily per architecture; a single .pickle.pbz2 loads whole.
    with contextlib.redirect_stdout(io.StringIO()):  # the API prints progress lines
        try:
            api = nats_bench.create(path, "tss", fast_mode=os.path.isdir(path), verbose=False)
        except Exception as e:  # a wrong or damaged archive raises many types
            first = (str(e).strip().splitlines() or [""])[0][:160]
            raise GdasError(f"cannot load NATS-Bench from {path} ({type(e).__name__}: {first}); pass the extracted "
                            f"{NATS_FILE} folder (linked from {NATS_URL})") from None
    _APIS[path] = api
    return api


def _accuracy(api: Any, index: int, dataset: str, key: str) -> Optional[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        info = api.get_more_info(index, dataset, hp=EPOCHS, is_random=False)  # mean over the trained seeds
    value = info.get(key)
    return None if value is None else float(value)


def query(genotype: NB201Genotype | str, benchmark_path: str, dataset: Optional[str] = None) -> dict[str, Any]:
    """Validation and test accuracy (%, mean over seeds, 200 epochs) of `genotype` per dataset.

    Returns {"arch", "index", "epochs", "results": {dataset: {"valid": float, "test": float}}} for
    `dataset` or, when None, for cifar10, cifar100 and imagenet16-120.
    """
    genotype = genotype if isinstance(genotype, NB201Genotype) else NB201Genotype.parse(genotype)
    names = list(BENCH_DATASETS) if dataset is None else [dataset.lower()]
    for name in names:
        if name not in BENCH_DATASETS:
            raise GdasError(f"NATS-Bench has no dataset {dataset!r}; choose one of {', '.join(BENCH_DATASETS)}")
    if len(genotype.nodes) != 3:
        raise GdasError(f"NATS-Bench holds 4-node cells (3 after the input); {genotype} has {len(genotype.nodes)}")
    api = _api(benchmark_path)
    arch = str(genotype)
    index = api.query_index_by_arch(arch)
    if index < 0:
        raise GdasError(f"{arch} is not in the NATS-Bench topology benchmark at {benchmark_path}; "
                        f"check that the file is {NATS_FILE}")
    results = {}
    for name in names:
        valid_set, test_set = BENCH_DATASETS[name]
        results[name] = {"valid": _accuracy(api, index, valid_set, "valid-accuracy"),
                         "test": _accuracy(api, index, test_set, "test-accuracy")}
    return {"arch": arch, "index": int(index), "epochs": int(EPOCHS), "results": results}
