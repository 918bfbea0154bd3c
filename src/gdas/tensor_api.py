"""The Python API's runs on tensors: a module space searched, or its frozen model (or any plain module) trained, on
a user's (x, y), Dataset or DataLoaders with their loss; `api.search` / `api.train` hand them over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

from torch import nn

from gdas.configs.files import resolve_config
from gdas.configs.module import TENSOR_SEARCH_TABLE, TENSOR_TRAIN_TABLE, TensorSearchConfig, TensorTrainConfig
from gdas.data.tensor_search import TensorInputs, using, with_inputs
from gdas.data.tensors import data_kind
from gdas.errors import GdasError
from gdas.frozen import choice_map_of
from gdas.runs import Resume, resume_changes, search_or_resume, start_or_resume
from gdas.spaces import get_space
from gdas.tensor_train import run_tensor_train, trained_model


def tensor_data(data: Any) -> bool:
    """(x, y) arrays or tensors, a Dataset or two DataLoaders."""
    try:
        data_kind(data)
    except GdasError:
        return False
    return True


def on_tensors(space: Optional[str], data: Any) -> bool:
    """A module space given tensor data: a search on those tensors."""
    return space is not None and tensor_data(data) and get_space(space).genotype_kind == "module"


def trains_tensors(genotype: Any, data: Any) -> bool:
    """A plain module, or a module space's choice map, given tensor data."""
    if not tensor_data(data):
        return False
    if isinstance(genotype, nn.Module):
        return True
    try:
        choice_map_of(genotype)
    except GdasError:
        return False
    return True


def search_tensors(inputs: TensorInputs, *, preset: Optional[str], out: Optional[str | Path], test: Any,
                   seeds: Optional[list[int]], resume: Resume, progress: bool, config: Optional[str | Path],
                   parallel: int, overrides: Mapping[str, Any]) -> tuple[Path, dict[str, Any], Optional[list[int]]]:
    """(run folder, result, seeds) of a module space searched on tensors (`TensorSearchConfig`)."""
    if test is not None:
        raise GdasError("test= goes with image data; a search on tensors splits the data into D_T and D_V "
                        "(train_portion), or reads two DataLoaders (D_T, D_V)")
    kind = TensorSearchConfig.KIND
    with using(inputs):
        if resume is True:
            changes = resume_changes(TensorSearchConfig, kind, config, overrides, "in gdas.search()")
            return search_or_resume(None, out=out, resume=True, changes=changes, seeds=seeds, parallel=parallel,
                                    show_progress=progress)
        cfg = resolve_config(TensorSearchConfig, TENSOR_SEARCH_TABLE, kind=kind, preset=preset, config=config,
                             overrides=overrides, where="in gdas.search()", space_of=lambda fields: None)
        cfg = with_inputs(cfg, inputs)  # recorded now: resume="auto" compares it with a stored run
        return search_or_resume(cfg, out=out, resume=resume, seeds=seeds, parallel=parallel, show_progress=progress)


def train_tensors(genotype: Any, inputs: TensorInputs, *, weights: Any, preset: Optional[str],
                  out: Optional[str | Path], resume: Resume, progress: bool, config: Optional[str | Path],
                  overrides: Mapping[str, Any]) -> tuple[Path, dict[str, Any], nn.Module]:
    """(run folder, summary, trained model) of a frozen module-space model (or a plain module) trained on tensors
    with the user's loss (`TensorTrainConfig`)."""
    kind = TensorTrainConfig.KIND
    fields = dict(overrides)
    model = genotype if isinstance(genotype, nn.Module) else None
    if model is None:
        found = choice_map_of(genotype)
        fields.update(space=found.space, genotype=json.dumps(found.to_json()))
    if weights is not None:
        fields["weights"] = str(getattr(weights, "run_dir", weights))
    if inputs.test is not None and not isinstance(inputs.test, (tuple, list)):
        raise GdasError("test must be an (x, y) pair of arrays or tensors, like the training data")
    inputs = TensorInputs(inputs.data, inputs.loss, inputs.metric, test=inputs.test, model=model)
    with using(inputs):
        if resume is True:
            changes = resume_changes(TensorTrainConfig, kind, config, fields, "in gdas.train()")
            run_dir, summary = start_or_resume(kind, TensorTrainConfig, run_tensor_train, None, out=out, resume=True,
                                               changes=changes, show_progress=progress)
        else:
            cfg = resolve_config(TensorTrainConfig, TENSOR_TRAIN_TABLE, kind=kind, preset=preset, config=config,
                                 overrides=fields, where="in gdas.train()", space_of=lambda f: None)
            run_dir, summary = start_or_resume(kind, TensorTrainConfig, run_tensor_train, with_inputs(cfg, inputs),
                                               out=out, resume=resume, show_progress=progress)
    return run_dir, summary, trained_model(run_dir, model)
