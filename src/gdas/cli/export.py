"""`gdas export`: write a trained network (best.pt, else checkpoint.pt) as ONNX or TorchScript."""

from __future__ import annotations

import argparse
from pathlib import Path

from gdas.export import FORMATS, export_run
from gdas.latency.timing import CLOCKS, Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export a trained network as ONNX or TorchScript",
                            description="Rebuild the network of a `gdas train` run from best.pt (else "
                                        "checkpoint.pt) and write it for inference: eval mode, logits only, "
                                        "dynamic batch size (ONNX).")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run directory of `gdas train`")
    parser.add_argument("--format", choices=list(FORMATS), default="onnx", help="default: onnx")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output file (default: RUN_DIR/{FORMATS['onnx']} or RUN_DIR/{FORMATS['torchscript']})")
    parser.add_argument("--no-latency", action="store_true",
                        help="do not time the exported model (by default FILE.json records its median latency in "
                             "its runtime on this CPU: ONNX Runtime for onnx, torch.jit for torchscript)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the timing (default: torch's)")
    parser.add_argument("--batch", type=int, default=1, help="images per call of the timing (default: 1)")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall (default) or cpu: the process's CPU time, with --threads 1 (docs/latency.md)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    settings = None if args.no_latency else Settings.here(threads=args.threads, batch=args.batch, clock=args.clock)
    if settings is not None:
        settings.check()  # before anything is written
    path, meta = export_run(args.run_dir, args.format, args.out, latency=settings)
    print(path)
    print(f"{path}.json: input shape and normalisation")
    if settings is not None:
        meta = meta["latency"]
        print(f"latency: {meta['ms']:.3f} ms in {meta['runtime']} (batch {args.batch}, {meta['threads']} threads, "
              f"{args.clock} clock)" if "ms" in meta else f"latency: not measured ({meta['error']})")
    return 0
