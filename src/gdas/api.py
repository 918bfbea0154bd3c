"""The Python API: `search` and `train` on a dataset name, a folder, an npz file or in-memory data; final
networks and the supernet for hand-written loops. `gdas search` and `gdas train` call `search` and `train`."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

from torch import nn

from gdas.configs.base import python_wording
from gdas.configs.files import resolve_config
from gdas.configs.base import Presets
from gdas.configs.module import TensorSearchConfig, TensorTrainConfig
from gdas.configs.search import SEARCH_TABLE, SearchConfig
from gdas.configs.train import TRAIN_DATASETS, TRAIN_TABLE, TrainConfig
from gdas.data.images import IMAGE_DATASETS, ImageDataset
from gdas.data.tensor_search import TensorInputs
from gdas.engine import rundir as files
from gdas.errors import GdasError
from gdas.genotypes import AnyGenotype, genotype_from_json, load_genotype
from gdas.handwritten import build_network, build_supernet, derive
from gdas.networks import image_genotype
from gdas.runs import Resume, default_out, resume_changes, search_or_resume, start_or_resume
from gdas.sampler import tau_at
from gdas.spaces import get_space, space_of
from gdas.spaces import space_names as list_spaces
from gdas.spaces.module.factory import PREFIX as MODULE_PREFIX
from gdas.spaces.module.factory import path_of
from gdas.tensor_api import on_tensors, search_tensors, train_tensors, trains_tensors

__all__ = ["SearchResult", "TrainResult", "search", "train", "load_genotype", "build_network", "build_supernet",
           "derive", "tau_at", "get_space", "list_spaces"]  # build_network, build_supernet, derive: handwritten.py

SEARCH_PRESET = SEARCH_TABLE.default  # the default preset of `gdas search` and `gdas.search`: the CPU demo
TRAIN_PRESET = TRAIN_TABLE.default
DATA_FILE = "data.npz"  # in-memory data, written into the run folder and read as --dataset npz


@dataclass
class SearchResult:
    """A finished search: the derived (or, with several seeds, the kept) genotype, its run folder and summary
    (summary.json; with several seeds `multi_seed_search`'s result, whose rows are also in `seeds`)."""

    genotype: AnyGenotype
    run_dir: Path
    summary: dict[str, Any]
    seeds: Optional[list[dict[str, Any]]] = None
    best_seed: Optional[int] = None


@dataclass
class TrainResult:
    """A finished training run: test errors of the last weights, the best validation epoch's errors (None
    without a --valid-portion part), the run folder, summary.json and, on first use, the trained `model`."""

    run_dir: Path
    summary: dict[str, Any]
    final_top1_err: Optional[float] = None
    final_top5_err: Optional[float] = None
    best_epoch: Optional[int] = None
    best_valid_top1_err: Optional[float] = None
    best_test_top1_err: Optional[float] = None
    _model: Optional[nn.Module] = field(default=None, repr=False, compare=False)

    @property
    def model(self) -> nn.Module:
        """The trained network (best.pt when the run has one, else its last weights), on the CPU in eval mode;
        its forward gives the logits (in train mode with an auxiliary head: (logits, auxiliary logits))."""
        if self._model is None:
            from gdas.export import load_trained
            self._model = load_trained(self.run_dir)[0].model
        return self._model


# -- data ---------------------------------------------------------------------------------------------------
def _is_torch_dataset(data: Any) -> bool:
    from torch.utils.data import Dataset
    return isinstance(data, Dataset)


def _in_memory(data: Any) -> bool:
    return isinstance(data, (tuple, list)) or _is_torch_dataset(data)


def _data_fields(data: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The config fields that name `data` when it is a dataset name, a folder or an .npz file."""
    if data is None:
        return {}
    if isinstance(data, str) and data in names:
        return {"dataset": data}
    if not isinstance(data, (str, os.PathLike)):
        raise GdasError(f"data must be a dataset name ({', '.join(names)}), a folder with train/<class>/ images, "
                        f"an .npz file, an (x, y) pair of arrays or a torch Dataset of (image, label); got a "
                        f"{type(data).__name__}")
    path = Path(data).expanduser()
    if path.is_dir():
        return {"dataset": "folder", "data_dir": str(path)}
    if path.suffix.lower() == ".npz":
        if not path.is_file():
            raise GdasError(f"npz file {path} does not exist; check the path")
        return {"dataset": "npz", "data_dir": str(path)}
    raise GdasError(f"data {str(data)!r} is not a dataset name ({', '.join(names)}), an existing folder or an "
                    ".npz file; check the name or the path")


def _to_dataset(data: Any, test: Any, cfg: Any) -> ImageDataset:
    """In-memory data (and its test split) as an ImageDataset at the config's image size and channels."""
    from gdas.data.arrays import dataset_from_arrays, dataset_from_torch

    options = {"image_size": cfg.image_size, "channels": cfg.channels}
    if _is_torch_dataset(data):
        if test is not None and not _is_torch_dataset(test):
            raise GdasError("test must be a torch Dataset like the training data (or None)")
        return dataset_from_torch(data, test, **options)
    pairs = [("data", data)] + ([("test", test)] if test is not None else [])
    for name, pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise GdasError(f"{name} must be an (x, y) pair of arrays or tensors (images and labels), like the "
                            f"training data; got a {type(pair).__name__}" + (f" of {len(pair)} items"
                                                                             if isinstance(pair, (tuple, list)) else ""))
    x_test, y_test = test if test is not None else (None, None)
    return dataset_from_arrays(data[0], data[1], x_test, y_test, **options)


class _DataFile:
    """In-memory data of a new run: converted and checked up front, written to RUN_DIR/data.npz just before the
    run starts, removed again when the run fails before its folder holds a config."""

    def __init__(self, dataset: ImageDataset, out: Path):
        self.dataset, self.out, self.path = dataset, out, out / DATA_FILE
        self.written = False

    def check_free(self) -> None:
        files.refuse_existing_run(self.out)
        if self.path.exists():
            raise GdasError(f"{self.out} holds a {DATA_FILE} but no run; remove it or choose another out")

    def write(self, again: bool = False) -> None:
        """Write the npz; `again`: resume="auto" found no run here, so an npz left by a run that stopped before
        it began is replaced."""
        from gdas.data.arrays import save_npz
        if not again:
            self.check_free()
        save_npz(self.dataset, self.path, overwrite=again)
        self.written = True

    def check_same(self) -> None:
        """A run continued with in-memory data must be given the arrays it started with (RUN_DIR/data.npz)."""
        import torch

        from gdas.data.npz import load_npz
        if not self.path.exists():
            return
        stored = load_npz(str(self.path))
        if not all(torch.equal(getattr(stored, k), getattr(self.dataset, k))
                   for k in ("train_x", "train_y", "test_x", "test_y")):
            raise GdasError(f"{self.out} holds a run on other data ({DATA_FILE} differs from the arrays given); "
                            "pass the arrays it started with to continue it, or choose another out")

    def prepare(self, resume: Resume) -> Any:
        return lambda: self.write(again=resume == "auto")

    def discard_unused(self) -> None:
        if self.written and not any((self.out / n).exists() for n in (files.CONFIG, files.MULTISEED)):
            self.path.unlink(missing_ok=True)
            if self.out.is_dir() and not any(self.out.iterdir()):
                self.out.rmdir()


def _check_resumed_arrays(cls: type, kind: str, data: Any, test: Any, out: Optional[str | Path]) -> None:
    """resume=True with in-memory data: the arrays, shaped by the stored config, must be the run's own."""
    if _in_memory(data) and out is not None and (Path(out) / files.CONFIG).exists():
        stored = files.stored_config(Path(out), kind, cls)
        _DataFile(_to_dataset(data, test, stored), Path(out)).check_same()


def _new_config(cls: type, presets: Presets, preset: Optional[str], data: Any, test: Any, fields: Mapping[str, Any],
                out: Optional[str | Path], resume: Resume, *, config: Optional[str | Path], where: str,
                network_input: Callable[[Any], tuple[Any, bool]], space_of: Callable[[Mapping[str, Any]], Optional[str]]
                ) -> tuple[Any, Optional[str | Path], Optional[_DataFile]]:
    """(config, run folder, data file) of a new search or training run, resolved by `resolve_config` from
    `preset`, the `config` file and `fields` (with the data's own fields); in-memory data is converted and
    checked against the network (`network_input(cfg)`: the space's check_input and whether an auxiliary head
    the user asked for reads it; a preset's head is fitted to the images later) before anything is written, and
    read from RUN_DIR/data.npz."""
    memory = _in_memory(data)
    if test is not None and not memory:
        raise GdasError("test= goes with in-memory data; a folder, an npz file or a named dataset brings its own "
                        "test split")
    names = IMAGE_DATASETS if cls is SearchConfig else TRAIN_DATASETS
    fields = _memory_overrides(fields) if memory else _merge(_data_fields(data, names), fields)
    kind = "search" if cls is SearchConfig else "train"
    cfg = resolve_config(cls, presets, kind=kind, preset=preset, config=config, overrides=fields, where=where,
                         space_of=space_of)
    if not memory:
        return cfg, out, None
    dataset = _to_dataset(data, test, cfg)
    check_input, auxiliary = network_input(cfg)
    if check_input is not None:
        check_input(dataset.image_size, auxiliary)
    run_dir = Path(out) if out is not None else default_out(kind, cfg.preset)
    data_file = _DataFile(dataset, run_dir)
    if resume is False:
        data_file.check_free()
    else:  # "auto": a run found there must be of these arrays
        data_file.check_same()
    return dataclasses.replace(cfg, data_dir=str(data_file.path.resolve())), run_dir, data_file


@contextmanager
def _discarded_on_failure(data_file: Optional[_DataFile]) -> Iterator[None]:
    """Remove a data file written for a run that failed before its folder held a config."""
    try:
        yield
    except BaseException:
        if data_file is not None:
            data_file.discard_unused()
        raise


def _memory_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    for key in ("dataset", "data_dir"):
        if key in overrides:
            raise GdasError(f"{key}= cannot be given with in-memory data: the arrays are the data (they are "
                            f"written to RUN_DIR/{DATA_FILE})")
    return {**overrides, "dataset": "npz", "data_dir": DATA_FILE}  # data_dir is set once the run folder is known


def _merge(data_fields: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    clash = sorted(set(data_fields) & set(overrides))
    if clash:
        raise GdasError(f"the data is given twice (data= and {clash[0]}=); give it once")
    return {**overrides, **data_fields}


def _genotype_space(fields: Mapping[str, Any]) -> Optional[str]:
    """The space a training run's settings name: `space`, else the genotype's (None: the preset's genotype)."""
    if fields.get("space") is not None:
        return _recipe_space(fields["space"])
    return _recipe_space(space_of(image_genotype(fields["genotype"])).name) if "genotype" in fields else None


# -- search and train --------------------------------------------------------------------------------------
def start_search(data: Any = None, *, preset: Optional[str] = None, space: Any = None,
                 out: Optional[str | Path] = None, test: Any = None, seeds: Optional[list[int]] = None,
                 resume: Resume = False, progress: bool = False, config: Optional[str | Path] = None,
                 parallel: int = 1, loss: Any = None, metric: Any = None, **overrides: Any) -> SearchResult:
    """Search a cell with GDAS (Algorithm 1) and derive its genotype; see docs/api.md. (`gdas search` calls it;
    `search` is the same with its errors worded for Python.)

    `data`: a dataset name ("fashion-mnist", "cifar10" with data_dir=..., "synthetic", ...), a folder with
    train/<class>/ images, an .npz file, an (x, y) pair of arrays / tensors or a torch Dataset of (image,
    label) (with `test` its test split in the same form); None: the config's dataset. `preset` (default: the
    `config` file's, else "demo"), then the `config` file (JSON / YAML), then `overrides` (config fields:
    epochs=2, C=8, ...): one resolution (configs.files.resolve_config), whichever way a field is given; a space
    named by `space`, the file or the overrides picks that space's counterpart of the preset. A preset's subset
    belongs to its own dataset: other data is used whole. `seeds`: one search per seed, keeping the best cell.
    `resume`: True continues the run in `out`, "auto" starts or continues it.

    `space` may also be a module class or factory holding gdas.nn choices (or module:package.module:Factory, or
    mobilenet): with in-memory data, a Dataset or two DataLoaders it is searched on those tensors with `loss`
    (a callable of output and target; default cross-entropy for integer labels) and `metric` (default
    accuracy for integer labels; metric_mode="lower" when lower is better); docs/spaces.md.
    """
    where = "in gdas.search()"
    kind = "search"
    if space is not None:  # the same field as space= among the overrides
        overrides = {**overrides, "space": space if isinstance(space, str) else path_of(space)}
    if on_tensors(overrides.get("space"), data):
        run_dir, result, seeds = search_tensors(TensorInputs(data, loss, metric), preset=preset, out=out, test=test,
                                                seeds=seeds, resume=resume, progress=progress, config=config,
                                                parallel=parallel, overrides=overrides)
        return _search_result(run_dir, result, seeds)
    if loss is not None or metric is not None:
        raise GdasError("loss= and metric= go with a module space searched on tensors (space=YourModule with (x, y), "
                        "a Dataset or two DataLoaders); an image search is a classifier trained with cross-entropy")
    if resume is True:
        _check_resumed_arrays(SearchConfig, kind, data, test, out)
        changes = resume_changes(SearchConfig, kind, config, _data_fields(None if _in_memory(data) else data,
                                                                          IMAGE_DATASETS) | overrides, where)
        run_dir, result, seeds = search_or_resume(None, out=out, resume=True, changes=changes, seeds=seeds,
                                                  parallel=parallel, show_progress=progress)
        return _search_result(run_dir, result, seeds)
    cfg, out, data_file = _new_config(SearchConfig, SEARCH_TABLE, preset, data, test, overrides, out, resume,
                                      config=config, where=where,
                                      network_input=lambda c: (get_space(c.space).check_input, False),
                                      space_of=lambda fields: _recipe_space(fields.get("space")))
    with _discarded_on_failure(data_file):
        run_dir, result, seeds = search_or_resume(cfg, out=out, resume=resume, seeds=seeds, parallel=parallel,
                                                  show_progress=progress,
                                                  prepare=data_file.prepare(resume) if data_file else None)
    return _search_result(run_dir, result, seeds)


def _recipe_space(space: Optional[str]) -> Optional[str]:
    """The space whose presets a run takes: a module of the user's own trains and searches on images with the
    MobileNet-style space's recipes (its space field is the user's)."""
    return "mobilenet" if isinstance(space, str) and space.startswith(MODULE_PREFIX) else space


def _search_result(run_dir: Path, result: dict[str, Any], seeds: Optional[list[int]]) -> SearchResult:
    if "genotype_json" in result:
        genotype = genotype_from_json(result["genotype_json"])
    elif isinstance(result.get("genotype"), str):
        genotype = load_genotype(result["genotype"])
    else:  # a complete multi-seed folder found by resume="auto": seeds.json has no genotype; the folder has
        genotype = load_genotype(run_dir)
    return SearchResult(genotype=genotype, run_dir=Path(run_dir), summary=result,
                        seeds=result.get("seeds") if seeds else None,
                        best_seed=result.get("best_seed") if seeds else None)


def _genotype_spec(genotype: Any) -> str:
    """The `genotype` config field of a name, a path, a run folder, a SearchResult or a genotype object."""
    if isinstance(genotype, SearchResult):
        return str(genotype.run_dir)
    if isinstance(genotype, (str, os.PathLike)):
        return str(genotype)
    if hasattr(genotype, "to_json") and hasattr(genotype, "kind"):
        return json.dumps(genotype.to_json())
    raise GdasError(f"genotype must be a registry name, a genotype.json, a search run folder, a SearchResult or "
                    f"a genotype object; got a {type(genotype).__name__}")


def start_train(genotype: Any = None, data: Any = None, *, preset: Optional[str] = None,
          out: Optional[str | Path] = None, test: Any = None, resume: Resume = False, progress: bool = False,
          config: Optional[str | Path] = None, loss: Any = None, metric: Any = None, weights: Any = None,
          **overrides: Any) -> TrainResult:
    """Train the final network of `genotype` and measure its top-1 / top-5 test error; see docs/api.md. (`gdas
    train` calls it; `train` is the same with its errors worded for Python.)

    `genotype`: a registry name ("GDAS"), a genotype.json, a search run folder, a SearchResult or a genotype
    object (None: the config's). `data`, `test`, `preset`, `config`, `resume` and `overrides` as in `search`;
    the preset is replaced by its counterpart in the genotype's space (an nb201 cell trains with "nb201-demo").

    A module space's choice map (or a plain nn.Module) with in-memory data, a Dataset or two DataLoaders trains on
    those tensors with `loss` and `metric` as in `search`; `weights` (a SearchResult or search folder) starts
    it from the search's weights of the chosen candidates; docs/spaces.md.
    """
    where, kind = "in gdas.train()", "train"
    from gdas.train import run_train

    if trains_tensors(genotype, data):
        run_dir, summary, model = train_tensors(genotype, TensorInputs(data, loss, metric, test=test), weights=weights,
                                                preset=preset, out=out, resume=resume, progress=progress,
                                                config=config, overrides=overrides)
        result = _train_result(run_dir, summary)
        result._model = model
        return result
    if loss is not None or metric is not None or weights is not None:
        raise GdasError("loss=, metric= and weights= go with a module space's choices (or a plain module) trained on "
                        "tensors; an image network trains with cross-entropy")
    fields = dict(overrides)
    if genotype is not None:
        fields["genotype"] = _genotype_spec(genotype)
    owner = space_of(image_genotype(fields["genotype"])).name if "genotype" in fields else None
    if owner is not None and owner.startswith(MODULE_PREFIX) and "space" not in fields:
        fields["space"] = owner  # a module of the user's own: trained with the MobileNet-style recipes
    if resume is True:
        _check_resumed_arrays(TrainConfig, kind, data, test, out)
        named = _data_fields(None if _in_memory(data) else data, TRAIN_DATASETS)
        changes = resume_changes(TrainConfig, kind, config, named | fields, where)
        run_dir, summary = start_or_resume(kind, TrainConfig, run_train, None, out=out, resume=True,
                                           changes=changes, show_progress=progress)
        return _train_result(run_dir, summary)
    cfg, out, data_file = _new_config(TrainConfig, TRAIN_TABLE, preset, data, test, fields, out, resume,
                                      config=config, where=where,
                                      network_input=lambda c: (space_of(load_genotype(c.genotype)).check_input,
                                                               c.auxiliary and "auxiliary" in c.given),
                                      space_of=_genotype_space)
    with _discarded_on_failure(data_file):
        run_dir, summary = start_or_resume(kind, TrainConfig, run_train, cfg, out=out, resume=resume,
                                           show_progress=progress, prepare=data_file.prepare(resume) if data_file else None)
    return _train_result(run_dir, summary)


def _in_python_words(run: Callable[..., Any], *classes: type) -> Callable[..., Any]:
    """`run` whose user errors name keyword arguments instead of command-line options (configs.base.python_wording)."""
    @functools.wraps(run)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return run(*args, **kwargs)
        except GdasError as exc:
            raise GdasError(python_wording(str(exc), classes)) from None

    call.__name__ = call.__qualname__ = run.__name__.removeprefix("start_")
    return call


search = _in_python_words(start_search, SearchConfig, TensorSearchConfig)
train = _in_python_words(start_train, TrainConfig, SearchConfig, TensorTrainConfig)


def _train_result(run_dir: Path, summary: dict[str, Any]) -> TrainResult:
    return TrainResult(run_dir=Path(run_dir), summary=summary, final_top1_err=summary.get("final_top1_err"),
                       final_top5_err=summary.get("final_top5_err"), best_epoch=summary.get("best_epoch"),
                       best_valid_top1_err=summary.get("best_valid_top1_err"),
                       best_test_top1_err=summary.get("best_test_top1_err"))
