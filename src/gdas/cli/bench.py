"""`gdas bench search|data|epoch|network|lm`: step times, peak memory and throughput (see docs/performance.md), a
trained network's inference latency (docs/latency.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gdas.bench.lm import STEPS, bench_lm
from gdas.bench.measure import KINDS, bench_data, bench_epoch, bench_network, bench_search, memory_worker
from gdas.cli.common import overrides
from gdas.configs import base as cfgbase
from gdas.configs.bench import BenchConfig, LMBenchConfig
from gdas.configs.files import resolve_config
from gdas.configs.latency import MeasureConfig
from gdas.configs.search import SEARCH_TABLE, SearchConfig
from gdas.errors import GdasError
from gdas.engine.progress import summary_table


def _add_model_options(parser: argparse.ArgumentParser, batch: int) -> None:
    cfgbase.add_config_options(parser, BenchConfig, skip=("memory",))
    parser.set_defaults(batch=batch)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="measure search-step time, memory and throughput",
                            description="Performance measurements on CIFAR-sized synthetic data (32x32x3, 10 "
                                        "classes; `lm`: random tokens). No timing is asserted anywhere: these "
                                        "are measurements.")
    bench_sub = parser.add_subparsers(dest="bench_command", metavar="WHAT", required=True)

    search = bench_sub.add_parser("search", help="GDAS W step vs its sampled child vs DARTS; A step; memory")
    _add_model_options(search, 64)
    search.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes (CPU)")
    search.set_defaults(func=_search)

    data = bench_sub.add_parser("data", help="on-device augmentation images/s vs the W step's")
    _add_model_options(data, 256)
    data.add_argument("--cutout", type=int, default=16, help="cutout size of the measured augmentation")
    data.set_defaults(func=_data)

    epoch = bench_sub.add_parser("epoch", help="time one real search epoch and project the whole search")
    epoch.add_argument("--preset", default="cifar10", choices=SEARCH_TABLE.names(), metavar="PRESET",
                       help=f"a search preset: {', '.join(SEARCH_TABLE.names())} (default: cifar10)")
    epoch.add_argument("--warmup-steps", type=int, default=5, help="untimed W+A iterations first (default: 5)")
    epoch.add_argument("--time-steps", type=int, default=None, metavar="K",
                       help="time only the epoch's first K iterations and scale to the whole epoch")
    epoch.add_argument("--json", action="store_true", help="print one JSON object")
    cfgbase.add_config_options(epoch, SearchConfig, skip=("benchmark",))  # no search ends here: nothing to look up
    epoch.set_defaults(func=_epoch)

    network = bench_sub.add_parser("network", help="time a trained network end to end (inference latency)",
                                   description="Median latency of one inference call of a `gdas train` run's "
                                               "network (best.pt, else checkpoint.pt): eval mode, logits only.")
    network.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run directory of `gdas train`")
    cfgbase.add_config_options(network, MeasureConfig, title="how to measure")
    network.add_argument("--json", action="store_true", help="print one JSON object")
    network.set_defaults(func=_network)

    lm = bench_sub.add_parser("lm", help="LM training step and recurrent search W step vs an nn.LSTM language model",
                              description="Median step times of `gdas train-lm`'s update and `gdas search-rnn`'s W "
                                          "step against a plain nn.LSTM language model (same embedding and hidden "
                                          "size, batch, window and vocabulary, softmax included), on random "
                                          "tokens; one thread unless --threads says otherwise.")
    cfgbase.add_config_options(lm, LMBenchConfig)
    lm.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    lm.set_defaults(func=_lm)

    worker = bench_sub.add_parser("_worker")  # one peak-memory measurement, in its own process
    worker.add_argument("--kind", choices=KINDS, required=True)
    worker.add_argument("--config", required=True)
    worker.set_defaults(func=_worker)


def _config(args: argparse.Namespace) -> BenchConfig:
    values = overrides(args, BenchConfig)
    return cfgbase.apply_overrides(BenchConfig(memory=not getattr(args, "no_memory", False)), values)


def _emit(result: dict[str, Any], as_json: bool, rows: list[dict[str, Any]], columns: list[str],
          notes: list[str]) -> None:
    if as_json:
        print(json.dumps(result))
        return
    m = result["machine"]
    print(f"{m['device']} ({m.get('gpu', m['cpu_model'])}), torch {m['torch']}, {m['threads']} threads, "
          f"load {m['load_avg_1m']}")
    print(summary_table(rows, columns))
    for note in notes:
        print(note)


def _search(args: argparse.Namespace) -> int:
    b = _config(args)
    log = (lambda s: print(s, file=sys.stderr)) if not args.json else (lambda _: None)
    r = bench_search(b, log)
    labels = {"gdas": "GDAS W step", "child": "child W step", "darts": "DARTS W step", "arch": "GDAS A step"}
    rows = [{"step": labels[k], "median_ms": r[f"{k}_step_ms"], "peak_mb": r.get(f"{k}_peak_mb")} for k in KINDS]
    notes = [f"gdas/child {r['gdas_over_child']}  darts/gdas {r['darts_over_gdas']}  "
             f"gdas/darts memory {r.get('gdas_over_darts_memory', '-')}  W+A iteration {r['iteration_ms']} ms",
             f"space {b.space}, C={r['config_search']['C']} N={r['config_search']['N']} batch {b.batch}, "
             f"{b.samples} samples; memory: {r['memory_method']}"]
    _emit(r, args.json, rows, ["step", "median_ms", "peak_mb"], notes)
    return 0


def _data(args: argparse.Namespace) -> int:
    if args.cutout < 0:
        raise GdasError(f"--cutout must be >= 0, got {args.cutout}")
    b = _config(args)
    r = bench_data(b, cutout=args.cutout)
    rows = [{"what": "augment (crop+flip+cutout+normalise)", "ms": r["augment_ms"],
             "images_per_s": r["augment_images_per_s"]},
            {"what": "GDAS W step", "ms": r["w_step_ms"], "images_per_s": r["w_step_images_per_s"]}]
    _emit(r, args.json, rows, ["what", "ms", "images_per_s"],
          [f"augmentation is {r['augment_over_step']}x the W step's throughput (batch {b.batch})"])
    return 0


def _epoch(args: argparse.Namespace) -> int:
    if args.warmup_steps < 0 or (args.time_steps is not None and args.time_steps < 1):
        raise GdasError(f"--warmup-steps must be >= 0 and --time-steps >= 1, got {args.warmup_steps} and "
                        f"{args.time_steps}")
    cfg: SearchConfig = resolve_config(SearchConfig, SEARCH_TABLE, kind="search", preset=args.preset,
                                       overrides=overrides(args, SearchConfig))
    r = bench_epoch(cfg, args.warmup_steps, args.time_steps, show_progress=not args.json)
    rows = [{"epoch_s": r["epoch_s"], "steps": r["steps_per_epoch"], "timed": r["timed_steps"],
             "iteration_ms": r["iteration_ms"], "images_per_s": r["images_per_s"], "epochs": r["epochs"],
             "projected_h": r["projected_search_h"]}]
    _emit(r, args.json, rows, ["epoch_s", "steps", "timed", "iteration_ms", "images_per_s", "epochs", "projected_h"],
          [f"preset {args.preset} on {cfg.dataset}: {r['epochs']} epochs x {r['epoch_s']} s"])
    return 0


def _network(args: argparse.Namespace) -> int:
    settings = cfgbase.apply_overrides(MeasureConfig(), overrides(args, MeasureConfig)).settings()
    r = bench_network(args.run_dir, settings)
    if args.json:
        print(json.dumps(r))
        return 0
    m = r["machine"]
    print(f"{m['device']} ({m.get('gpu', m['cpu_model'])}), runtime {settings.runtime}, {settings.threads} threads, "
          f"load {m['load_avg_1m']} -> {m['load_avg_1m_after']}")
    print(summary_table([{"batch": settings.batch, "median_ms": r["ms"], "iqr_ms": r["iqr_ms"],
                          "images_per_s": r["images_per_s"], "samples": r["samples"]}],
                        ["batch", "median_ms", "iqr_ms", "images_per_s", "samples"]))
    print(f"{r['network']['genotype']} (C={r['network']['C']}, N={r['network']['N']}, {r['network']['source']}); "
          f"{settings.dtype}, {settings.memory_format}, {settings.clock} clock")
    return 0


def _lm(args: argparse.Namespace) -> int:
    b = cfgbase.apply_overrides(LMBenchConfig(), overrides(args, LMBenchConfig))
    r = bench_lm(b, (lambda s: print(s, file=sys.stderr)) if not args.json else (lambda _: None))
    labels = {"train": "train-lm step", "search": "search-rnn W step"}
    rows = [{"step": labels[k], "nhid": r[k]["nhid"], "batch": r[k]["batch_size"], "bptt": r[k]["bptt"],
             "ms": r[k]["step_ms"], "tokens_per_s": r[k]["tokens_per_s"], "lstm_ms": r[k]["lstm_step_ms"],
             "lstm_tokens_per_s": r[k]["lstm_tokens_per_s"], "slowdown": r[k]["slowdown_vs_lstm"],
             "slowdown_cpu": r[k]["slowdown_vs_lstm_cpu"]} for k in STEPS]
    _emit(r, args.json, rows, list(rows[0]),
          [f"vocabulary {b.vocab}, genotype {b.genotype}{', autograd reference path' if b.autograd else ''}; "
           "slowdown = nn.LSTM's tokens/s / ours (wall time; slowdown_cpu from this process's CPU time)"])
    return 0


def _worker(args: argparse.Namespace) -> int:
    b = BenchConfig(**json.loads(args.config))
    print(json.dumps(memory_worker(b, args.kind)))
    return 0
