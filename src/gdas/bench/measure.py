"""Performance measurements: GDAS vs child vs DARTS steps, peak memory, augmentation and epoch throughput."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

import gdas
from gdas.configs import base as cfgbase
from gdas.configs.runtime import autocast, machine_info, resolve_device, setup_runtime, with_channels_last
from gdas.configs.bench import BenchConfig
from gdas.configs.search import SearchConfig
from gdas.data.augment import BatchAugment
from gdas.data.images import load_image_dataset
from gdas.errors import GdasError
from gdas.engine.loop import optimizer_step
from gdas.export import load_trained
from gdas.latency.networks import measure as latency
from gdas.latency.timing import Settings, versions
from gdas.data.search import ImageSearchData, load_search_data, loss_and_correct, split_indices
from gdas.search import SearchTask, weight_optimizer
from gdas.spaces import get_space

KINDS = ("gdas", "child", "darts", "arch")  # W step of GDAS / of the static child / of DARTS; A step of GDAS
NUM_CLASSES = 10  # CIFAR size: 32x32x3 images, 10 classes


# ---------------------------------------------------------------- machine and timing helpers

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Measurement:
    ms: float  # wall time
    cpu_ms: float  # CPU time of this process (all threads): less sensitive to other load on the machine
    peak_mb: Optional[float]  # CUDA: peak allocated above what was allocated before the call; None on CPU


def measure(fn: Callable[[], Any], device: torch.device) -> Measurement:
    cuda = device.type == "cuda"
    _sync(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    began, cpu_began = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    ms, cpu_ms = (time.perf_counter() - began) * 1000, (time.process_time() - cpu_began) * 1000
    return Measurement(ms, cpu_ms, (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20 if cuda else None)


class FixedBatches(ImageSearchData):
    """The search's own data side, but every W / A step reads one fixed, already augmented batch."""

    def fix(self) -> "FixedBatches":
        self.fixed = {"w": self.batch(self.d_t.to(self.device)), "a": self.batch(self.d_v.to(self.device))}
        return self

    def loss(self, model: torch.nn.Module, archs: list, phase: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batch_loss(model, archs, *self.fixed[phase])


def build_task(cfg: SearchConfig, device: torch.device, split: Optional[tuple] = None) -> SearchTask:
    """A search task on synthetic CIFAR-sized data: exactly the code `gdas search` runs."""
    data = load_image_dataset("synthetic", synthetic_train=cfg.synthetic_train, synthetic_test=2,
                              synthetic_classes=NUM_CLASSES, seed=cfg.seed)
    split = split or split_indices(len(data.train_y), cfg.train_portion, cfg.seed)
    return SearchTask(cfg, get_space(cfg.space), FixedBatches(cfg, data, split, device).fix(), device,
                      show_progress=False)


class SearchBench:
    """The measured steps on fixed batches; `step(kind, i)` runs a step on architecture sample i.

    Samples i < warmup are warm-up draws; the others are the timed ones, the same Gumbel draws
    (generator seeds) for the GDAS W step, its static child and the A step.
    """

    def __init__(self, b: BenchConfig, device: torch.device, kinds: tuple[str, ...] = KINDS):
        self.b, self.device = b, device
        gdas_cfg = b.search_config("gdas")
        self.tau = gdas_cfg.tau_max
        self.seeds = [b.seed * 100_003 + 1_000 + i for i in range(b.warmup + b.samples)]
        self.space = get_space(b.space)
        self.gdas = build_task(gdas_cfg, device) if set(kinds) & {"gdas", "child", "arch"} else None
        self.darts = build_task(b.search_config("darts"), device) if "darts" in kinds else None
        task = self.gdas or self.darts
        assert task is not None
        self.x, self.y = task.data.fixed["w"]
        self.xv, self.yv = task.data.fixed["a"]
        self.children: dict[int, tuple[torch.nn.Module, torch.optim.Optimizer, list]] = {}
        if "child" in kinds:
            assert self.gdas is not None
            for i in range(b.warmup, len(self.seeds)):
                self.gdas.arch_gen.manual_seed(self.seeds[i])
                archs = self.gdas.model.sample_arch(self.tau, arch_grad=False, generator=self.gdas.arch_gen)
                assert self.space.child is not None
                child = self.space.child(self.gdas.model, archs)
                params = list(child.parameters())
                self.children[i] = (child, weight_optimizer(params, gdas_cfg, device), params)

    def release_grads(self) -> None:
        """Drop every gradient held between steps, so each measurement starts from the same state."""
        for task in (self.gdas, self.darts):
            if task is not None:
                task.w_opt.zero_grad(set_to_none=True)
                task.a_opt.zero_grad(set_to_none=True)
        for _, opt, _ in self.children.values():
            opt.zero_grad(set_to_none=True)

    def step(self, kind: str, i: int) -> None:
        if kind == "darts":
            assert self.darts is not None
            self.darts.w_step(0, self.tau)
            return
        assert self.gdas is not None
        if kind == "child":
            child, opt, params = self.children[i]
            with autocast(self.device, self.gdas.cfg.amp):
                logits = child(self.x)
            loss, _ = loss_and_correct(logits, self.y)
            optimizer_step(loss, opt, params, self.gdas.cfg.grad_clip, self.gdas.ctx)
            return
        self.gdas.arch_gen.manual_seed(self.seeds[i])  # the same draw as the child's
        if kind == "gdas":
            self.gdas.w_step(0, self.tau)
        elif kind == "arch":
            self.gdas.a_step(0, self.tau)
        else:
            raise ValueError(f"unknown kind {kind!r}")

    def timed(self, kind: str, i: int) -> Measurement:
        self.release_grads()
        return measure(lambda: self.step(kind, i), self.device)


# ---------------------------------------------------------------- gdas bench search

def bench_search(b: BenchConfig, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Median step times of GDAS W, child W, DARTS W and GDAS A on the same samples, and their peak memory."""
    b.validate()
    device = resolve_device(b.device)
    setup_runtime(device, b.threads)
    b = with_channels_last(b, device)  # the result records the format measured
    info = machine_info(device)
    memory: dict[str, float] = {}
    if device.type != "cuda" and b.memory:  # first, while this process holds nothing big
        log("peak memory: one child process per step kind")
        memory = {k: worker_memory(b, k) for k in KINDS}
    bench = SearchBench(b, device)
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    cpu_times: dict[str, list[float]] = {k: [] for k in KINDS}
    peaks: dict[str, list[float]] = {k: [] for k in KINDS}

    def record(kind: str, i: int) -> None:
        m = bench.timed(kind, i)
        times[kind].append(m.ms)
        cpu_times[kind].append(m.cpu_ms)
        if m.peak_mb is not None:
            peaks[kind].append(m.peak_mb)

    for i in range(b.warmup):
        bench.step("gdas", i)
        bench.step("darts", i)
    timed = range(b.warmup, b.warmup + b.samples)
    for n, i in enumerate(timed):  # interleaved, so that load changes hit every kind alike
        bench.step("gdas", i)  # the first step on a sample creates its ops' optimizer state: untimed
        record("gdas", i)
        bench.step("child", i)
        record("child", i)
        record("darts", i)
        log(f"sample {n + 1}/{b.samples}: gdas {times['gdas'][-1]:.1f} ms, child {times['child'][-1]:.1f} ms, "
            f"darts {times['darts'][-1]:.1f} ms")
    for i in range(b.warmup):
        bench.step("arch", i)
    for i in timed:
        record("arch", i)
    del bench
    result: dict[str, Any] = {f"{k}_step_ms": round(statistics.median(times[k]), 3) for k in KINDS}
    result["gdas_over_child"] = round(result["gdas_step_ms"] / result["child_step_ms"], 4)
    result["darts_over_gdas"] = round(result["darts_step_ms"] / result["gdas_step_ms"], 4)
    result["iteration_ms"] = round(result["gdas_step_ms"] + result["arch_step_ms"], 3)
    if device.type == "cuda":
        memory = {k: max(peaks[k]) for k in KINDS}
    for k, mb in memory.items():
        result[f"{k}_peak_mb"] = round(mb, 2)
    if memory:
        result["gdas_over_darts_memory"] = round(memory["gdas"] / memory["darts"], 4)
    result["memory_method"] = ("torch.cuda.max_memory_allocated above the allocation before the step"
                               if device.type == "cuda" else
                               "peak RSS of a separate process per kind, above its RSS after model build"
                               if memory else "not measured")
    result["samples_ms"] = {k: [round(t, 3) for t in times[k]] for k in KINDS}
    result["cpu_time_ms"] = {k: round(statistics.median(cpu_times[k]), 3) for k in KINDS}
    info["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    result["machine"] = info
    result["config"] = dataclasses.asdict(b)
    result["config_search"] = cfgbase.to_json(b.search_config("gdas"))
    return result


# ---------------------------------------------------------------- peak memory on the CPU (child processes)

def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_bytes(field: str) -> Optional[int]:
    """VmRSS (now) or VmHWM (peak since the last reset) from /proc/self/status; None where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _peak_rss_bytes() -> int:
    peak = _rss_bytes("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # lifetime peak: includes the build
    return peak if sys.platform == "darwin" else peak * 1024


def memory_worker(b: BenchConfig, kind: str) -> dict[str, Any]:
    """Runs in its own process: peak RSS of `kind`'s steps above the RSS after imports and model build."""
    device = torch.device("cpu")
    setup_runtime(device, b.threads)
    bench = SearchBench(b, device, kinds=(kind,))
    gc.collect()
    base = _rss_bytes("VmRSS") if _reset_peak_rss() else None
    base = _peak_rss_bytes() if base is None else base  # no reset: the build's peak is the baseline
    indices = list(range(b.warmup, b.warmup + b.samples))
    for i in indices[:2] if kind == "darts" else indices:  # DARTS runs every op whatever the sample
        bench.release_grads()
        bench.step(kind, i)
    return {"kind": kind, "peak_mb": (_peak_rss_bytes() - base) / 2 ** 20}


def worker_memory(b: BenchConfig, kind: str) -> float:
    package_root = str(Path(gdas.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "gdas", "bench", "_worker", "--kind", kind,
           "--config", json.dumps(dataclasses.asdict(b))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise GdasError(f"the memory measurement of {kind} failed ({last}); rerun with --no-memory to skip it")
    return float(json.loads(lines[-1])["peak_mb"])


# ---------------------------------------------------------------- gdas bench data

def bench_data(b: BenchConfig, cutout: int = 16) -> dict[str, Any]:
    """Images/s of the on-device augmentation (crop, flip, cutout, normalise) vs the GDAS W step's."""
    b.validate()
    device = resolve_device(b.device)
    setup_runtime(device, b.threads)
    b = with_channels_last(b, device)  # the result records the format measured
    info = machine_info(device)
    bench = SearchBench(b, device, kinds=("gdas",))
    task = bench.gdas
    assert task is not None
    data = task.data
    images = data.data.train_x[data.d_t.to(device)]
    augment = BatchAugment(data.data.mean, data.data.std, crop_padding=4, flip=True, cutout=cutout,
                           channels_last=data.augment.channels_last)
    generator = torch.Generator(device=device).manual_seed(b.seed)
    reps = max(10, b.samples)
    for _ in range(3):
        augment(images, generator)
    augment_ms = statistics.median(measure(lambda: augment(images, generator), device).ms for _ in range(reps))
    for i in range(b.warmup):
        bench.step("gdas", i)
    step_ms = statistics.median(bench.timed("gdas", i).ms for i in range(b.warmup, b.warmup + b.samples))
    augment_ips, step_ips = b.batch / augment_ms * 1000, b.batch / step_ms * 1000
    return {"augment_ms": round(augment_ms, 3), "augment_images_per_s": round(augment_ips, 1),
            "w_step_ms": round(step_ms, 3), "w_step_images_per_s": round(step_ips, 1),
            "augment_over_step": round(augment_ips / step_ips, 2),
            "augment": {"crop_padding": 4, "flip": True, "cutout": cutout, "normalise": True},
            "machine": info, "config": dataclasses.asdict(b)}


# ---------------------------------------------------------------- gdas bench epoch

def bench_epoch(cfg: SearchConfig, warmup_steps: int = 5, time_steps: Optional[int] = None,
                show_progress: bool = False) -> dict[str, Any]:
    """Wall time of one real search epoch (no run directory) and the projected time of all epochs.

    `time_steps` times only the first that many iterations of the epoch and scales to the whole epoch.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    setup_runtime(device, cfg.threads)
    cfg = with_channels_last(cfg, device)
    info = machine_info(device)
    data = load_search_data(cfg)
    split = split_indices(len(data.train_y), cfg.train_portion, cfg.seed)
    steps = min(len(split[0]), len(split[1])) // cfg.batch_size
    steps = min(steps, cfg.steps_per_epoch or steps)
    timed = steps if time_steps is None else max(1, min(time_steps, steps))
    cfg = dataclasses.replace(cfg, steps_per_epoch=timed)
    task = SearchTask(cfg, get_space(cfg.space), ImageSearchData(cfg, data, split, device), device,
                      show_progress=show_progress)
    task.data.start_epoch(0)
    for _ in range(warmup_steps):  # cudnn autotuning and allocator warm-up, outside the timed epoch
        task.w_step(0, cfg.tau_max)
        task.a_step(0, cfg.tau_max)
    measured_s = measure(lambda: task.run_epoch(0), device).ms / 1000
    epoch_s = measured_s * steps / timed
    return {"epoch_s": round(epoch_s, 3), "steps_per_epoch": steps, "timed_steps": timed,
            "measured_s": round(measured_s, 3), "iteration_ms": round(1000 * measured_s / timed, 2),
            "images_per_s": round(2 * steps * cfg.batch_size / epoch_s, 1), "epochs": cfg.epochs,
            "projected_search_s": round(epoch_s * cfg.epochs, 1),
            "projected_search_h": round(epoch_s * cfg.epochs / 3600, 3), "warmup_steps": warmup_steps,
            "machine": info, "config": cfgbase.to_json(cfg)}


# ---------------------------------------------------------------- gdas bench network

def bench_network(run_dir: str | Path, settings: Settings) -> dict[str, Any]:
    """A trained network (`gdas train` RUN_DIR: best.pt, else checkpoint.pt) timed end to end for inference:
    eval mode, logits only, under `settings` (runtime, device, threads, batch, dtype, memory format, clock)."""
    settings.check()
    model, args = load_trained(run_dir)
    size = args["image_size"]
    timing = latency(model, (args["in_channels"], size, size), settings)
    return {"ms": round(timing.ms, 4), "images_per_s": round(settings.batch / timing.ms * 1000, 1),
            "samples": timing.samples, "iqr_ms": round(timing.iqr_ms, 4), "stable": timing.stable,
            "network": {k: args[k] for k in ("genotype", "dataset", "C", "N", "source")},
            "input": [settings.batch, args["in_channels"], size, size], "settings": settings.to_json(),
            "machine": {**versions(settings), "load_avg_1m_after": round(os.getloadavg()[0], 2)}}
