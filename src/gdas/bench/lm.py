"""`gdas bench lm`: the language model's training step and the recurrent search's W step against nn.LSTM's."""

from __future__ import annotations

import dataclasses
import functools
import os
import statistics
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from gdas.bench.measure import machine_info, measure
from gdas.configs.bench import LMBenchConfig
from gdas.configs.rnn import LM_TRAIN_PRESETS, RNN_SEARCH_PRESETS
from gdas.configs.runtime import resolve_device, setup_runtime
from gdas.engine.distributed import Context
from gdas.engine.loop import optimizer_step, seed_everything
from gdas.lm.corpus import Corpus, Vocabulary, get_batch
from gdas.lm.search import LMSearchData
from gdas.lm.train import LMTrainTask, recurrent_genotype
from gdas.search import SearchTask
from gdas.spaces import get_space

STEPS = ("train", "search")  # train-lm's update; search-rnn's W step
PRESET = "shakespeare"  # the sizes measured unless the config gives others


class LSTMLanguageModel(nn.Module):
    """The plain reference: embedding, one nn.LSTM layer, tied decoder, log-softmax; no dropout."""

    def __init__(self, ntoken: int, nhid: int):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, nhid)
        self.rnn = nn.LSTM(nhid, nhid)
        self.decoder = nn.Linear(nhid, ntoken)
        self.decoder.weight = self.encoder.weight

    def forward(self, x: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, hidden = self.rnn(self.encoder(x), hidden)
        return F.log_softmax(self.decoder(out), dim=-1), hidden


class LSTMStep:
    """An SGD update of the nn.LSTM language model on a fixed window, gradient clipped as ours."""

    def __init__(self, ntoken: int, nhid: int, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                 grad_clip: float):
        self.grad_clip = grad_clip
        self.model = LSTMLanguageModel(ntoken, nhid).to(device)
        self.params = list(self.model.parameters())
        self.opt = torch.optim.SGD(self.params, lr=1.0)
        self.x, self.y = x, y
        zeros = torch.zeros(1, x.size(1), nhid, device=device)
        self.hidden = (zeros, zeros.clone())

    def __call__(self) -> None:
        log_probs, hidden = self.model(self.x, self.hidden)
        loss = F.nll_loss(log_probs.view(-1, log_probs.size(-1)), self.y.view(-1))
        optimizer_step(loss, self.opt, self.params, self.grad_clip, Context())
        self.hidden = (hidden[0].detach(), hidden[1].detach())


def random_corpus(vocab: int, tokens: int, generator: torch.Generator) -> Corpus:
    """Uniformly drawn word ids over a vocabulary of `vocab` words (timing does not depend on the text)."""
    words = Vocabulary(f"w{i}" for i in range(vocab - 2))
    draw = lambda n: torch.randint(len(words), (n,), generator=generator)  # noqa: E731
    return Corpus(words, draw(tokens), draw(tokens), draw(tokens))


def _sizes(b: LMBenchConfig, preset: Any) -> dict[str, Any]:
    nhid = preset.nhid if b.nhid is None else b.nhid
    return {"emsize": nhid, "nhid": nhid, "batch_size": preset.batch_size if b.batch is None else b.batch,
            "bptt": preset.bptt if b.bptt is None else b.bptt}


def _steps(b: LMBenchConfig, device: torch.device) -> dict[str, tuple[Callable[[], Any], Callable[[], None], dict]]:
    """Per measured step: (ours, nn.LSTM's, sizes), both on windows of the same shape."""
    gen = torch.Generator().manual_seed(b.seed)
    runs: dict[str, tuple[Callable[[], Any], Callable[[], None], dict]] = {}
    for name, preset in (("train", LM_TRAIN_PRESETS[PRESET]), ("search", RNN_SEARCH_PRESETS[PRESET])):
        sizes = _sizes(b, preset)
        batch, bptt = sizes["batch_size"], sizes["bptt"]
        widest = max(batch, preset.eval_batch_size, getattr(preset, "test_batch_size", 1))  # every split batchifies
        corpus = random_corpus(b.vocab, max(batch * (bptt * (b.warmup + b.samples + 1) + 2), 4 * widest), gen)
        cfg = dataclasses.replace(preset, corpus="synthetic", device=b.device, threads=b.threads, seed=b.seed,
                                  **sizes)
        seed_everything(b.seed)
        if name == "train":
            task = LMTrainTask(cfg, recurrent_genotype(b.genotype), corpus, device, show_progress=False)
            model, stream = task.model, task.cursor.data
        else:
            search = SearchTask(cfg, get_space("rnn"), LMSearchData(cfg, corpus, device), device, show_progress=False)
            model, stream = search.model, search.data.cursors["w"].data
        model.fused = not b.autograd
        x, y = get_batch(stream, 0, bptt)
        ours: Callable[[], Any] = (functools.partial(task.train_window, x, y) if name == "train"
                                   else functools.partial(search.w_step, 0, search.cfg.tau_max))
        runs[name] = (ours, LSTMStep(len(corpus.vocab), sizes["nhid"], x, y, device, cfg.grad_clip), sizes)
    return runs


def bench_lm(b: LMBenchConfig, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Median wall and CPU time of each step and of nn.LSTM's on the same window shape, interleaved."""
    b.validate()
    device = resolve_device(b.device)
    setup_runtime(device, b.threads)
    info = machine_info(device)
    runs = _steps(b, device)
    kinds = [(name, who) for name in runs for who in ("ours", "lstm")]
    wall: dict[tuple[str, str], list[float]] = {k: [] for k in kinds}
    cpu: dict[tuple[str, str], list[float]] = {k: [] for k in kinds}
    for i in range(b.warmup + b.samples):
        for name, who in kinds:  # interleaved, so that load changes hit every kind alike
            fn = runs[name][0] if who == "ours" else runs[name][1]
            m = measure(fn, device)
            if i >= b.warmup:
                wall[name, who].append(m.ms)
                cpu[name, who].append(m.cpu_ms)
        if i >= b.warmup:
            log(f"sample {i - b.warmup + 1}/{b.samples}: " + ", ".join(
                f"{name} {wall[name, 'ours'][-1]:.1f} ms (lstm {wall[name, 'lstm'][-1]:.1f})" for name in runs))
    result: dict[str, Any] = {}
    for name, (_, _, sizes) in runs.items():
        tokens = sizes["batch_size"] * sizes["bptt"]
        ms, lstm_ms = statistics.median(wall[name, "ours"]), statistics.median(wall[name, "lstm"])
        cpu_ms, lstm_cpu_ms = statistics.median(cpu[name, "ours"]), statistics.median(cpu[name, "lstm"])
        result[name] = {"step_ms": round(ms, 3), "lstm_step_ms": round(lstm_ms, 3),
                        "tokens_per_s": round(1000 * tokens / ms, 1),
                        "lstm_tokens_per_s": round(1000 * tokens / lstm_ms, 1),
                        "slowdown_vs_lstm": round(ms / lstm_ms, 4),
                        "cpu_ms": round(cpu_ms, 3), "lstm_cpu_ms": round(lstm_cpu_ms, 3),
                        "slowdown_vs_lstm_cpu": round(cpu_ms / lstm_cpu_ms, 4),
                        "tokens": tokens, "vocab": b.vocab, **sizes,
                        "samples_ms": [round(t, 3) for t in wall[name, "ours"]],
                        "lstm_samples_ms": [round(t, 3) for t in wall[name, "lstm"]]}
    info["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    result["machine"] = info
    result["config"] = dataclasses.asdict(b)
    return result
