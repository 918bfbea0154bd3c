"""Timing one inference call as a deployment runs it: the settings (runtime, device, threads, batch, dtype,
memory format), a call per runtime (torch eager, TorchScript, ONNX Runtime) and a median that is stable."""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn

from gdas.configs.runtime import auto_channels_last, machine_info, resolve_device
from gdas.errors import GdasError

RUNTIMES = ("torch", "onnxruntime")
# What a latency is read from: the wall clock (a deployment's latency), or the process's CPU time, which other
# processes on a shared machine do not inflate (the wall time of an idle machine, with one thread).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
ORT_EXTRA = "pip install 'gdas-nas[latency]'"  # the extra that installs ONNX Runtime (and onnx, to export)


@dataclass(frozen=True)
class Settings:
    """How a latency is measured: what a table records and `latency check` repeats."""

    runtime: str = "torch"
    device: str = "cpu"  # cpu, cuda or cuda:N (resolved: never "auto")
    threads: int = 1
    batch: int = 1
    dtype: str = "float32"
    channels_last: bool = True  # torch runtime: the NHWC memory format (ONNX Runtime takes NCHW arrays)
    clock: str = "wall"

    @property
    def memory_format(self) -> str:
        if self.runtime == "onnxruntime":
            return "NCHW (ONNX Runtime)"
        return "channels_last (NHWC)" if self.channels_last else "contiguous (NCHW)"

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "memory_format": self.memory_format}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Settings":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def here(cls, runtime: str = "torch", device: str = "cpu", threads: Optional[int] = None, batch: int = 1,
             dtype: str = "float32", channels_last: Optional[bool] = None, clock: str = "wall") -> "Settings":
        """The settings as this machine will use them: the device resolved, torch's threads unless given (0 is
        left for `check` to refuse), the memory format auto (None: channels_last on the CPU, contiguous on CUDA)
        and channels_last for torch only."""
        resolved = resolve_device(device)
        last = auto_channels_last(resolved) if channels_last is None else channels_last
        return cls(runtime=runtime, device=str(resolved), batch=batch, dtype=dtype, clock=clock,
                   threads=torch.get_num_threads() if threads is None else threads,
                   channels_last=last and runtime == "torch")

    def check(self) -> None:
        """One line for settings this machine cannot measure with."""
        if self.runtime not in RUNTIMES:
            raise GdasError(f"--runtime {self.runtime!r} is not one of: {', '.join(RUNTIMES)}")
        if self.batch < 1 or self.threads < 1:
            raise GdasError(f"--batch and --threads must be at least 1, got {self.batch} and {self.threads}")
        if self.dtype not in DTYPES:
            raise GdasError(f"--dtype {self.dtype!r} is not one of: {', '.join(DTYPES)}")
        if self.clock not in CLOCKS:
            raise GdasError(f"--clock {self.clock!r} is not one of: {', '.join(CLOCKS)}")
        if self.clock == "cpu" and (self.threads != 1 or self.device != "cpu"):
            raise GdasError("--clock cpu reads the process's CPU time, a latency only for one CPU thread; add "
                            "--threads 1 --device cpu or use --clock wall")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise GdasError(f"the measurements are on {self.device}, but torch.cuda.is_available() is False on "
                            "this machine; measure with --device cpu or on the machine that has the GPU")
        if self.runtime == "onnxruntime":
            onnxruntime()
            if self.dtype != "float32":
                raise GdasError("ONNX Runtime timings are of float32 models; drop --dtype or use --runtime torch")
        elif self.dtype == "float16" and not self.device.startswith("cuda"):
            raise GdasError("--dtype float16 is a CUDA format; on the CPU use float32 or bfloat16")


