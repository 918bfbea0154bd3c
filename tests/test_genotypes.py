"""Tests for genotypes: JSON and text round trips, load_genotype sources, malformed input, the published cells."""

from __future__ import annotations

import json

import pytest
import torch

from gdas.errors import GdasError
from gdas.spaces.darts.genotype import random_genotype
from gdas.genotypes import (
    REGISTRY,
    Genotype,
    RecurrentGenotype,
    genotype_from_json,
    load_genotype,
    parse_genotype_text,
    save_genotype,
)

NAMES = list(REGISTRY)


def _cnn_json(**changes) -> dict:
    data = REGISTRY["GDAS"].to_json()
    data.update(changes)
    return data


@pytest.mark.parametrize("name", NAMES)
def test_json_round_trip(name):
    genotype = REGISTRY[name]
    data = json.loads(json.dumps(genotype.to_json()))
    assert genotype_from_json(data) == genotype


@pytest.mark.parametrize("name", NAMES)
def test_text_round_trip(name):
    genotype = REGISTRY[name]
    assert parse_genotype_text(str(genotype)) == genotype
    assert load_genotype(str(genotype)) == genotype


@pytest.mark.parametrize("name", NAMES)
def test_load_by_name_case_insensitive(name):
    assert load_genotype(name) is REGISTRY[name]
    assert load_genotype(name.lower()) is REGISTRY[name]
    assert load_genotype(f"  {name.lower()}\n") is REGISTRY[name]


@pytest.mark.parametrize("name", ["GDAS", "GDAS_FRC", "GDAS_RNN"])
def test_load_from_json_file_run_dir_and_string(tmp_path, name):
    genotype = REGISTRY[name]
    save_genotype(genotype, tmp_path / "genotype.json")
    saved = json.loads((tmp_path / "genotype.json").read_text())
    assert saved["text"] == str(genotype)
    assert load_genotype(tmp_path / "genotype.json") == genotype
    assert load_genotype(str(tmp_path / "genotype.json")) == genotype
    assert load_genotype(tmp_path) == genotype  # a run directory
    assert load_genotype(json.dumps(genotype.to_json())) == genotype
    # JSON wrapped in an object under "genotype" (as in summaries).
    assert load_genotype(json.dumps({"genotype": genotype.to_json()})) == genotype


def test_type_and_kind():
    assert isinstance(REGISTRY["GDAS"], Genotype) and REGISTRY["GDAS"].kind == "cnn"
    assert isinstance(REGISTRY["GDAS_RNN"], RecurrentGenotype) and REGISTRY["GDAS_RNN"].kind == "rnn"
    assert REGISTRY["GDAS_FRC"].fixed_reduction and not REGISTRY["GDAS"].fixed_reduction
    assert REGISTRY["GDAS_FRC"].to_json()["reduce"] == "FIXED"
    assert str(REGISTRY["GDAS_FRC"]).endswith("reduce: FIXED")


def test_json_defaults_fill_concat_and_fixed_reduce():
    data = {"normal": REGISTRY["GDAS_FRC"].to_json()["normal"]}
    assert genotype_from_json(data) == REGISTRY["GDAS_FRC"]  # no type, no reduce -> FRC, concat 2..5
    rnn = {"recurrent": REGISTRY["GDAS_RNN"].to_json()["recurrent"]}
    assert genotype_from_json(rnn) == REGISTRY["GDAS_RNN"]


def test_text_form_fixed_case_insensitive():
    text = str(REGISTRY["GDAS_FRC"]).replace("FIXED", "fixed")
    assert parse_genotype_text(text) == REGISTRY["GDAS_FRC"]


# ---- published cells (SPEC, paper Fig. 4) ----

def _cell(text: str) -> tuple:
    """'skip,0 skip,1 | ...' shorthand -> nodes."""
    short = {"skip": "skip_connect", "sep3": "sep_conv_3x3", "sep5": "sep_conv_5x5", "dil3": "dil_conv_3x3",
             "dil5": "dil_conv_5x5", "max": "max_pool_3x3", "avg": "avg_pool_3x3"}
    nodes = []
    for chunk in text.split("|"):
        pairs = [item.split(",") for item in chunk.split()]
        nodes.append(tuple((short[op], int(src)) for op, src in pairs))
    return tuple(nodes)


