"""How far `--sampler gdas-noaccel` leaves W from `--sampler gdas` on the same samples: W steps only, one run.

Both searches start from the same weights and draw the same architectures on the same batches (seeded); only
the W step runs (A steps change A differently by design, and then the draws would differ). Prints, per space
and after each step: the largest absolute difference of the supernet's weights (the largest weight, for
scale), the largest relative difference of its batch-norm running statistics, and how many weight tensors
the no-acceleration step moved where GDAS's did not. For comparison, the same for GDAS against GDAS started
from weights one rounding step (1 ulp) apart.

The cause is rounding (the ablation sums every op's output, zero for the unsampled ones, in another order),
which the next steps amplify as they amplify any 1-ulp change. (Before the ablation ran its unsampled ops on
detached inputs, an NB201 draw with `none` on every path through a cell gave the layers before it zero
gradients that weight decay and momentum acted on, where GDAS gives them none.)

    python scripts/noaccel_parity.py [--steps 4] [--preset smoke] [--batch 16] [--size 32] [--seed 0]
"""
from __future__ import annotations

import argparse
import dataclasses

import torch
import torch.nn.functional as F

from gdas.configs.search import SEARCH_PRESETS
from gdas.search import SearchTask
from gdas.spaces import get_space


class SeededBatches:
    """The data side of both searches: the same random batch at step s of either (a new one every step)."""

    in_channels, n_stats = 3, 1

    def __init__(self, num_classes: int, batch: int, size: int) -> None:
        self.num_classes, self.batch, self.size = num_classes, batch, size

    def loss(self, model, archs, phase, step):
        g = torch.Generator().manual_seed(1000 * step + (phase == "a"))
        x = torch.randn(self.batch, 3, self.size, self.size, generator=g)
        y = torch.randint(0, self.num_classes, (self.batch,), generator=g)
        loss = F.cross_entropy(model(x, archs), y)
        return loss, loss.detach().view(1)


def gaps(a: torch.nn.Module, b: torch.nn.Module) -> str:
    weights = max((x - y).abs().max().item() for x, y in zip(a.parameters(), b.parameters()))
    largest = max(x.abs().max().item() for x in a.parameters())
    stats = max(((x - y).abs().max() / x.abs().max().clamp_min(1e-12)).item()
                for x, y in zip(a.buffers(), b.buffers()) if x.is_floating_point())
    alone = sum(x.grad is None and y.grad is not None for x, y in zip(a.parameters(), b.parameters()))
    return f"{weights:.1e} ({largest:.2f}), {stats:.1e}, {alone}"


def compare(space: str, preset: str, other: str, args: argparse.Namespace) -> None:
    """W steps of GDAS and of `other` ("gdas-noaccel", or "gdas" from weights 1 ulp apart), side by side."""
    tasks = []
    for sampler in ("gdas", "gdas-noaccel" if other == "gdas-noaccel" else "gdas"):
        cfg = dataclasses.replace(SEARCH_PRESETS[preset], sampler=sampler, seed=args.seed, device="cpu")
        data = SeededBatches(10, args.batch, args.size)
        tasks.append(SearchTask(cfg, get_space(space), data, torch.device("cpu"), show_progress=False))
    gdas, twin = tasks
    twin.model.load_state_dict(gdas.model.state_dict())
    if other != "gdas-noaccel":
        with torch.no_grad():
            for p in twin.model.parameters():
                p.copy_(torch.nextafter(p, torch.full_like(p, float("inf"))))
    print(f"{space} ({preset}, C={cfg.C}, N={cfg.N}, batch {args.batch}, {args.size}x{args.size}), gdas vs "
          f"{other}: after W step s: max |W difference| (largest |W|), BN statistics' relative difference, "
          "weight tensors only the second stepped")
    for step in range(args.steps):
        gdas.w_step(step, cfg.tau_max)
        twin.w_step(step, cfg.tau_max)
        print(f"  {step + 1}: {gaps(gdas.model, twin.model)}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--preset", default="smoke", help="search preset of the darts space (nb201: nb201-PRESET)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)  # rounding depends on how a reduction is split over threads
    for space, preset in (("darts", args.preset), ("nb201", f"nb201-{args.preset}")):
        for other in ("gdas-noaccel", "gdas, 1 ulp apart"):
            compare(space, preset, other, args)


if __name__ == "__main__":
    main()
