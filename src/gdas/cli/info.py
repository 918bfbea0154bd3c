"""`gdas info`: the size of a genotype's final network in its space (params, multiply-adds), counted from modules."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gdas.configs.train import final_size
from gdas.data.own import check_data_source
from gdas.errors import GdasError
from gdas.genotypes import load_genotype
from gdas.latency.table import LatencyTable, load_table, shape_text
from gdas.spaces import space_of
from gdas.spaces.base import SearchSpace
from gdas.spaces.shapes import DATASET_SHAPES, Shape, dataset_shape


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("info", help="parameters and multiply-adds of a genotype's final network",
                            description="Parameters (millions; DARTS networks without the auxiliary head, as the "
                                        "paper reports, and with it when the input is large enough for the head: "
                                        "21x21, ImageNet layout 192x192; below that the head is left out, as "
                                        "training then needs --no-auxiliary) and multiply-adds (millions, one "
                                        "image) of a genotype's final network, counted from the real modules. "
                                        "NAS-Bench-201 strings are counted as NAS-Bench-201 does. --num-classes, "
                                        "--image-size and --channels size the network for your own data before "
                                        "training.")
    parser.add_argument("genotype", help="registry name (e.g. GDAS), genotype.json, genotype text, an NB201 string, "
                                         "or RUN_DIR")
    parser.add_argument("--dataset", choices=tuple(DATASET_SHAPES), default=None,
                        help="network layout (imagenet: ImageNet-mobile; the others: CIFAR) and the default input "
                             "shape and training size (default: cifar10; with --latency-table, the table's)")
    parser.add_argument("--num-classes", type=int, default=None, metavar="K", help="classes (default: the dataset's)")
    parser.add_argument("--image-size", type=int, default=None, metavar="S",
                        help="side of the square input images (default: the dataset's)")
    parser.add_argument("--channels", type=int, default=None, metavar="C",
                        help="input channels, 1 (grayscale) or 3 (RGB) (default: the dataset's)")
    parser.add_argument("--C", type=int, default=None, help="initial channels (default: the paper's training "
                                                            "preset for the dataset)")
    parser.add_argument("--N", type=int, default=None, help="cells per block / stage (default: the preset's)")
    parser.add_argument("--task", choices=("ptb", "wt2"), default="ptb",
                        help="recurrent genotypes: the language model at the paper's size for PTB or WikiText-2")
    parser.add_argument("--latency-table", default=None, metavar="FILE",
                        help="also print the latency the table (gdas latency build) predicts for the network; the "
                             "network is the one the table was built for (C, N, input, classes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=main)


def input_shape(args: argparse.Namespace) -> Shape:
    """(channels, side, classes): the dataset's, with --channels, --image-size, --num-classes in its place."""
    check_data_source(args)
    if args.num_classes is not None and args.num_classes < 1:
        raise GdasError(f"--num-classes must be at least 1, got {args.num_classes}")
    given = (args.channels, args.image_size, args.num_classes)
    channels, size, classes = (g if g is not None else d for g, d in zip(given, dataset_shape(args.dataset)))
    return channels, size, classes


def _image_text(info: dict[str, Any], own_shape: bool) -> str:
    size = info["input_size"]
    sized = f"C={info['C']}, N={info['N']}, " if "C" in info else ""  # a module of your own has no C, N
    if "params_aux_M" in info:
        aux = f" without the auxiliary head ({info['params_aux_M']:.2f} M with it)"
    else:
        aux = " (no auxiliary head: the input is too small for it)" if info.get("auxiliary") is False else ""
    shape = f"{info['channels']}x{size}x{size} images, {info['num_classes']} classes"
    where = (f"on {shape} ({sized}layout of {info['dataset']})" if own_shape else
             f"on {info['dataset']} ({sized}{shape})")
    return (f"{info['name']} {where}\n"
            f"  params:    {info['params_M']:.2f} M{aux}\n"
            f"  mult-adds: {info['mult_adds_M']:.1f} M per image")


