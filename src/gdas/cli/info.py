"""`gdas info`: the size of a genotype's final network (params without the auxiliary head, multiply-adds)."""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable, Optional

from gdas.errors import GdasError
from gdas.flops import DATASETS, network_info
from gdas.genotypes import AnyGenotype, Genotype, RecurrentGenotype, load_genotype
from gdas.train import check_channels

# The paper's final-network sizes per dataset: (C, N); the FRC cell on ImageNet uses C=52.
PAPER_SIZES: dict[str, tuple[int, int]] = {"cifar10": (36, 6), "cifar100": (36, 6), "fashion-mnist": (36, 6),
                                           "imagenet": (50, 4)}
FRC_IMAGENET_C = 52


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("info", help="parameters and multiply-adds of a genotype's final network",
                            description="Parameters (millions, without the auxiliary head, as the paper reports) "
                                        "and multiply-adds (millions, one image) of a genotype's final network, "
                                        "counted from the real modules.")
    parser.add_argument("genotype", help="registry name (e.g. GDAS), genotype.json, genotype text, or RUN_DIR")
    parser.add_argument("--dataset", choices=list(DATASETS), default="cifar10",
                        help="network layout and input size (default: cifar10)")
    parser.add_argument("--C", type=int, default=None, help="initial channels (default: the paper's, "
                                                            "36 on CIFAR, 50 on ImageNet, 52 for FRC there)")
    parser.add_argument("--N", type=int, default=None, help="normal cells per block (default: 6 CIFAR, 4 ImageNet)")
    parser.add_argument("--task", choices=("ptb", "wt2"), default="ptb",
                        help="recurrent genotypes: the language model at the paper's size for PTB or WikiText-2")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=main)


def cnn_info(genotype: Genotype, args: argparse.Namespace) -> dict[str, Any]:
    """Network size of a CNN genotype on args.dataset at args.C/args.N (the paper's when not given)."""
    C, N = PAPER_SIZES[args.dataset]
    if args.dataset == "imagenet" and genotype.fixed_reduction:
        C = FRC_IMAGENET_C
    C = args.C if args.C is not None else C
    N = args.N if args.N is not None else N
    if C < 2 or C % 2 or N < 1:
        raise GdasError(f"--C must be an even number >= 2 and --N at least 1, got C={C}, N={N}")
    check_channels(genotype, C)
    return network_info(genotype, args.dataset, C, N)


def _cnn_text(info: dict[str, Any]) -> str:
    size = info["input_size"]
    return (f"{info['name']} on {info['dataset']} (C={info['C']}, N={info['N']}, {size}x{size} input)\n"
            f"  params:    {info['params_M']:.2f} M without the auxiliary head ({info['params_aux_M']:.2f} M with it)\n"
            f"  mult-adds: {info['mult_adds_M']:.1f} M per image")


def rnn_info(genotype: RecurrentGenotype, args: argparse.Namespace) -> dict[str, Any]:
    from gdas.lm.train import paper_lm_size
    return paper_lm_size(genotype, args.task)


def _rnn_text(info: dict[str, Any]) -> str:
    return (f"{info['name']} language model on {info['task']} ({info['vocab']} words, embedding = hidden = "
            f"{info['nhid']}, tied decoder)\n  params:    {info['params_M']:.2f} M")


# genotype.kind -> (size of its network, its text form).
INFO_BY_KIND: dict[str, tuple[Callable[[Any, argparse.Namespace], dict[str, Any]], Callable[[dict], str]]] = {
    "cnn": (cnn_info, _cnn_text),
    "rnn": (rnn_info, _rnn_text),
}


def main(args: argparse.Namespace) -> int:
    genotype: AnyGenotype = load_genotype(args.genotype)
    handler: Optional[tuple] = INFO_BY_KIND.get(genotype.kind)
    if handler is None:
        raise GdasError(f"gdas info does not size {genotype.kind} genotypes yet; pass a CNN genotype such as GDAS")
    measure, text = handler
    info = {"name": args.genotype, **measure(genotype, args), "genotype": str(genotype)}
    info = {k: round(v, 4) if isinstance(v, float) else v for k, v in info.items()}
    print(json.dumps(info) if args.json else text(info))
    return 0
