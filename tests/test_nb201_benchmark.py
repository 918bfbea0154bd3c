"""NATS-Bench look-ups: which benchmark records are read, the errors, the CLI; a real look-up when one is given."""

from __future__ import annotations

import argparse
import json
import os
import sys
import types

import pytest

from gdas.cli import nb201 as cli
from gdas.errors import GdasError
from gdas.spaces.nb201 import benchmark
from gdas.spaces.nb201.genotype import NB201_REGISTRY, NB201Genotype

BEST = NB201_REGISTRY["nb201-best-cifar100"]
# What the benchmark holds per dataset (get_more_info keys); CIFAR-10 trained on train+valid has no validation.
RECORDS = {
    "cifar10-valid": {"valid-accuracy": 91.5, "test-accuracy": 93.0},
    "cifar10": {"test-accuracy": 94.25},
    "cifar100": {"valid-accuracy": 73.0, "test-accuracy": 73.5},
    "ImageNet16-120": {"valid-accuracy": 46.0, "test-accuracy": 46.5},
}


class FakeApi:
    def __init__(self):
        self.calls = []

    def query_index_by_arch(self, arch):
        return 42 if arch == BEST else -1

    def get_more_info(self, index, dataset, hp, is_random):
        self.calls.append((index, dataset, hp, is_random))
        return dict(RECORDS[dataset])


@pytest.fixture
def fake_nats(monkeypatch):
    """A stand-in `nats_bench` module; returns the list of create() calls (path, space, fast_mode) and the API."""
    api, created = FakeApi(), []

    def create(path, space, fast_mode=False, verbose=True):
        created.append((path, space, fast_mode))
        print("the real API prints progress here")
        return api

    monkeypatch.setitem(sys.modules, "nats_bench", types.SimpleNamespace(create=create))
    monkeypatch.setattr(benchmark, "_APIS", {})
    return created, api


def test_query_reads_the_authors_records(fake_nats, tmp_path, capsys):
    created, api = fake_nats
    info = benchmark.query(NB201Genotype.parse(BEST), str(tmp_path))
    assert info == {"arch": BEST, "index": 42, "epochs": 200, "results": {
        "cifar10": {"valid": 91.5, "test": 94.25},  # valid from cifar10-valid, test from cifar10 (train+valid)
        "cifar100": {"valid": 73.0, "test": 73.5},
        "imagenet16-120": {"valid": 46.0, "test": 46.5}}}
    assert created == [(str(tmp_path), "tss", True)]  # a folder: the lazily loading fast mode
    assert {call[2:] for call in api.calls} == {("200", False)}  # 200 epochs, mean over seeds
    assert {call[1] for call in api.calls} == set(RECORDS)
    assert capsys.readouterr().out == ""  # the API's progress lines are swallowed
    benchmark.query(BEST, str(tmp_path), "cifar100")
    assert len(created) == 1  # the loaded benchmark is reused


def test_query_one_dataset_and_a_benchmark_file(fake_nats, tmp_path):
    created, api = fake_nats
    path = tmp_path / "NATS-tss-v1_0-3ffb9-full.pickle.pbz2"
    path.write_bytes(b"")
    info = benchmark.query(BEST, str(path), dataset="ImageNet16-120")
    assert info["results"] == {"imagenet16-120": {"valid": 46.0, "test": 46.5}}
    assert created == [(str(path), "tss", False)]


def test_query_errors(fake_nats, tmp_path):
    with pytest.raises(GdasError, match="is not in the NATS-Bench topology benchmark"):
        benchmark.query("nb201-all-skip", str(tmp_path))
    with pytest.raises(GdasError, match="choose one of cifar10, cifar100, imagenet16-120"):
        benchmark.query(BEST, str(tmp_path), "imagenet")
    with pytest.raises(GdasError, match="4-node cells"):
        benchmark.query("|none~0|+|none~0|none~1|", str(tmp_path))
    missing = tmp_path / "nowhere"
    with pytest.raises(GdasError, match=rf"{missing} does not exist; download NATS-tss-v1_0-3ffb9-simple"):
        benchmark.query(BEST, str(missing))


