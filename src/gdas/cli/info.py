"""`gdas info`: the size of a genotype's final network in its space (params, multiply-adds), counted from modules."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gdas.configs.train import final_size
from gdas.errors import GdasError
from gdas.genotypes import load_genotype
from gdas.spaces import space_of

INFO_DATASETS = ("cifar10", "cifar100", "fashion-mnist", "imagenet", "imagenet16-120")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("info", help="parameters and multiply-adds of a genotype's final network",
                            description="Parameters (millions; DARTS networks without the auxiliary head, as the "
                                        "paper reports) and multiply-adds (millions, one image) of a genotype's "
                                        "final network, counted from the real modules. NAS-Bench-201 strings are "
                                        "counted as NAS-Bench-201 does.")
    parser.add_argument("genotype", help="registry name (e.g. GDAS), genotype.json, genotype text, an NB201 string, "
                                         "or RUN_DIR")
    parser.add_argument("--dataset", choices=INFO_DATASETS, default="cifar10",
                        help="network layout and input size (default: cifar10)")
    parser.add_argument("--C", type=int, default=None, help="initial channels (default: the paper's training "
                                                            "preset for the dataset)")
    parser.add_argument("--N", type=int, default=None, help="cells per block / stage (default: the preset's)")
    parser.add_argument("--task", choices=("ptb", "wt2"), default="ptb",
                        help="recurrent genotypes: the language model at the paper's size for PTB or WikiText-2")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=main)


def _image_text(info: dict[str, Any]) -> str:
    size = info["input_size"]
    aux = f" without the auxiliary head ({info['params_aux_M']:.2f} M with it)" if "params_aux_M" in info else ""
    return (f"{info['name']} on {info['dataset']} (C={info['C']}, N={info['N']}, {size}x{size} input)\n"
            f"  params:    {info['params_M']:.2f} M{aux}\n"
            f"  mult-adds: {info['mult_adds_M']:.1f} M per image")


def _lm_text(info: dict[str, Any]) -> str:
    return (f"{info['name']} language model on {info['task']} ({info['vocab']} words, embedding = hidden = "
            f"{info['nhid']}, tied decoder)\n  params:    {info['params_M']:.2f} M")


def main(args: argparse.Namespace) -> int:
    genotype = load_genotype(args.genotype)
    space = space_of(genotype)
    if space.info is None:
        raise GdasError(f"gdas info does not size {space.name} genotypes; pass a genotype of another space")
    if space.data == "lm":
        info = space.info(genotype, args.task)
    else:
        C, N = final_size(space.name, args.dataset, getattr(genotype, "fixed_reduction", False))
        C = args.C if args.C is not None else C
        N = args.N if args.N is not None else N
        if C < 1 or N < 1 or (space.name == "darts" and (C < 2 or C % 2)):
            raise GdasError(f"--C must be a positive (for DARTS cells even) number and --N at least 1, "
                            f"got C={C}, N={N}")
        info = space.info(genotype, args.dataset, C, N)
    info = {"name": args.genotype, **info, "genotype": str(genotype)}
    info = {k: round(v, 4) if isinstance(v, float) else v for k, v in info.items()}
    print(json.dumps(info) if args.json else (_lm_text if space.data == "lm" else _image_text)(info))
    return 0
