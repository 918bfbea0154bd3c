"""Side by side: one GDAS search iteration (W step + A step) of gdas vs the authors' reference implementation.

Not part of the package and not a dependency: run it from a separate virtual environment that holds torch,
gdas's sources and the reference package installed without its dependencies:

    python3 -m venv ref-venv && ref-venv/bin/pip install torch==2.13.0 numpy && ref-venv/bin/pip install --no-deps xautodl
    ref-venv/bin/python scripts/compare_reference.py --steps 20 [--ours-channels-last --ref-channels-last]

Matching cell count: gdas at N=2 builds 3N+2 = 8 cells (n n R n n R n n). The reference's NASNet search
network builds 3N cells (N per stage, the reduction cell first in stages 2 and 3); at N=3 it is
n n n R n n R n n, and deleting its cell 2 (a normal C-channel cell whose successor expects exactly what
cell 1 outputs) gives the same 8-cell layout with identical channel counts. Both networks run the SAME
architecture sample at every step: gdas's seeded Gumbel draw is mapped to the reference's op order and
forced by setting its logits to 100 * one-hot (its Gumbel argmax then picks that op with probability
1 - O(e^-100)). The reference is stepped as its search script does: gradients of W and A in both halves.
Prints per-sample times on stderr and one JSON object of medians on stdout.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"), help="gdas sources")
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--ours-channels-last", action="store_true")
p.add_argument("--ref-channels-last", action="store_true")
args = p.parse_args()
sys.path.insert(0, args.src)
torch.set_num_threads(args.threads)

from gdas.bench.measure import BenchConfig, SearchBench
from gdas.spaces.darts.ops import PRIMITIVES
from xautodl.models.cell_searchs import NASNetworkGDAS
from xautodl.models.cell_operations import SearchSpaceNames

cpu = torch.device("cpu")
b = BenchConfig(device="cpu", C=16, N=2, batch=64, samples=args.steps, warmup=args.warmup, threads=args.threads,
                channels_last=args.ours_channels_last)
ours = SearchBench(b, cpu, kinds=("gdas", "arch"))
task = ours.gdas

space = SearchSpaceNames["darts"]
torch.manual_seed(0)
ref = NASNetworkGDAS(16, 3, 4, 4, 3, 10, space, False, True)  # C, N, steps, multiplier, stem mult, classes
del ref.cells[2]
assert len(ref.cells) == len(task.model.cells) == 8
for rc, oc in zip(ref.cells, task.model.cells):
    assert rc.reduction == oc.reduction and rc.preprocess1.op[1].in_channels == oc.pre1[1].in_channels
if args.ref_channels_last:
    ref = ref.to(memory_format=torch.channels_last)
ref.set_tau(task.cfg.tau_max)
cfg = task.cfg
w_opt = torch.optim.SGD(ref.get_weights(), lr=cfg.w_lr, momentum=cfg.w_momentum, weight_decay=cfg.w_weight_decay)
a_opt = torch.optim.Adam(ref.get_alphas(), lr=cfg.a_lr, betas=(cfg.a_beta1, cfg.a_beta2), weight_decay=cfg.a_weight_decay)
fmt = torch.channels_last if args.ref_channels_last else torch.contiguous_format
x, y = ours.x.contiguous(memory_format=fmt), ours.y
xv, yv = ours.xv.contiguous(memory_format=fmt), ours.yv
NAMES = {"sep_conv_3x3": "dua_sepc_3x3", "sep_conv_5x5": "dua_sepc_5x5", "dil_conv_3x3": "dil_sepc_3x3",
         "dil_conv_5x5": "dil_sepc_5x5"}
column = [space.index(NAMES.get(name, name)) for name in PRIMITIVES]


def our_sample(i):
    task.arch_gen.manual_seed(ours.seeds[i])
    return task.model.sample_arch(ours.tau, arch_grad=False, generator=task.arch_gen)


def force(archs):
    with torch.no_grad():
        for cell, arch in zip(task.model.cells, archs):
            logits = ref.arch_reduce_parameters if cell.reduction else ref.arch_normal_parameters
            logits.zero_()
            for e, k in enumerate(arch.indices):
                logits[e, column[k]] = 100.0


def ref_w():  # xautodl's search loop, W half
    w_opt.zero_grad()
    _, logits = ref(x)
    F.cross_entropy(logits, y).backward()
    torch.nn.utils.clip_grad_norm_(ref.parameters(), 5)
    w_opt.step()


def ref_a():  # A half
    a_opt.zero_grad()
    _, logits = ref(xv)
    F.cross_entropy(logits, yv).backward()
    a_opt.step()


def timed(fn):
    began = time.perf_counter(); fn(); return (time.perf_counter() - began) * 1000


t = {k: [] for k in ("ours_w", "ours_a", "ref_w", "ref_a")}
for i in range(args.warmup + args.steps):
    w_arch = our_sample(i)
    rows = {"ours_w": timed(lambda: ours.step("gdas", i))}
    a_arch = our_sample(i)  # what our A step (same seed, A unchanged by the W step) draws
    rows["ours_a"] = timed(lambda: ours.step("arch", i))
    force(w_arch); rows["ref_w"] = timed(ref_w)
    force(a_arch); rows["ref_a"] = timed(ref_a)
    if i >= args.warmup:
        for k, v in rows.items():
            t[k].append(v)
    print(i, {k: round(v) for k, v in rows.items()}, file=sys.stderr)

med = {k: statistics.median(v) for k, v in t.items()}
ours_iter = [w + a for w, a in zip(t["ours_w"], t["ours_a"])]
ref_iter = [w + a for w, a in zip(t["ref_w"], t["ref_a"])]
out = {"ours_w_ms": med["ours_w"], "ours_a_ms": med["ours_a"], "ref_w_ms": med["ref_w"], "ref_a_ms": med["ref_a"],
       "ours_iteration_ms": statistics.median(ours_iter), "ref_iteration_ms": statistics.median(ref_iter),
       "ratio_median": statistics.median(ref_iter) / statistics.median(ours_iter),
       "ratio_of_paired_medians": statistics.median(r / o for r, o in zip(ref_iter, ours_iter)),
       "steps": args.steps, "threads": args.threads, "ours_channels_last": args.ours_channels_last,
       "ref_channels_last": args.ref_channels_last, "torch": torch.__version__}
print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}))