def test_without_nats_bench_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nats_bench", None)  # `import nats_bench` raises ImportError
    monkeypatch.setattr(benchmark, "_APIS", {})
    with pytest.raises(GdasError, match=r"pip install 'gdas-nas\[nb201\]'"):
        benchmark.query(BEST, str(tmp_path))


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_query_text_json_and_genotype_file(fake_nats, tmp_path, capsys):
    assert _run_cli(["nb201", "query", "nb201-best-cifar100", "--benchmark", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(BEST) and "index 42" in out
    assert "cifar10         valid 91.50%  test 94.25%" in out
    genotype_file = tmp_path / "genotype.json"
    genotype_file.write_text(json.dumps(NB201Genotype.parse(BEST).to_json()))
    assert _run_cli(["nb201", "query", str(genotype_file), "--benchmark", str(tmp_path), "--dataset", "cifar100",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"] == {"cifar100": {"valid": 73.0, "test": 73.5}}
    with pytest.raises(GdasError, match="unknown NB201 op"):
        _run_cli(["nb201", "query", "|conv~0|", "--benchmark", str(tmp_path)])


def _tiny_archive(root, archs: list[str], epochs: int = 3) -> None:
    """A NATS-tss-simple folder holding `archs`, written with nats_bench's own classes.

    The final-epoch accuracy of set S on dataset D is 10 * len(D) + len(S) + index, plus 0.5 for seed 888 and
    30 under hp=12, so every number identifies where it came from; the mean over seeds 777/888 adds 0.25.
    """
    nats = pytest.importorskip("nats_bench")
    root.mkdir()
    nats.pickle_save({"meta_archs": archs}, str(root / "meta.pickle"))  # pickle_save appends .pbz2
    sets = {"cifar10-valid": ["x-valid", "ori-test"], "cifar10": ["ori-test"],
            "cifar100": ["x-valid", "x-test", "ori-test"], "ImageNet16-120": ["x-valid", "x-test", "ori-test"]}
    for index, arch in enumerate(archs):
        per_hp = {}
        for hp in ("12", "200"):
            results = nats.ArchResults(index, arch)
            for dataset, names in sets.items():
                for seed in (777, 888):
                    trial = nats.ResultsCount(dataset, None, dict.fromkeys(range(epochs), 50.0),
                                              dict.fromkeys(range(epochs), 1.0), 1.0, 100.0, {}, seed, epochs, [0.01])
                    final = {n: 10 * len(dataset) + len(n) + index + (seed == 888) * 0.5 + (hp == "12") * 30
                             for n in names}
                    accs = {f"{n}@{e}": final[n] if e == epochs - 1 else 0.0 for n in names for e in range(epochs)}
                    trial.update_eval(accs, dict.fromkeys(accs, 0.5), dict.fromkeys(accs, 1.0))
                    results.update(dataset, seed, trial)
            per_hp[hp] = results.state_dict()
        nats.pickle_save(per_hp, str(root / f"{index:06d}.pickle"))


def test_query_through_the_real_nats_bench(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark, "_APIS", {})
    root = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    _tiny_archive(root, [NB201_REGISTRY["nb201-resnet"], BEST])
    info = benchmark.query(BEST, str(root))
    assert info["index"] == 1
    assert info["results"] == {
        "cifar10": {"valid": 130 + 7 + 1.25, "test": 70 + 8 + 1.25},  # cifar10-valid x-valid; cifar10 ori-test
        "cifar100": {"valid": 80 + 7 + 1.25, "test": 80 + 6 + 1.25},  # x-valid; x-test
        "imagenet16-120": {"valid": 140 + 7 + 1.25, "test": 140 + 6 + 1.25}}
    (tmp_path / "empty").mkdir()
    with pytest.raises(GdasError, match="cannot load NATS-Bench from .*empty .*pass the extracted"):
        benchmark.query(BEST, str(tmp_path / "empty"))


@pytest.mark.skipif(not os.environ.get("GDAS_NATS_BENCH"),
                    reason="set GDAS_NATS_BENCH to the NATS-tss-v1_0-3ffb9-simple folder to run the real look-up")
def test_real_lookup():
    pytest.importorskip("nats_bench")
    path = os.environ["GDAS_NATS_BENCH"]
    best = benchmark.query(BEST, path)["results"]
    none = benchmark.query("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", path, "cifar10")["results"]
    assert best["cifar10"]["test"] > 93 and best["cifar100"]["test"] > 70  # among NB201's best cells
    assert all(10 < acc[split] < 100 for acc in best.values() for split in ("valid", "test"))
    assert none["cifar10"]["test"] < 15  # a cell that passes nothing is at chance
