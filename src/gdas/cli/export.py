"""`gdas export`: write a trained network (best.pt, else checkpoint.pt) as ONNX or TorchScript."""

from __future__ import annotations

import argparse
from pathlib import Path

from gdas.export import FORMATS, export_run


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export a trained network as ONNX or TorchScript",
                            description="Rebuild the network of a `gdas train` run from best.pt (else "
                                        "checkpoint.pt) and write it for inference: eval mode, logits only, "
                                        "dynamic batch size (ONNX).")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run directory of `gdas train`")
    parser.add_argument("--format", choices=list(FORMATS), default="onnx", help="default: onnx")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output file (default: RUN_DIR/{FORMATS['onnx']} or RUN_DIR/{FORMATS['torchscript']})")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    path = export_run(args.run_dir, args.format, args.out)
    print(path)
    print(f"{path}.json: input shape and normalisation")
    return 0