def _lm_text(info: dict[str, Any]) -> str:
    return (f"{info['name']} language model on {info['task']} ({info['vocab']} words, embedding = hidden = "
            f"{info['nhid']}, tied decoder)\n  params:    {info['params_M']:.2f} M")


def _table_size(args: argparse.Namespace, table: LatencyTable) -> None:
    """The network the table was built for fills the size options left out; a size given otherwise is refused."""
    C, N = table.size
    channels, side, classes = table.shape
    built = {"--C": (args.C, C), "--N": (args.N, N)}
    if args.dataset is not None or any(v is not None for v in (args.channels, args.image_size, args.num_classes)):
        args.dataset = args.dataset or "cifar10"
        mine = input_shape(args)
        built["the input"] = (shape_text(mine), shape_text(table.shape))
    for what, (given, value) in built.items():
        if given is not None and given != value:
            raise GdasError(f"the latency table {table.path} was built for {what} {value}, not {given}: drop "
                            "--dataset, --C, --N and the shape options, or build a table for that network with "
                            "gdas latency build")
    args.C, args.N, args.channels, args.image_size, args.num_classes = C, N, channels, side, classes
    args.dataset = args.dataset or table.network.get("dataset", "cifar10")


def _latency(table: LatencyTable, space: SearchSpace, genotype: Any) -> dict[str, Any]:
    """The table's prediction for the genotype (`main` has checked the table's space)."""
    assert space.choices is not None
    choices = space.choices(genotype)
    return {"latency_ms": table.predict_ms(choices), "latency_ops_ms": table.ops_ms(choices),
            "latency_fixed_ms": table.constant_ms, "latency_table": table.describe()}


def main(args: argparse.Namespace) -> int:
    genotype = load_genotype(args.genotype)
    space = space_of(genotype)
    table = load_table(args.latency_table) if args.latency_table is not None else None
    if table is not None:
        table.check_space(space)
        _table_size(args, table)
    args.dataset = args.dataset or "cifar10"
    if space.info is None:
        raise GdasError(f"gdas info does not size {space.name} genotypes; pass a genotype of another space")
    own_shape = any(v is not None for v in (args.channels, args.image_size, args.num_classes))
    if space.data == "lm":
        if own_shape:
            raise GdasError("--num-classes, --image-size and --channels size image networks; drop them for a "
                            "recurrent genotype (--task picks its language model)")
        info = space.info(genotype, args.task)
    else:
        C, N = final_size(space.name, args.dataset, getattr(genotype, "fixed_reduction", False))
        C = args.C if args.C is not None else C
        N = args.N if args.N is not None else N
        if C < 1 or N < 1 or (space.name == "darts" and (C < 2 or C % 2)):
            raise GdasError(f"--C must be a positive (for DARTS cells even) number and --N at least 1, "
                            f"got C={C}, N={N}")
        shape = input_shape(args)
        if space.check_input is not None:
            space.check_input(shape[1], False)  # the auxiliary head is left out where it does not fit
        info = space.info(genotype, args.dataset, C, N, shape=shape)
    info = {"name": args.genotype, **info, "genotype": str(genotype)}
    if table is not None:
        info.update(_latency(table, space, genotype))
    info = {k: round(v, 4) if isinstance(v, float) else v for k, v in info.items()}
    if args.json:
        print(json.dumps(info))
    elif space.data == "lm":
        print(_lm_text(info))
    else:
        print(_image_text(info, own_shape))
    if table is not None and not args.json:
        print(f"  latency:   {info['latency_ms']:.3f} ms predicted ({info['latency_fixed_ms']:.3f} fixed part and "
              f"overhead + {info['latency_ops_ms']:.3f} ops: their entries x {table.ops_scale:.3f}) on "
              f"{table.device_text()}")
    return 0
