"""Device, precision and thread settings shared by every task, and the environment record of a run."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import sys
from pathlib import Path
from typing import Any, Optional, TypeVar

import torch

import gdas
from gdas.configs.base import check, check_choice

AMP_MODES = ("none", "bf16")
TRACKING_BACKENDS = ("mlflow",)
C = TypeVar("C")


def validate_runtime(device: str, amp: str, threads: Optional[int]) -> None:
    check(device in ("auto", "cpu", "cuda") or device.startswith("cuda:"),
          f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    check_choice(amp, AMP_MODES, "--amp")
    check(threads is None or threads >= 1, f"--threads must be at least 1, got {threads}")


def validate_tracking(backend: Optional[str], uri: Optional[str]) -> None:
    """`--tracking BACKEND [--tracking-uri URI]`: a known backend, and a URI only with a backend."""
    check(backend is None or backend in TRACKING_BACKENDS,
          f"--tracking {backend!r} is not one of: {', '.join(TRACKING_BACKENDS)}")
    check(uri is None or backend is not None,
          f"--tracking-uri {uri} needs --tracking {TRACKING_BACKENDS[0]}; add it or drop --tracking-uri")


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when available; asking for CUDA without it is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    check(device.type != "cuda" or torch.cuda.is_available(),
          f"--device {name} asked for CUDA but torch.cuda.is_available() is False; use --device cpu")
    return device


def setup_runtime(device: torch.device, threads: Optional[int]) -> None:
    if threads is not None:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def auto_channels_last(device: torch.device) -> bool:
    """The `auto` memory format: channels_last where it was measured to help (docs/performance.md).

    On the CPU oneDNN's NHWC kernels about halve a search or training step. On CUDA nothing has been
    measured yet, so CUDA keeps the contiguous (NCHW) format it always had.
    """
    return device.type == "cpu"


def with_channels_last(cfg: C, device: torch.device) -> C:
    """`cfg` with its `channels_last` resolved (None is `auto`), so config.json records the choice made."""
    if getattr(cfg, "channels_last") is not None:
        return cfg
    return dataclasses.replace(cfg, channels_last=auto_channels_last(device))  # type: ignore[type-var]


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked; a no-op otherwise (CPU runs stay in float32)."""
    if amp == "bf16" and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for `device_type` (the fused recurrent loop runs in float32 only)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


def version_text() -> str:
    """`gdas --version`: the package, the torch it runs on and the device `--device auto` would pick."""
    device = resolve_device("auto")
    where = f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"
    return f"gdas {gdas.__version__} (torch {torch.__version__}, device {where})"


def environment(device: torch.device) -> dict[str, Any]:
    """What a run ran on: written next to its results."""
    env: dict[str, Any] = {
        "gdas": gdas.__version__, "torch": torch.__version__, "python": sys.version.split()[0],
        "platform": platform.platform(), "device": str(device), "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    """Versions, device, CPU model and load: recorded with every measurement."""
    info = environment(device)
    info.update(cpu_model=cpu_model(), cpu_count=os.cpu_count(), load_avg_1m=round(os.getloadavg()[0], 2))
    if device.type == "cuda":
        info["cudnn"] = torch.backends.cudnn.version()
    return info
