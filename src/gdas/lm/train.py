"""Training the language model of a recurrent genotype: randomised BPTT, NT-ASGD, best-by-validation, test."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from gdas.engine import distributed as dist
from gdas.configs.rnn import LMTrainConfig
from gdas.configs.runtime import resolve_device, setup_runtime
from gdas.genotypes import RecurrentGenotype, load_genotype_of, save_genotype
from gdas.engine.loop import fit, optimizer_step, resume, seed_everything
from gdas.engine.progress import ProgressBar
from gdas.lm.asgd import NTASGD
from gdas.lm.corpus import Corpus, batchify
from gdas.spaces.rnn.model import RNNModel, perplexity
from gdas.lm.data import lm_corpus, lm_run_dir
from gdas.lm.steps import TokenCursor, check_finite, evaluate, window_loss
from gdas.engine.rundir import BEST, GENOTYPE, METRICS, SUMMARY, RunDir
from gdas.spaces.rnn.space import build_network
from gdas.spaces.rnn.space import paper_lm_size  # noqa: F401 (imported from here too)

KIND = "train-lm"


def build_lm(cfg: LMTrainConfig, genotype: RecurrentGenotype, ntoken: int) -> RNNModel:
    return build_network(genotype, ntoken=ntoken, emsize=cfg.emsize, nhid=cfg.nhid, dropout=cfg.dropout,
                         dropouth=cfg.dropouth, dropoutx=cfg.dropoutx, dropouti=cfg.dropouti, dropoute=cfg.dropoute)


def recurrent_genotype(spec: str) -> RecurrentGenotype:
    return load_genotype_of(spec, "rnn", "a language model needs a recurrent one (e.g. GDAS_RNN, DARTS_V2_RNN or "
                                         "a search-rnn run directory)")


class LMTrainTask:
    """The language model, its NT-ASGD optimizer, cursors and the best validation so far; run by `loop.fit`."""

    epoch_files: tuple[str, ...] = ()

    def __init__(self, cfg: LMTrainConfig, genotype: RecurrentGenotype, corpus: Corpus, device: torch.device, *,
                 show_progress: bool = True):
        self.cfg, self.device, self.epochs = cfg, device, cfg.epochs
        self.ctx = dist.context()  # one process (checked before): all-reduce is a no-op
        self.genotype, self.show_progress = genotype, show_progress
        seed_everything(cfg.seed)
        self.model = build_lm(cfg, genotype, len(corpus.vocab)).to(device)
        self.params = list(self.model.parameters())
        self.opt = NTASGD(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay, nonmono=cfg.nonmono)
        self.cursor = TokenCursor(batchify(corpus.train, cfg.batch_size, device))
        self.valid_data = batchify(corpus.valid, cfg.eval_batch_size, device)
        self.test_data = batchify(corpus.test, cfg.test_batch_size, device)
        self.hidden = self.model.init_hidden(cfg.batch_size)
        self.window_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.best_valid_loss, self.best_epoch = math.inf, -1
        self._best_state: Optional[dict[str, torch.Tensor]] = None  # written to best.pt by after_epoch

    def train_step(self) -> tuple[torch.Tensor, int]:
        """One randomised BPTT window; the learning rate scales with its length (AWD-LSTM)."""
        cfg = self.cfg
        x, y, wrapped = self.cursor.next(cfg.bptt, self.window_gen, randomise=True)
        if wrapped:
            self.hidden = torch.zeros_like(self.hidden)
        return self.train_window(x, y)

    def train_window(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The update on one window (inputs, targets), continuing the hidden state (`gdas bench lm` times it)."""
        cfg = self.cfg
        group = self.opt.param_groups[0]
        group["lr"] = cfg.lr * x.size(0) / cfg.bptt
        nll, loss, hidden = window_loss(self.model, x, y, self.hidden, device=self.device, amp=cfg.amp,
                                        alpha=cfg.alpha, beta=cfg.beta)
        optimizer_step(loss, self.opt, self.params, cfg.grad_clip, self.ctx)  # type: ignore[arg-type]
        group["lr"] = cfg.lr
        self.hidden = hidden.detach()
        return nll.detach(), y.numel()

    def evaluate(self, data: torch.Tensor) -> tuple[float, int]:
        return evaluate(self.model, data, self.cfg.bptt, device=self.device, amp=self.cfg.amp)

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        self.model.train()
        steps = cfg.steps_per_epoch
        total = steps or self.cursor.windows_per_pass(cfg.bptt)  # randomised windows: an estimate
        began, shown, step, tokens = time.perf_counter(), 0, 0, 0
        summed = torch.zeros((), device=self.device)
        every = max(1, total // 25)
        with ProgressBar(total, f"train-lm {epoch + 1}/{cfg.epochs}", enabled=self.show_progress) as bar:
            while step < steps if steps else (step == 0 or not self.cursor.at_end):
                nll, n = self.train_step()
                summed += nll * n
                tokens += n
                step += 1
                if self.show_progress and step % every == 0:
                    bar.update(step - shown, ppl=perplexity(float(summed), tokens))
                    shown = step
        elapsed = time.perf_counter() - began
        train_nll = float(summed)
        check_finite(train_nll, epoch, "--lr")
        averaged = self.opt.averaging
        with self.opt.swap_averaged():  # once ASGD runs, evaluate (and keep) the averaged weights
            valid_nll, valid_tokens = self.evaluate(self.valid_data)
            valid_loss = valid_nll / valid_tokens
            if valid_loss < self.best_valid_loss:
                self.best_valid_loss, self.best_epoch = valid_loss, epoch
                self._best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        switched = self.opt.step_epoch(valid_loss, force=cfg.asgd_epoch is not None and epoch + 1 >= cfg.asgd_epoch)
        return {"lr": cfg.lr, "asgd": averaged, "switched_to_asgd": switched,
                "train_loss": train_nll / tokens, "train_ppl": perplexity(train_nll, tokens),
                "valid_loss": valid_loss, "valid_ppl": perplexity(valid_nll, valid_tokens),
                "best_valid_ppl": perplexity(self.best_valid_loss, 1) if self.best_epoch >= 0 else None,
                "tokens_per_s": tokens / elapsed}

    # -- run-directory hooks ---------------------------------------------------------------------
    def after_epoch(self, epoch: int, metrics: dict[str, Any], run: RunDir) -> None:
        if self._best_state is not None:
            run.save_checkpoint({"epoch": epoch, "task": {"model": self._best_state},
                                 "valid_ppl": metrics["valid_ppl"]}, name=BEST)
            self._best_state = None

    def finish(self, run: RunDir, wall_time_s: float) -> dict[str, Any]:
        if run.file(BEST).exists():  # the best validation weights (averaged ones once ASGD ran)
            self.model.load_state_dict(run.load_checkpoint(BEST, map_location=self.device)["task"]["model"])
        valid_nll, valid_tokens = self.evaluate(self.valid_data)
        test_nll, test_tokens = self.evaluate(self.test_data)
        history = run.read_jsonl(METRICS)
        switch = next((r["epoch"] for r in history if r.get("switched_to_asgd")), None)
        params = sum(p.numel() for p in self.model.parameters())
        summary = {"kind": KIND, "genotype": str(self.genotype), "genotype_json": self.genotype.to_json(),
                   "best_epoch": self.best_epoch, "valid_ppl": perplexity(valid_nll, valid_tokens),
                   "test_ppl": perplexity(test_nll, test_tokens), "asgd_from_epoch": switch,
                   "params": params, "params_M": round(params / 1e6, 2),
                   "wall_time_s": round(wall_time_s, 2), "device": str(self.device), "complete": True}
        run.write_json(SUMMARY, summary)
        return summary

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "pos": self.cursor.pos,
                "hidden": self.hidden, "window_gen": self.window_gen.get_state(),
                "best_valid_loss": self.best_valid_loss, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        hidden = state["hidden"].to(self.device)
        if hidden.shape != self.hidden.shape:
            raise ValueError(f"hidden state of shape {tuple(hidden.shape)}, expected {tuple(self.hidden.shape)}")
        self.hidden, self.cursor.pos = hidden, int(state["pos"])
        self.window_gen.set_state(state["window_gen"])
        self.best_valid_loss, self.best_epoch = float(state["best_valid_loss"]), int(state["best_epoch"])


def run_train_lm(cfg: LMTrainConfig, out: Path, *, resume_run: bool = False, log: Callable[[str], None] = print,
                 show_progress: bool = True) -> dict[str, Any]:
    """Train the language model of `cfg.genotype` in `out` (new, or continued from its last checkpoint)."""
    cfg.validate()
    device = resolve_device(cfg.device)
    setup_runtime(device, cfg.threads)
    corpus = lm_corpus(cfg, KIND)
    if resume_run:
        run = lm_run_dir(out, KIND, cfg, device, corpus.vocab, True)
        genotype = recurrent_genotype(str(run.file(GENOTYPE)))  # the one it started with
        task = LMTrainTask(cfg, genotype, corpus, device, show_progress=show_progress)
    else:
        genotype = recurrent_genotype(cfg.genotype)
        task = LMTrainTask(cfg, genotype, corpus, device, show_progress=show_progress)  # fails before the run dir
        run = lm_run_dir(out, KIND, cfg, device, corpus.vocab, False)
        save_genotype(genotype, run.file(GENOTYPE))
    start, wall = resume(task, run, map_location=device) if resume_run else (0, 0.0)
    log(f"train-lm {cfg.preset}: {genotype} on {cfg.corpus} ({len(corpus.vocab)} words) nhid={cfg.nhid} "
        f"epochs {start}..{cfg.epochs - 1} on {device} -> {run.path}")
    return fit(task, run, start_epoch=start, wall_time_s=wall, log=log)
