"""GDAS on the DARTS recurrent space: alternating W (train windows) and A (valid windows) steps, derivation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from gdas.engine import distributed as dist
from gdas.configs import base as cfgbase
from gdas.configs.rnn import RNNSearchConfig
from gdas.configs.runtime import environment, resolve_device, setup_runtime
from gdas.errors import GdasError
from gdas.genotypes import RNN_PRIMITIVES, RecurrentGenotype, save_genotype
from gdas.engine.loop import fit, frozen, optimizer_step, resume, seed_everything
from gdas.engine.progress import ProgressBar
from gdas.spaces.rnn.cells import NONE_INDEX
from gdas.lm.corpus import Corpus, Vocabulary, batchify
from gdas.lm.data import check_run_vocab, load_lm_corpus, save_vocab
from gdas.spaces.rnn.model import RNNSearchModel, perplexity
from gdas.lm.steps import TokenCursor, check_finite, evaluate, window_loss
from gdas.engine.rundir import RunDir
from gdas.sampler import tau_at

KIND = "search-rnn"
ALPHAS = "alphas.jsonl"
GENOTYPES = "genotypes.jsonl"


def genotype_indices(genotype: RecurrentGenotype) -> list[int]:
    """The search cell's per-edge function indices that run exactly `genotype`'s cell (other edges `none`)."""
    indices = []
    for node, pairs in enumerate(genotype.recurrent, start=1):
        chosen = {src: RNN_PRIMITIVES.index(name) for name, src in pairs}
        indices.extend(chosen.get(j, NONE_INDEX) for j in range(node))
    return indices


class RNNSearchTask:
    """Search model, optimizers, token cursors and generators of one recurrent search; run by `loop.fit`."""

    epoch_files = (ALPHAS, GENOTYPES)

    def __init__(self, cfg: RNNSearchConfig, corpus: Corpus, device: torch.device, *, show_progress: bool = True):
        self.cfg, self.device, self.epochs = cfg, device, cfg.epochs
        self.ctx = dist.context()  # one process (checked before): all-reduce is a no-op
        self.show_progress = show_progress
        seed_everything(cfg.seed)
        self.ntoken = len(corpus.vocab)
        self.model = RNNSearchModel(self.ntoken, cfg.emsize, cfg.nhid, cfg.dropout, cfg.dropouth, cfg.dropoutx,
                                    cfg.dropouti, cfg.dropoute, steps=cfg.steps).to(device)
        self.w_params = self.model.weight_parameters()
        self.a_params = self.model.arch_parameters()
        self.w_opt = torch.optim.SGD(self.w_params, lr=cfg.w_lr, weight_decay=cfg.w_weight_decay)
        self.a_opt = torch.optim.Adam(self.a_params, lr=cfg.a_lr, betas=(cfg.a_beta1, cfg.a_beta2),
                                      weight_decay=cfg.a_weight_decay)
        self.train_cursor = TokenCursor(batchify(corpus.train, cfg.batch_size, device))
        self.valid_cursor = TokenCursor(batchify(corpus.valid, cfg.batch_size, device))  # D_V of the A step
        self.eval_data = batchify(corpus.valid, cfg.eval_batch_size, device)
        self.hidden = self.model.init_hidden(cfg.batch_size)
        self.hidden_v = self.model.init_hidden(cfg.batch_size)
        self.arch_gen = torch.Generator(device=device).manual_seed(cfg.seed + 3)

    def _loss(self, cursor: TokenCursor, hidden: torch.Tensor, tau: float, *, arch_grad: bool, reg: bool):
        x, y, wrapped = cursor.next(self.cfg.bptt)
        if wrapped:  # a new pass over the split starts from a zero state
            hidden = torch.zeros_like(hidden)
        arch = self.model.sample_arch(tau, self.cfg.sampler, self.arch_gen, arch_grad=arch_grad)
        nll, loss, hidden = window_loss(self.model, x, y, hidden, device=self.device, amp=self.cfg.amp,
                                        alpha=self.cfg.alpha if reg else 0.0, beta=self.cfg.beta if reg else 0.0,
                                        **arch)
        return nll, loss, hidden.detach(), y.numel()

    def w_step(self, tau: float) -> tuple[torch.Tensor, int]:
        """W on the next training window; the sampled cell runs unscaled, so A gets no gradient."""
        nll, loss, self.hidden, n = self._loss(self.train_cursor, self.hidden, tau, arch_grad=False, reg=True)
        optimizer_step(loss, self.w_opt, self.w_params, self.cfg.grad_clip, self.ctx)
        return nll.detach(), n

    def a_step(self, tau: float) -> tuple[torch.Tensor, int]:
        """A on the next validation window (straight-through gradients); W gets no gradient."""
        with frozen(self.w_params):
            nll, _, self.hidden_v, n = self._loss(self.valid_cursor, self.hidden_v, tau, arch_grad=True, reg=False)
        self.a_opt.zero_grad(set_to_none=True)
        nll.backward(inputs=self.a_params)
        self.a_opt.step()
        return nll.detach(), n

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        tau = tau_at(epoch, cfg.epochs, cfg.tau_max, cfg.tau_min)
        self.model.train()
        steps = cfg.steps_per_epoch or self.train_cursor.windows_per_pass(cfg.bptt)
        sums = torch.zeros(2, device=self.device)  # summed train NLL, summed valid NLL
        tokens = [0, 0]
        began, shown = time.perf_counter(), 0
        every = max(1, steps // 25)  # reading the sums syncs the device: only a few times an epoch
        with ProgressBar(steps, f"search-rnn {epoch + 1}/{cfg.epochs}", enabled=self.show_progress) as bar:
            for step in range(steps):
                nll_t, n_t = self.w_step(tau)
                nll_v, n_v = self.a_step(tau)
                sums += torch.stack([nll_t * n_t, nll_v * n_v])
                tokens[0] += n_t
                tokens[1] += n_v
                if self.show_progress and ((step + 1) % every == 0 or step + 1 == steps):
                    bar.update(step + 1 - shown, ppl=perplexity(float(sums[0]), tokens[0]), tau=tau)
                    shown = step + 1
        elapsed = time.perf_counter() - began
        train_nll, valid_nll = sums.tolist()
        check_finite(train_nll, epoch, "--w-lr")
        derived_nll, derived_tokens = evaluate(self.model, self.eval_data, cfg.bptt, device=self.device,
                                               amp=cfg.amp, norm_batch_stats=True, weights=None,
                                               indices=genotype_indices(self.genotype()))
        return {"tau": tau, "lr": self.w_opt.param_groups[0]["lr"],
                "train_loss": train_nll / tokens[0], "train_ppl": perplexity(train_nll, tokens[0]),
                "valid_loss": valid_nll / tokens[1], "valid_ppl": perplexity(valid_nll, tokens[1]),
                "derived_valid_ppl": perplexity(derived_nll, derived_tokens),
                "tokens_per_s": sum(tokens) / elapsed}

    # -- run-directory hooks ---------------------------------------------------------------------
    def genotype(self) -> RecurrentGenotype:
        return self.model.genotype()

    def after_epoch(self, epoch: int, metrics: dict[str, Any], run: RunDir) -> None:
        probs = torch.softmax(self.model.arch.detach().float(), dim=-1).cpu().tolist()
        run.append_jsonl(ALPHAS, {"epoch": epoch, "tau": metrics["tau"], "ops": list(RNN_PRIMITIVES),
                                  "recurrent": probs})
        genotype = self.genotype()
        run.append_jsonl(GENOTYPES, {"epoch": epoch, "genotype": genotype.to_json(), "text": str(genotype)})

    def finish(self, run: RunDir, wall_time_s: float) -> dict[str, Any]:
        genotype = self.genotype()
        save_genotype(genotype, run.file("genotype.json"))
        last = run.read_jsonl("metrics.jsonl")[-1:] or [{}]
        summary = {"kind": KIND, "genotype": str(genotype), "genotype_json": genotype.to_json(),
                   "final_train_ppl": last[0].get("train_ppl"), "final_valid_ppl": last[0].get("valid_ppl"),
                   "final_derived_valid_ppl": last[0].get("derived_valid_ppl"),
                   "wall_time_s": round(wall_time_s, 2), "device": str(self.device),
                   "search_cost_device_hours": round(wall_time_s / 3600, 4), "complete": True}
        run.write_json("summary.json", summary)
        return summary

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(),
                "arch_gen": self.arch_gen.get_state(), "train_pos": self.train_cursor.pos,
                "valid_pos": self.valid_cursor.pos, "hidden": self.hidden, "hidden_v": self.hidden_v}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.arch_gen.set_state(state["arch_gen"])
        self.train_cursor.pos, self.valid_cursor.pos = int(state["train_pos"]), int(state["valid_pos"])
        for name in ("hidden", "hidden_v"):
            value = state[name].to(self.device)
            if value.shape != getattr(self, name).shape:
                raise ValueError(f"{name} of shape {tuple(value.shape)}, expected {tuple(getattr(self, name).shape)}")
            setattr(self, name, value)


def lm_corpus(cfg: Any, kind: str) -> Corpus:
    if dist.context().world_size > 1:
        raise GdasError(f"{kind} runs on one device; launch it without torchrun")
    return load_lm_corpus(cfg.corpus, cfg.data_dir, cfg.train_tokens, cfg.valid_tokens)


def lm_run_dir(out: Path, kind: str, cfg: Any, device: torch.device, vocab: Vocabulary, resume_run: bool
               ) -> RunDir:
    """The run directory, new (with vocab.json) or existing (whose vocabulary the corpus must reproduce)."""
    if resume_run:
        run, _ = RunDir.open_existing(out, kind)
        check_run_vocab(run, vocab)
        return run
    run = RunDir.create(out, kind, cfgbase.to_json(cfg), environment(device))
    save_vocab(run, vocab)
    return run


def run_rnn_search(cfg: RNNSearchConfig, out: Path, *, resume_run: bool = False,
                   log: Callable[[str], None] = print, show_progress: bool = True) -> dict[str, Any]:
    """One recurrent search run in `out` (new, or continued from its last checkpoint)."""
    cfg.validate()
    device = resolve_device(cfg.device)
    setup_runtime(device, cfg.threads)
    corpus = lm_corpus(cfg, KIND)
    task = RNNSearchTask(cfg, corpus, device, show_progress=show_progress)  # before the run dir: bad sizes fail here
    run = lm_run_dir(out, KIND, cfg, device, corpus.vocab, resume_run)
    start, wall = resume(task, run, map_location=device) if resume_run else (0, 0.0)
    log(f"search-rnn {cfg.preset}: {cfg.corpus} ({len(corpus.vocab)} words, {corpus.train.numel()} train tokens) "
        f"nhid={cfg.nhid} sampler={cfg.sampler} epochs {start}..{cfg.epochs - 1} on {device} -> {run.path}")
    return fit(task, run, start_epoch=start, wall_time_s=wall, log=log)