GDAS_N = _cell("skip,0 skip,1 | skip,0 sep5,2 | sep3,3 skip,0 | sep5,4 sep3,3")
GDAS_R = _cell("sep5,0 sep3,1 | sep5,2 sep5,1 | dil5,2 sep3,1 | sep5,0 sep5,1")
FRC_N = _cell("skip,0 skip,1 | skip,0 sep3,2 | skip,0 sep3,2 | skip,0 sep3,2")
DARTS_V2_N = _cell("sep3,0 sep3,1 | sep3,0 sep3,1 | sep3,1 skip,0 | skip,0 dil3,2")
DARTS_V2_R = _cell("max,0 max,1 | skip,2 max,1 | max,0 skip,2 | skip,2 max,1")


def test_registry_matches_published_cells():
    assert REGISTRY["GDAS"] == Genotype(GDAS_N, (2, 3, 4, 5), GDAS_R, (2, 3, 4, 5))
    assert REGISTRY["GDAS_FRC"] == Genotype(FRC_N, (2, 3, 4, 5), None, None)
    assert REGISTRY["DARTS_V2"] == Genotype(DARTS_V2_N, (2, 3, 4, 5), DARTS_V2_R, (2, 3, 4, 5))
    assert REGISTRY["GDAS_N_FIX_R"] == Genotype(GDAS_N, (2, 3, 4, 5), None, None)
    assert REGISTRY["FRC_N_GDAS_R"] == Genotype(FRC_N, (2, 3, 4, 5), GDAS_R, (2, 3, 4, 5))
    rnn = REGISTRY["GDAS_RNN"]
    assert rnn.recurrent == (
        (("relu", 0),), (("relu", 0),), (("identity", 1),), (("relu", 1),), (("tanh", 0),), (("relu", 2),),
        (("identity", 4),), (("identity", 2),))
    assert rnn.concat == tuple(range(1, 9))
    for name in ("DARTS_V1", "DARTS_V2", "GDAS"):
        g = REGISTRY[name]
        assert len(g.normal) == len(g.reduce) == 4 and all(len(node) == 2 for node in g.normal + g.reduce)


# ---- bad input ----

@pytest.mark.parametrize("text", [
    '{"type": "cnn", "normal": [[["skip_connect", 0]]',     # truncated JSON
    "[1, 2, 3]",                                             # not an object (fails as text: no section)
])
def test_malformed_json_raises(text):
    with pytest.raises(GdasError):
        load_genotype(text)


def test_malformed_json_file_raises(tmp_path):
    path = tmp_path / "genotype.json"
    path.write_text('{"normal": [[["skip_connect", 0], ')
    with pytest.raises(GdasError, match="malformed genotype JSON"):
        load_genotype(path)
    with pytest.raises(GdasError, match="malformed genotype JSON"):
        load_genotype(tmp_path)


@pytest.mark.parametrize("data", [
    [],                                                          # not an object
    {"type": "cnn"},                                             # no normal
    {"type": "transformer", "normal": []},                       # unknown type
    {"type": "rnn"},                                             # no recurrent
    _cnn_json(normal=5),                                         # nodes not a list
    _cnn_json(normal=[[["skip_connect", 0, 1]]]),                # triple instead of pair
    _cnn_json(normal=[]),                                        # no nodes
    _cnn_json(normal=[[]]),                                      # node without inputs
    _cnn_json(reduce=[[["skip_connect", "0"]]]),                 # input not an int
    _cnn_json(reduce=[[["skip_connect", True]]]),                # bool is not a node index
])
def test_malformed_json_structure_raises(data):
    with pytest.raises(GdasError):
        genotype_from_json(data)


