"""Exporting a trained network for inference: TorchScript (trace) or ONNX, logits only, eval mode."""

from __future__ import annotations

import inspect
import io
import json
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from gdas.errors import GdasError
from gdas.latency.timing import Settings, median_ms, ort_call, threads, torch_call, versions
from gdas.engine.rundir import BEST, CHECKPOINT, CLASSES, RunDir, atomic_write_bytes, read_json
from gdas.networks import load_network, split_output

FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
ONNX_OPSET = 17


class LogitsOnly(nn.Module):
    """The trained network in eval mode returning only the logits (no auxiliary output)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return split_output(self.model(images))[0]


def load_trained(run_dir: str | Path) -> tuple[LogitsOnly, dict[str, Any]]:
    """The network of a training run (best.pt, else checkpoint.pt) on the CPU, and its network arguments."""
    run = RunDir(run_dir, writer=False)
    if not run.path.is_dir():
        raise GdasError(f"{run.path} is not a directory; pass the run directory of a `gdas train` run")
    name = BEST if run.file(BEST).exists() else CHECKPOINT
    if not run.file(name).exists():
        raise GdasError(f"{run.path} has neither {BEST} nor {CHECKPOINT}; is it a `gdas train` run directory?")
    state = run.load_checkpoint(name)["task"]
    if not isinstance(state, dict) or "network" not in state or "genotype" not in state:
        raise GdasError(f"{run.file(name)} is not from a `gdas train` run (no network description); "
                        "export the run directory of a training run")
    try:
        model, genotype, args = load_network(state)
    except (KeyError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise GdasError(f"{run.file(name)} does not rebuild into its network ({first})") from None
    return LogitsOnly(model), {**args, "genotype": str(genotype), "source": name}


def example_input(args: dict[str, Any], batch: int = 2) -> torch.Tensor:
    size = args["image_size"]
    return torch.randn(batch, args["in_channels"], size, size, generator=torch.Generator().manual_seed(0))


def torchscript_bytes(model: nn.Module, example: torch.Tensor) -> bytes:
    """A traced module, checked against the eager model on a batch of another size."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer notices
        traced = torch.jit.trace(model, example, check_trace=False)
        probe = torch.cat([example, example[:1]])
        if not torch.allclose(traced(probe), model(probe), atol=1e-4):
            raise GdasError("the traced network does not reproduce the eager one; export it with --format onnx")
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def onnx_bytes(model: nn.Module, example: torch.Tensor) -> bytes:
    """ONNX through the TorchScript-based exporter (needs only the onnx package), dynamic batch size."""
    try:
        import onnx  # noqa: F401  (the exporter's own dependency: a clear message instead of its error)
    except ImportError:
        raise GdasError("ONNX export needs the onnx package: pip install 'gdas-nas[export]'") from None
    buffer = io.BytesIO()
    # torch >= 2.5 has a second (dynamo) exporter behind `dynamo=`; older versions only the TorchScript one.
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buffer, **legacy, opset_version=ONNX_OPSET,
                          input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    return buffer.getvalue()


def exported_latency(data: bytes, fmt: str, input_shape: tuple[int, int, int], settings: Settings) -> dict[str, Any]:
    """The exported model's median latency in its runtime (ONNX: ONNX Runtime; TorchScript: torch.jit on the
    CPU, NCHW input), or why it was not measured (ONNX Runtime not installed)."""
    if fmt == "onnx":
        settings = replace(settings, runtime="onnxruntime", channels_last=False)
        runtime = "onnxruntime"
    else:
        settings = replace(settings, runtime="torch", channels_last=False)
        runtime = "torchscript"
    try:
        settings.check()
        with threads(settings):
            if fmt == "onnx":
                call = ort_call(data, input_shape, settings)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.jit's deprecation notice
                    call = torch_call(torch.jit.load(io.BytesIO(data)), input_shape, settings)
            timing = median_ms(call, settings.device, clock=settings.clock)
    except GdasError as exc:
        print(f"gdas: warning: the exported model's latency was not measured: {exc}", file=sys.stderr)
        return {"runtime": runtime, "error": str(exc)}
    return {"ms": round(timing.ms, 4), "stable": timing.stable, **settings.to_json(), "runtime": runtime,
            "machine": versions(settings)}


def export_run(run_dir: str | Path, fmt: str, out: Optional[str | Path] = None,
               latency: Optional[Settings] = None) -> tuple[Path, dict[str, Any]]:
    """Write the run's network as `fmt` (atomic) plus FILE.json with its input shape, normalisation and class
    names, and with `latency` (how to measure: threads, batch, clock) the exported model's measured latency;
    return FILE and what FILE.json holds."""
    if fmt not in FORMATS:
        raise GdasError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    model, args = load_trained(run_dir)
    example = example_input(args)
    data = onnx_bytes(model, example) if fmt == "onnx" else torchscript_bytes(model, example)
    path = Path(out) if out is not None else Path(run_dir) / FORMATS[fmt]
    atomic_write_bytes(path, data)
    size = args["image_size"]
    meta = {"format": fmt, "input": ["batch", args["in_channels"], size, size],
            "output": ["batch", args["num_classes"]],
            "normalize": {"mean": args["mean"], "std": args["std"], "note": "on pixels scaled to [0, 1]"},
            **{k: args[k] for k in ("dataset", "C", "N", "genotype", "source")}}
    classes = Path(run_dir) / CLASSES
    if classes.is_file():  # the names of the output logits (runs from before classes.json have none)
        meta["classes"] = read_json(classes)
    if latency is not None:
        meta["latency"] = exported_latency(data, fmt, (args["in_channels"], size, size), latency)
    atomic_write_bytes(path.with_name(path.name + ".json"), (json.dumps(meta, indent=2) + "\n").encode())
    return path, meta
