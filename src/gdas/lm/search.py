"""The token side of a recurrent-cell search: train / valid windows, hidden states, perplexities, the derived cell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gdas.lm.corpus import Corpus, batchify
from gdas.lm.data import lm_corpus, lm_run_dir
from gdas.lm.steps import TokenCursor, check_finite, evaluate, window_loss
from gdas.engine.rundir import RunDir
from gdas.sampler import CellArch
from gdas.spaces.rnn.genotype import NONE_INDEX, RNN_PRIMITIVES, RecurrentGenotype
from gdas.spaces.rnn.model import perplexity

KIND = "search-rnn"


def genotype_indices(genotype: RecurrentGenotype) -> list[int]:
    """The search cell's per-edge function indices that run exactly `genotype`'s cell (other edges `none`)."""
    indices = []
    for node, pairs in enumerate(genotype.recurrent, start=1):
        chosen = {src: RNN_PRIMITIVES.index(name) for name, src in pairs}
        indices.extend(chosen.get(j, NONE_INDEX) for j in range(node))
    return indices


class LMSearchData:
    """Train (W) and valid (A) windows of one recurrent search (see `search.SearchData`): sums of NLL and tokens."""

    kind = KIND
    n_stats = 2
    in_channels = 0
    unit = "tokens"

    def __init__(self, cfg: Any, corpus: Corpus, device: torch.device):
        self.cfg, self.device, self.corpus = cfg, device, corpus
        self.num_classes = len(corpus.vocab)  # the supernet's vocabulary
        self.cursors = {"w": TokenCursor(batchify(corpus.train, cfg.batch_size, device)),
                        "a": TokenCursor(batchify(corpus.valid, cfg.batch_size, device))}  # A reads D_V
        self.eval_data = batchify(corpus.valid, cfg.eval_batch_size, device)
        self.hidden = {"w": torch.zeros(cfg.batch_size, cfg.nhid, device=device),
                       "a": torch.zeros(cfg.batch_size, cfg.nhid, device=device)}

    def describe(self) -> str:
        return (f"{self.cfg.corpus} ({len(self.corpus.vocab)} words, {self.corpus.train.numel()} train tokens) "
                f"nhid={self.cfg.nhid}")

    @property
    def steps_per_epoch(self) -> int:
        return self.cfg.steps_per_epoch or self.cursors["w"].windows_per_pass(self.cfg.bptt)

    def start_epoch(self, epoch: int) -> int:
        return self.steps_per_epoch

    def loss(self, model: torch.nn.Module, archs: list, phase: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """W: NLL + AR/TAR of the next training window; A: NLL of the next validation window."""
        cfg = self.cfg
        x, y, wrapped = self.cursors[phase].next(cfg.bptt)
        hidden = torch.zeros_like(self.hidden[phase]) if wrapped else self.hidden[phase]  # a new pass: zero state
        reg = phase == "w"
        nll, loss, hidden = window_loss(model, x, y, hidden, device=self.device, amp=cfg.amp,
                                        alpha=cfg.alpha if reg else 0.0, beta=cfg.beta if reg else 0.0, archs=archs)
        self.hidden[phase] = hidden.detach()
        return loss if reg else nll, torch.stack([nll.detach() * y.numel(), nll.new_tensor(float(y.numel()))])

    def progress(self, sums: list[float], steps_done: int) -> dict[str, float]:
        return {"ppl": perplexity(sums[0], int(sums[1]))}

    def epoch_metrics(self, task: Any, epoch: int, totals: list[float], steps: int, elapsed: float
                      ) -> dict[str, Any]:
        train_nll, train_tokens, valid_nll, valid_tokens = totals[0], int(totals[1]), totals[2], int(totals[3])
        check_finite(train_nll, epoch, "--w-lr")
        derived_nll, derived_tokens = evaluate(task.model, self.eval_data, self.cfg.bptt, device=self.device,
                                               amp=self.cfg.amp, norm_batch_stats=True,
                                               archs=[CellArch(None, genotype_indices(task.genotype()))])
        return {"train_loss": train_nll / train_tokens, "train_ppl": perplexity(train_nll, train_tokens),
                "valid_loss": valid_nll / valid_tokens, "valid_ppl": perplexity(valid_nll, valid_tokens),
                "derived_valid_ppl": perplexity(derived_nll, derived_tokens),
                "tokens_per_s": (train_tokens + valid_tokens) / elapsed}

    def summary(self, last: dict[str, Any]) -> dict[str, Any]:
        return {"final_train_ppl": last.get("train_ppl"), "final_valid_ppl": last.get("valid_ppl"),
                "final_derived_valid_ppl": last.get("derived_valid_ppl")}

    def state_dict(self) -> dict[str, Any]:
        return {"train_pos": self.cursors["w"].pos, "valid_pos": self.cursors["a"].pos,
                "hidden": self.hidden["w"], "hidden_v": self.hidden["a"]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursors["w"].pos, self.cursors["a"].pos = int(state["train_pos"]), int(state["valid_pos"])
        for phase, name in (("w", "hidden"), ("a", "hidden_v")):
            value = state[name].to(self.device)
            if value.shape != self.hidden[phase].shape:
                raise ValueError(f"{name} of shape {tuple(value.shape)}, expected {tuple(self.hidden[phase].shape)}")
            self.hidden[phase] = value


def open_lm_search(cfg: Any, out: Path, device: torch.device, resume_run: bool) -> tuple[LMSearchData, RunDir]:
    """The corpus and run directory of a recurrent search (sizes are checked before a new run folder exists)."""
    corpus = lm_corpus(cfg, KIND)
    data = LMSearchData(cfg, corpus, device)
    data.cfg = cfg = cfg.fit_a_lr(data.steps_per_epoch)  # a_lr_steps: the A steps are known now
    return data, lm_run_dir(out, KIND, cfg, device, corpus.vocab, resume_run)