def onnxruntime() -> Any:
    """The onnxruntime module, or one line naming the extra that installs it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise GdasError(f"--runtime onnxruntime needs ONNX Runtime, which is not installed: {ORT_EXTRA}") from None
    return ort


def versions(settings: Settings) -> dict[str, Any]:
    """The machine and the libraries a measurement ran on."""
    device = torch.device(settings.device)
    info = machine_info(device)
    if settings.runtime == "onnxruntime":
        info["onnxruntime"] = onnxruntime().__version__
    info["threads"] = settings.threads
    return info


@contextlib.contextmanager
def threads(settings: Settings) -> Iterator[None]:
    """torch's intra-op threads set to the measurement's for its duration."""
    before = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def example(input_shape: tuple[int, ...], settings: Settings, seed: int = 0) -> torch.Tensor:
    """A random float32 batch of `settings.batch` inputs of `input_shape` on the CPU."""
    return torch.randn(settings.batch, *input_shape, generator=torch.Generator().manual_seed(seed))


Call = Callable[[], Any]


def torch_call(module: nn.Module, input_shape: tuple[int, ...], settings: Settings) -> Call:
    """One eager (or TorchScript) forward of `module` in eval mode on a batch, in the settings' device, dtype and
    memory format; run it under `torch.inference_mode()`."""
    device = torch.device(settings.device)
    dtype = DTYPES[settings.dtype]
    fmt = torch.channels_last if settings.channels_last and len(input_shape) == 3 else torch.contiguous_format
    module = module.eval().to(device=device, dtype=dtype)
    if fmt is torch.channels_last:
        module = module.to(memory_format=fmt)
    x = example(input_shape, settings).to(device=device, dtype=dtype).contiguous(memory_format=fmt)
    return lambda: module(x)


def ort_call(onnx: bytes, input_shape: tuple[int, ...], settings: Settings, input_name: str = "images") -> Call:
    """One run of an ONNX model in an ONNX Runtime session (all graph optimisations, the settings' threads;
    CUDA's execution provider for a cuda device)."""
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CUDAExecutionProvider"] if settings.device.startswith("cuda") else ["CPUExecutionProvider"]
    if providers[0] not in ort.get_available_providers():
        raise GdasError(f"this ONNX Runtime has no {providers[0]}; install onnxruntime-gpu or measure on the CPU")
    session = ort.InferenceSession(onnx, options, providers=providers)
    feed = {input_name: example(input_shape, settings).numpy()}
    return lambda: session.run(None, feed)


@dataclass(frozen=True)
class Timing:
    """The median of one call's wall time, the samples it is taken over and whether it settled."""

    ms: float
    samples: int
    iqr_ms: float  # interquartile range of the samples
    stable: bool  # the median of the second half of the samples was within the tolerance of the whole's


def median_ms(call: Call, device: str = "cpu", *, min_samples: int = 21, max_samples: int = 300,
              tolerance: float = 0.02, max_s: float = 3.0, warmup_s: float = 0.05, block_ms: float = 1.0,
              clock: str = "wall") -> Timing:
    """The median wall time (ms) of `call`, after a warm-up (at least 5 calls and `warmup_s`; on CUDA cudnn's
    autotuning happens there).

    On the CPU a sample is a block of calls lasting at least `block_ms`, divided by its calls (the timer's
    resolution matters for calls of microseconds); on CUDA each call is one sample, synchronised. Samples are
    taken until there are `min_samples` and the median of the second half is within `tolerance` of the median
    of all of them, or `max_samples` or `max_s` is reached (then `stable` is False). `clock` names the clock
    of the samples (`CLOCKS`); the warm-up and `max_s` go by the wall clock.
    """
    read = CLOCKS[clock]
    cuda = device.startswith("cuda")
    sync = (lambda: torch.cuda.synchronize(torch.device(device))) if cuda else (lambda: None)
    with torch.inference_mode():
        wall = time.perf_counter
        began, calls = wall(), 0
        while calls < 5 or wall() - began < warmup_s:
            call()
            calls += 1
        sync()
        start = read()  # the warm-up's first calls are slow (kernel selection): time a few settled ones
        for _ in range(3):
            call()
        sync()
        per_call = (read() - start) / 3
        block = 1 if cuda else max(1, int(block_ms / 1000 / max(per_call, 1e-9)))
        samples: list[float] = []
        stable = False
        began = wall()
        while len(samples) < max_samples:
            start = read()
            for _ in range(block):
                call()
            sync()
            samples.append((read() - start) * 1000 / block)
            if len(samples) >= min_samples:
                whole = statistics.median(samples)
                late = statistics.median(samples[len(samples) // 2:])
                if abs(late - whole) <= tolerance * whole:
                    stable = True
                    break
            if wall() - began > max_s:
                break
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    return Timing(statistics.median(samples), len(samples), q[2] - q[0], stable)


def module_ms(module: nn.Module, input_shape: tuple[int, ...], settings: Settings,
              to_onnx: Optional[Callable[[nn.Module, torch.Tensor], bytes]] = None, **timing: Any) -> Timing:
    """The median latency of `module` on a batch of `input_shape` under `settings`: eager torch, or (runtime
    onnxruntime) the ONNX model `to_onnx(module, example)` gives, in an ONNX Runtime session."""
    with threads(settings):
        if settings.runtime == "onnxruntime":
            if to_onnx is None:
                raise ValueError("timing in ONNX Runtime needs to_onnx, the exporter")
            call = ort_call(to_onnx(module.eval(), example(input_shape, settings)), input_shape, settings)
        else:
            call = torch_call(module, input_shape, settings)
        return median_ms(call, settings.device, clock=settings.clock, **timing)
