"""The DARTS recurrent space's registration: the search language model, T=1 derivation, final LM, drawing."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch

from gdas.configs.rnn import LM_TRAIN_PRESETS
from gdas.errors import GdasError
from gdas.lm.corpus import VOCAB_SIZES
from gdas.reporting.draw import INPUT, NODE, OUTPUT, DotGraph
from gdas.spaces.base import SearchSpace
from gdas.spaces.rnn.cells import RecurrentCell
from gdas.spaces.rnn.genotype import PUBLISHED, RNN_PARAMETER_FREE, RNN_PRIMITIVES, RecurrentGenotype
from gdas.spaces.rnn.model import RNNModel, RNNSearchModel, derive_recurrent_probs, lm_param_count


def build_supernet(cfg: Any, num_classes: int, in_channels: int = 0) -> RNNSearchModel:
    """The search language model; `num_classes` is the vocabulary size."""
    return RNNSearchModel(num_classes, cfg.emsize, cfg.nhid, cfg.dropout, cfg.dropouth, cfg.dropoutx, cfg.dropouti,
                          cfg.dropoute, steps=cfg.steps, sampler=cfg.sampler)


def derive(probs: Mapping[str, Optional[torch.Tensor]], cfg: Any) -> RecurrentGenotype:
    recurrent = probs["recurrent"]
    assert recurrent is not None
    return derive_recurrent_probs(recurrent)


def build_network(genotype: RecurrentGenotype, *, ntoken: int, emsize: int, nhid: int, dropout: float,
                  dropouth: float, dropoutx: float, dropouti: float, dropoute: float) -> RNNModel:
    """The AWD-LSTM-style language model of a recurrent genotype (tied embedding and decoder)."""
    return RNNModel(ntoken, emsize, nhid, RecurrentCell(emsize, nhid, dropoutx, dropouth, genotype), dropout,
                    None, None, dropouti, dropoute)


def dot(genotype: RecurrentGenotype) -> dict[str, str]:
    g = DotGraph("recurrent")
    for inp in ("x_{t}", "h_{t-1}"):
        g.node(inp, INPUT)
    g.node("0", NODE)
    g.edge("x_{t}", "0")
    g.edge("h_{t-1}", "0")
    for i in range(1, len(genotype.recurrent) + 1):
        g.node(str(i), NODE)
    for i, node in enumerate(genotype.recurrent, start=1):
        for op, src in node:
            g.edge(str(src), str(i), op)
    g.node("h_{t}", OUTPUT, label="h_{t} (mean)")
    for index in genotype.concat:
        g.edge(str(index), "h_{t}")
    return {"recurrent": g.text()}


def paper_lm_size(genotype: RecurrentGenotype, task: str) -> dict[str, Any]:
    """The language model of `genotype` at the paper's size for `task` (ptb / wt2): vocabulary, units, parameters."""
    if task not in VOCAB_SIZES:
        raise GdasError(f"unknown language-model task {task!r}; choose one of: {', '.join(VOCAB_SIZES)}")
    nhid = LM_TRAIN_PRESETS[task].nhid
    params = lm_param_count(genotype, VOCAB_SIZES[task], nhid)
    return {"task": task, "vocab": VOCAB_SIZES[task], "emsize": nhid, "nhid": nhid, "params": params,
            "params_M": round(params / 1e6, 2)}


def info(genotype: RecurrentGenotype, dataset: str, C: Optional[int] = None, N: Optional[int] = None
         ) -> dict[str, Any]:
    """The language model's size at the paper's settings for `dataset` (ptb or wt2)."""
    return paper_lm_size(genotype, dataset)


SPACE = SearchSpace(
    name="rnn", description="DARTS recurrent cells: 8 nodes, 36 edges, 5 activations; one input per node derived",
    data="lm", ops=RNN_PRIMITIVES, param_free=RNN_PARAMETER_FREE, genotype_kind=RecurrentGenotype.kind,
    build_supernet=build_supernet, derive=derive, parse=RecurrentGenotype.parse, from_json=RecurrentGenotype.from_json,
    build_network=build_network, dot=dot, published=PUBLISHED, info=info)