@pytest.mark.parametrize("op", ["conv_9x9", "none"])
def test_unknown_or_none_op_raises(op):
    with pytest.raises(GdasError, match=op):
        genotype_from_json(_cnn_json(normal=[[[op, 0], ["skip_connect", 1]]]))
    with pytest.raises(GdasError):
        parse_genotype_text(f"normal: {op}@0 + skip_connect@1 ; reduce: FIXED")
    with pytest.raises(GdasError):
        RecurrentGenotype(((("relu", 0),), ((op, 1),)))


@pytest.mark.parametrize("nodes", [
    [[["skip_connect", 2]]],                                   # node 2 cannot read itself
    [[["skip_connect", 0]], [["sep_conv_3x3", 4]]],            # node 3 reading a later node
    [[["skip_connect", -1]]],                                  # negative input
])
def test_forward_or_out_of_range_inputs_raise(nodes):
    with pytest.raises(GdasError, match="earlier node"):
        genotype_from_json(_cnn_json(normal=nodes, normal_concat=None))
    with pytest.raises(GdasError):
        genotype_from_json(_cnn_json(reduce=nodes, reduce_concat=None))


def test_recurrent_forward_input_raises():
    with pytest.raises(GdasError, match="earlier node"):
        RecurrentGenotype(((("relu", 0),), (("tanh", 2),)), (1, 2))


@pytest.mark.parametrize("concat", [[2, 9], [-1], [], [2.5], 5, "2345"])
def test_bad_concat_raises(concat):
    with pytest.raises(GdasError, match="concat"):
        genotype_from_json(_cnn_json(normal_concat=concat))
    with pytest.raises(GdasError, match="concat"):
        genotype_from_json(_cnn_json(reduce_concat=concat))
    rnn = dict(REGISTRY["GDAS_RNN"].to_json(), concat=concat)
    with pytest.raises(GdasError, match="concat"):
        genotype_from_json(rnn)


@pytest.mark.parametrize("text", [
    "normal: skip_connect0 + skip_connect@1 ; reduce: FIXED",   # missing @
    "normal: skip_connect@x ; reduce: FIXED",                   # input not a number
    "normal: skip_connect@-1 ; reduce: FIXED",                  # negative input
    "reduce: skip_connect@0",                                   # no normal section
    "normal skip_connect@0",                                    # no colon at all -> looks like a name
])
def test_malformed_text_raises(text):
    with pytest.raises(GdasError):
        load_genotype(text)


def test_unknown_name_missing_file_and_empty_run_dir(tmp_path):
    with pytest.raises(GdasError, match="no genotype named"):
        load_genotype("NOT_A_CELL")
    with pytest.raises(GdasError, match="no genotype named"):
        load_genotype(tmp_path / "missing.json")
    with pytest.raises(GdasError, match="no genotype named"):
        load_genotype(tmp_path)  # a directory without genotype.json
    with pytest.raises(GdasError):
        load_genotype("x" * 400)  # longer than any file name: still a clean error


def test_genotype_is_frozen_and_hashable():
    g = REGISTRY["GDAS"]
    assert hash(g) == hash(genotype_from_json(g.to_json()))
    with pytest.raises(AttributeError):
        g.normal = ()  # type: ignore[misc]


def test_random_genotype_is_seeded_valid_and_covers_the_space():
    draws = [random_genotype(torch.Generator().manual_seed(s)) for s in range(200)]
    assert random_genotype(torch.Generator().manual_seed(3)) == draws[3]  # the seed fixes it
    assert len(set(draws)) == len(draws)
    for g in draws[:20]:
        assert Genotype.from_json(g.to_json()) == g and Genotype.parse(str(g)) == g
    ops = {op for g in draws for cell in (g.normal, g.reduce) for node in cell for op, _ in node}
    assert "none" not in ops and len(ops) == 7
    inputs = [j for g in draws for i, node in enumerate(g.normal) for _, j in node if i == 3]
    assert set(inputs) == {0, 1, 2, 3, 4} and all(len({j for _, j in node}) == 2 for g in draws for node in g.normal)
    frc = random_genotype(torch.Generator().manual_seed(0), steps=3, fixed_reduction=True)
    assert frc.fixed_reduction and len(frc.normal) == 3 and frc.normal_concat == (2, 3, 4)
