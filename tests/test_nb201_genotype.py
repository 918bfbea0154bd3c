"""NB201 genotype: string and JSON forms, errors, named cells, derivation, and nats_bench's own parser."""

from __future__ import annotations

import pytest
import torch

from gdas.errors import GdasError
from gdas.spaces.nb201 import NB201_OPS, NB201Genotype, derive_nb201
from gdas.spaces.nb201.genotype import NB201_REGISTRY

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
MIXED = "|nor_conv_1x1~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


def test_parse_and_str_round_trip():
    g = NB201Genotype.parse(BEST)
    assert g.nodes == ((("nor_conv_3x3", 0),), (("nor_conv_3x3", 0), ("nor_conv_3x3", 1)),
                       (("skip_connect", 0), ("nor_conv_3x3", 1), ("nor_conv_3x3", 2)))
    assert str(g) == BEST and NB201Genotype.parse(f"  {MIXED}\n").__str__() == MIXED
    assert g.edges[3] == ("skip_connect", 0, 3) and len(g.edges) == 6
    assert g.kind == "nb201" and g == NB201Genotype.parse(BEST) and hash(g) == hash(NB201Genotype.parse(BEST))


def test_inputs_given_out_of_order_are_put_in_nb201_order():
    g = NB201Genotype.parse("|none~0|+|avg_pool_3x3~1|none~0|+|nor_conv_3x3~2|skip_connect~0|none~1|")
    assert str(g) == "|none~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


def test_json_round_trip():
    g = NB201Genotype.parse(MIXED)
    assert g.to_json() == {"type": "nb201", "arch": MIXED}
    assert NB201Genotype.from_json(g.to_json()) == g
    for bad in ({"type": "cnn", "arch": MIXED}, {"type": "nb201"}, [MIXED]):
        with pytest.raises(GdasError, match="not an NB201 genotype"):
            NB201Genotype.from_json(bad)


def test_param_free_count():
    assert NB201Genotype.parse(BEST).param_free_count() == 1
    assert NB201Genotype.parse(MIXED).param_free_count() == 4
    assert NB201Genotype.parse("nb201-all-skip").param_free_count() == 6
    assert NB201Genotype.parse("nb201-all-conv3x3").param_free_count() == 0


def test_looks_like():
    assert NB201Genotype.looks_like(BEST) and NB201Genotype.looks_like(" |foo~0| ")
    for text in ("GDAS", "Genotype(normal=[('sep_conv_3x3', 0)])", "|", "||", "nb201-resnet"):
        assert not NB201Genotype.looks_like(text)


@pytest.mark.parametrize("text,fragment", [
    ("|nor_conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown NB201 op 'nor_conv_5x5'"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 needs one edge from each of nodes [0, 1]"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "got inputs [0, 0]"),
    ("|none~1|", "node 1 needs one edge"),
    ("|none~0|+none~0|none~1|", "node 2 ('none~0|none~1|') must start and end with '|'"),
    ("|none0|+|none~0|none~1|", "edge 'none0' in node 1 is not op~input"),
    ("|none~x|", "edge 'none~x' in node 1"),
    ("GDAS", "not an NB201 architecture string"),
])
def test_malformed_strings_raise_one_line(text, fragment):
    with pytest.raises(GdasError) as info:
        NB201Genotype.parse(text)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert "unknown NB201 op" in message or "e.g. |nor_conv_3x3~0|" in message  # names the fix


def test_registry_entries_parse_to_themselves():
    assert NB201_REGISTRY["nb201-best-cifar100"] == BEST
    for name, text in NB201_REGISTRY.items():
        assert str(NB201Genotype.parse(name)) == text == str(NB201Genotype.parse(text))


# ---- derivation ----

def test_derive_keeps_argmax_including_none():
    probs = torch.full((6, 5), 0.1)
    best = [3, 0, 2, 1, 0, 4]  # `none` wins on edges 1 and 4
    for e, k in enumerate(best):
        probs[e, k] = 0.6
    g = derive_nb201(probs)
    assert [op for op, _, _ in g.edges] == [NB201_OPS[k] for k in best]
    assert str(g) == "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"


def test_derive_ties_go_to_the_earlier_op():
    probs = torch.tensor([[0.1, 0.3, 0.3, 0.2, 0.1]] * 3 + [[0.2] * 5] * 3)
    ops = [op for op, _, _ in derive_nb201(probs).edges]
    assert ops == ["skip_connect"] * 3 + ["none"] * 3


def test_derive_other_cell_sizes_and_bad_shapes():
    assert len(derive_nb201(torch.rand(10, 5)).nodes) == 4
    for shape in ((7, 5), (6, 4), (30,)):
        with pytest.raises(GdasError):
            derive_nb201(torch.rand(shape))


# ---- the official parser ----

def test_string_form_matches_nats_bench_parser():
    nats = pytest.importorskip("nats_bench")
    for text in (BEST, MIXED, *NB201_REGISTRY.values(),
                 "|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"):  # nats_bench's own example
        g = NB201Genotype.parse(text)
        assert nats.api_topology.NATStopology.str2lists(str(g)) == [tuple(node) for node in g.nodes]
        assert str(NB201Genotype(tuple(nats.api_topology.NATStopology.str2lists(text)))) == text
    ops = nats.search_space_info("nats-bench", "tss")["op_names"]
    assert tuple(ops) == NB201_OPS  # the op order of A's columns is the benchmark's


def test_derive_max_skip_replaces_the_least_likely_skips_with_weighted_ops():
    probs = torch.tensor([  # none, skip, conv1x1, conv3x3, pool
        [0.05, 0.70, 0.05, 0.15, 0.05],   # skip 0.70: kept
        [0.10, 0.40, 0.30, 0.10, 0.10],   # skip 0.40: replaced by nor_conv_1x1
        [0.05, 0.50, 0.05, 0.10, 0.30],   # skip 0.50: kept (limit 2); pool is parameter-free anyway
        [0.60, 0.20, 0.10, 0.05, 0.05],   # none wins: untouched
        [0.05, 0.35, 0.10, 0.10, 0.40],   # pool wins: untouched
        [0.10, 0.30, 0.10, 0.10, 0.40],   # pool wins: untouched
    ])
    assert [op for op, _, _ in derive_nb201(probs).edges].count("skip_connect") == 3
    limited = [op for op, _, _ in derive_nb201(probs, max_skip=2).edges]
    assert limited == ["skip_connect", "nor_conv_1x1", "skip_connect", "none", "avg_pool_3x3", "avg_pool_3x3"]
    assert [op for op, _, _ in derive_nb201(probs, max_skip=0).edges][:3] == ["nor_conv_3x3", "nor_conv_1x1",
                                                                               "nor_conv_3x3"]
    assert derive_nb201(probs, max_skip=3) == derive_nb201(probs)
