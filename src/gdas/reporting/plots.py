"""PNG plots of runs (matplotlib Agg, no pyplot): A heatmaps and trajectories, entropy, parameter-free share, curves."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from gdas.errors import GdasError
from gdas.genotypes import genotype_from_json
from gdas.reporting.runview import RunView, edge_labels, epoch_of
from gdas.spaces import all_spaces, space_of
DPI = 80
Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]


@dataclass(frozen=True)
class Plot:
    """One rendered plot: its file stem under `<run>/plots/`, a caption and the PNG bytes."""

    name: str
    title: str
    png: bytes

    def html(self) -> str:
        """The plot as an inline HTML figure (the PNG as a data: URL), its title as the caption."""
        data = base64.b64encode(self.png).decode()
        title = html.escape(self.title, quote=True)
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{title}">'
                f"<figcaption>{title}</figcaption></figure>")


# -- numbers behind the plots ---------------------------------------------------------------------
def parameter_free_ops(ops: Sequence[str]) -> frozenset[str]:
    """The parameter-free ops of the space whose op list is `ops` (empty for an unknown list)."""
    for space in all_spaces().values():
        if tuple(ops) == space.ops:
            return space.param_free
    return frozenset()


def entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each distribution along the last axis."""
    return -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(-1)


def parameter_free_mass(probs: np.ndarray, ops: Sequence[str]) -> np.ndarray:
    """Probability of parameter-free ops, averaged over edges: (epochs, edges, ops) -> (epochs,)."""
    free = parameter_free_ops(ops)
    cols = [k for k, op in enumerate(ops) if op in free]
    return probs[..., cols].sum(-1).mean(-1)


def genotype_parameter_free_share(genotype_json: Mapping[str, Any]) -> dict[str, float]:
    """Per cell type, the fraction of a genotype's chosen ops that are parameter-free."""
    try:
        genotype = genotype_from_json(dict(genotype_json))
    except GdasError:  # a damaged record: nothing to plot for it
        return {}
    free = space_of(genotype).param_free
    return {cell: sum(op in free for op in chosen) / len(chosen)
            for cell, chosen in genotype.cell_ops().items() if chosen}


# -- figures ----------------------------------------------------------------------------------------
def _figure(width: float, height: float, *, left: float = 0.85, bottom: float = 0.55, right: float = 0.15,
            top: float = 0.35, wspace: float = 0.3, hspace: float = 0.45) -> Any:
    """A figure with fixed margins in inches (a layout engine would draw every figure twice)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise GdasError("plots need matplotlib, which is not installed; pip install matplotlib") from None
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wspace, hspace=hspace)
    return fig


def render(fig: Any, path: Optional[Path] = None) -> bytes:
    """The figure as PNG bytes, also written to `path` when given (an unwritable path is skipped)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    data = buffer.getvalue()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError:
            pass  # a read-only run directory still gets its report
    return data


def _op_style(ops: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One colour per op; parameter-free ops dashed, so a skip-connect takeover stands out."""
    free = parameter_free_ops(ops)
    colours = [f"C{k}" for k in range(10)]
    return {op: {"color": colours[k % 10], "linestyle": "--" if op in free else "-"} for k, op in enumerate(ops)}


def _epoch_axis(ax: Any) -> None:
    """Whole-number epoch ticks; a single epoch gets room on both sides."""
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    low, high = ax.get_xlim()
    if high - low < 1:
        ax.set_xlim((low + high) / 2 - 1, (low + high) / 2 + 1)
    ax.grid(alpha=0.3)


def heatmap(probs: np.ndarray, ops: Sequence[str], labels: Sequence[str], title: str) -> Any:
    """softmax(A) of one cell type (edges x ops), each cell annotated with its probability."""
    fig = _figure(1.8 + 0.75 * len(ops), 1.35 + 0.28 * len(labels), bottom=1.0, right=0.2)
    ax = fig.add_subplot()
    low, high = float(probs.min()), float(probs.max())
    image = ax.imshow(probs, cmap="viridis", vmin=low, vmax=max(high, low + 1e-6), aspect="auto")
    ax.set_xticks(range(len(ops)), ops, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("edge (input → node)")
    ax.set_title(title, fontsize=10)
    threshold = low + 0.6 * (high - low)
    for (i, k), value in np.ndenumerate(probs):
        ax.text(k, i, f"{value:.3f}", ha="center", va="center", fontsize=6.5,
                color="black" if value > threshold else "white")
    fig.colorbar(image, ax=ax, shrink=0.85, fraction=0.2, pad=0.03, label="probability (colour spans min..max)")
    return fig


def op_trajectory(epochs: Sequence[int], probs: np.ndarray, ops: Sequence[str], title: str) -> Any:
    """Each op's probability averaged over the edges, per epoch."""
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    mean = probs.mean(1)
    for k, (op, style) in enumerate(_op_style(ops).items()):
        ax.plot(epochs, mean[:, k], marker="o", markersize=2.5, label=op, **style)
    ax.axhline(1 / len(ops), color="grey", linewidth=0.8, linestyle=":", label="uniform")
    ax.set(xlabel="epoch", ylabel="mean probability over edges", title=title)
    ax.legend(fontsize=7, ncol=2, loc="best")
    _epoch_axis(ax)
    return fig


def edge_grid(epochs: Sequence[int], probs: np.ndarray, ops: Sequence[str], labels: Sequence[str],
              title: str) -> Any:
    """Small multiples: every edge's op probabilities over the epochs."""
    n = probs.shape[1]
    cols = min(n, math.ceil(math.sqrt(n)) + 1)
    rows = math.ceil(n / cols)
    fig = _figure(1.9 * cols, 1.4 * rows + 1.0, left=0.45, bottom=0.6, right=0.1, top=0.45, wspace=0.12,
                  hspace=0.4)
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    styles = _op_style(ops)
    for e, ax in enumerate(axes.flat):
        if e >= n:
            ax.set_axis_off()
            continue
        for k, (op, style) in enumerate(styles.items()):
            ax.plot(epochs, probs[:, e, k], linewidth=1.1, label=op, **style)
        ax.set_title(labels[e], fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_ylim(0, 1)
        _epoch_axis(ax)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(ops), 8), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig


def label_grid(epochs: Sequence[int], probs: Mapping[str, np.ndarray], candidates: Mapping[str, Sequence[str]],
               chosen: Mapping[str, Any], title: str) -> Any:
    """Small multiples for a module space: each label's candidate probabilities over the epochs (its own
    candidates, its own legend; the derived choice drawn thicker)."""
    labels = list(probs)
    n = len(labels)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = _figure(2.6 * cols, 1.9 * rows + 0.6, left=0.45, bottom=0.35, right=0.1, top=0.45, wspace=0.18,
                  hspace=0.65)
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_axis_off()
            continue
        label = labels[i]
        names = list(candidates.get(label, ()))
        for k in range(probs[label].shape[-1]):
            name = names[k] if k < len(names) else str(k)
            ax.plot(epochs, probs[label][:, 0, k], linewidth=2.2 if name == str(chosen.get(label)) else 1.0,
                    label=name)
        ax.set_title(f"{label} -> {chosen.get(label, '?')}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=5, ncol=2, loc="upper left", frameon=False)
        _epoch_axis(ax)
    fig.suptitle(title, fontsize=10)
    return fig


def entropy_plot(cells: Mapping[str, tuple[Sequence[int], np.ndarray]], n_ops: int) -> Any:
    """Per cell type: every edge's entropy over the epochs (thin) and their mean (bold)."""
    fig = _figure(4.2 * len(cells), 3.4)
    axes = fig.subplots(1, len(cells), squeeze=False)[0]
    for ax, (cell, (epochs, probs)) in zip(axes, cells.items()):
        values = entropy(probs)
        ax.plot(epochs, values, color="tab:blue", alpha=0.25, linewidth=0.8)
        ax.plot(epochs, values.mean(1), color="tab:blue", linewidth=2.2, marker="o", markersize=3, label="mean")
        ax.axhline(math.log(n_ops), color="grey", linestyle=":", linewidth=1, label=f"uniform (ln {n_ops})")
        ax.set(xlabel="epoch", ylabel="entropy (nats)", title=f"{cell}: entropy per edge", ylim=(0, None))
        ax.legend(fontsize=7)
        _epoch_axis(ax)
    return fig


def parameter_free_plot(mass: Series, share: Series, priors: tuple[float, float],
                        marks: Optional[Mapping[str, Sequence[int]]] = None) -> Any:
    """Parameter-free ops: probability mass in A (left) and share of the derived genotype's ops (right).

    `marks` {what: epochs} shows where the guards acted: "max-skip" (triangles: the derivation replaced
    skips), "stop-on-collapse" (the epoch that stopped the search) and "kept" (the genotype kept then).
    """
    marks = marks or {}
    fig = _figure(9.0, 3.4)
    left, right = fig.subplots(1, 2)
    for ax, series, what, prior in ((left, mass, "probability mass (mean over edges)", priors[0]),
                                    (right, share, "share of the derived genotype's ops", priors[1])):
        for cell, (xs, ys) in series.items():
            ax.plot(xs, ys, marker="o", markersize=3, label=cell)
        ax.axhline(prior, color="grey", linestyle=":", linewidth=1, label="uniform A")
        for what_, colour, style in (("stop-on-collapse", "tab:red", "--"), ("kept", "tab:green", ":")):
            for n, epoch in enumerate(marks.get(what_, ())):
                label = {"stop-on-collapse": "stopped: collapse", "kept": "genotype kept"}[what_]
                ax.axvline(epoch, color=colour, linestyle=style, linewidth=1.4, label=None if n else label)
        ax.set(xlabel="epoch", ylabel=what, ylim=(0, 1.02))
        ax.legend(fontsize=7)
        _epoch_axis(ax)
    acted = list(marks.get("max-skip", ()))
    if acted:
        right.plot(acted, [1.0] * len(acted), linestyle="none", marker="v", color="tab:orange",
                   label="max-skip replaced skips")
        right.legend(fontsize=7)
    left.set_title("parameter-free ops in A", fontsize=10)
    right.set_title("parameter-free ops in the genotype", fontsize=10)
    return fig


def lines(series: Series, title: str, ylabel: str, *, logy: bool = False,
          bold: Optional[str] = None) -> Any:
    """Curves over epochs, one per label (`bold`: the label drawn thicker, e.g. the kept seed)."""
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", markersize=2.5, label=label, linewidth=2.6 if label == bold else 1.3)
    values = [y for _, ys in series.values() for y in ys]
    if logy and values and min(values) > 0:
        from matplotlib.ticker import FuncFormatter, NullFormatter
        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)  # 0.1, 10, not 10^-1
        few_decades = math.log10(max(values) / min(values)) < 1.5
        ax.yaxis.set_minor_formatter(plain if few_decades else NullFormatter())
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.legend(fontsize=7)
    _epoch_axis(ax)
    return fig


# -- the plots of a run -----------------------------------------------------------------------------
# Metric groups drawn as curves: (name, title, y label, which metric keys, log scale).
CURVES: tuple[tuple[str, str, str, Callable[[str], bool], bool], ...] = (
    ("loss", "Loss", "cross-entropy", lambda k: k == "loss" or k.endswith("_loss"), False),
    ("accuracy", "Accuracy", "accuracy", lambda k: k == "acc" or k.endswith("_acc"), False),
    ("error", "Error", "error", lambda k: k.endswith("_err") or k.endswith("_error"), False),
    ("perplexity", "Perplexity", "perplexity", lambda k: "ppl" in k or "perplexity" in k, True),
    ("tau", "Gumbel-softmax temperature τ", "τ", lambda k: k == "tau", True),
    ("lr", "Learning rate", "learning rate", lambda k: k == "lr" or k.endswith("_lr"), False),
    ("throughput", "Throughput", "per second", lambda k: k.endswith("_per_s"), False),
    # --cost: the whole final network's expected cost under softmax(A) (what --cost-target counts), its searched
    # cells' part, and the derived genotype's whole network.
    ("cost", "Cost: expected (whole network, cells) and derived network", "millions (--cost)",
     lambda k: k in ("expected_network_cost", "expected_cost", "derived_cost"), False),
)


def curve_keys(keys: Sequence[str], group: str) -> list[str]:
    wanted = next(test for name, _, _, test, _ in CURVES if name == group)
    return [k for k in keys if wanted(k)]


def architecture_plots(run: RunView, out_dir: Optional[Path]) -> dict[str, Plot]:
    """Heatmaps, trajectories, entropy and parameter-free share of a search run's A."""
    plots: dict[str, Plot] = {}
    cells, ops = run.cell_probs(), run.ops()

    def add(name: str, title: str, fig: Any) -> None:
        plots[name] = Plot(name, title, render(fig, out_dir / f"{name}.png" if out_dir else None))

    candidates = run.candidates()
    if candidates:  # a module space: one distribution per label, each over its own candidates
        labelled = {label: probs for label, probs in cells.items() if label in candidates}
        chosen = getattr(run.genotype, "choices", {}) or {}
        epochs = run.alpha_epochs(next(iter(labelled))) if labelled else []
        if labelled:
            add("labels", "each label's candidate probabilities over epochs (the derived choice thicker)",
                label_grid(epochs, labelled, candidates, chosen, "softmax(A) per label"))
        return plots
    cells = {cell: probs for cell, probs in cells.items() if probs.shape[2] == len(ops)}
    if not cells:
        return plots

    recurrent = run.recurrent()
    for cell, probs in cells.items():
        epochs, labels = run.alpha_epochs(cell), edge_labels(probs.shape[1], recurrent)
        add(f"heatmap_{cell}", f"{cell} cell: softmax(A) after epoch {epochs[-1]}",
            heatmap(probs[-1], ops, labels, f"{cell} cell: softmax(A), epoch {epochs[-1]}"))
        add(f"trajectory_{cell}", f"{cell} cell: mean op probability over epochs",
            op_trajectory(epochs, probs, ops, f"{cell} cell: op probability, mean over edges"))
        add(f"edges_{cell}", f"{cell} cell: every edge's op probabilities over epochs",
            edge_grid(epochs, probs, ops, labels, f"{cell} cell: op probabilities per edge"))
    add("entropy", "entropy of each edge's distribution",
        entropy_plot({c: (run.alpha_epochs(c), p) for c, p in cells.items()}, len(ops)))
    mass = {c: (run.alpha_epochs(c), parameter_free_mass(p, ops).tolist()) for c, p in cells.items()}
    share: dict[str, tuple[list[int], list[float]]] = {}
    for i, record in enumerate(run.genotypes):
        if isinstance(record.get("genotype"), dict):
            for cell, value in genotype_parameter_free_share(record["genotype"]).items():
                share.setdefault(cell, ([], []))
                share[cell][0].append(epoch_of(record, i))
                share[cell][1].append(value)
    free = len(parameter_free_ops(ops))
    # `none` is never derived: a uniform A's genotype draws from the other ops.
    priors = (free / len(ops), (free - 1) / (len(ops) - 1) if "none" in ops else free / len(ops))
    add("parameter_free", "parameter-free ops: probability mass and share of the derived genotype",
        parameter_free_plot(mass, share, priors, guard_marks(run)))
    return plots


def guard_marks(run: RunView) -> dict[str, list[int]]:
    """Epochs where the guards acted: max-skip (genotypes.jsonl), the early stop and the kept genotype (summary)."""
    marks: dict[str, list[int]] = {"max-skip": [epoch_of(r, i) for i, r in enumerate(run.genotypes)
                                                if (r.get("max_skip_replaced") or 0) > 0]}
    stopped = (run.summary or {}).get("stopped_early")
    if isinstance(stopped, dict) and isinstance(stopped.get("epoch"), int):
        marks["stop-on-collapse"] = [stopped["epoch"]]
        if isinstance(stopped.get("kept_epoch"), int):
            marks["kept"] = [stopped["kept_epoch"]]
    return marks


def strip_plot(random_err: Sequence[float], searched: Mapping[str, float], title: str) -> Any:
    """Random cells' D_V errors (%) as dots, spread up and down (a fixed jitter: equal errors stay visible), their
    mean dotted, each searched cell a coloured vertical line."""
    fig = _figure(7.6, 2.6, left=0.3, right=2.4, top=0.4)
    ax = fig.add_subplot()
    errors = 100 * np.asarray(random_err, dtype=np.float64)
    ax.scatter(errors, np.random.default_rng(0).uniform(-0.6, 0.6, len(errors)), s=30, color="0.45", alpha=0.8,
               label=f"random cells ({len(errors)})", zorder=2)
    ax.axvline(float(errors.mean()), color="0.45", linestyle=":", linewidth=1.2, label="random mean")
    for k, (label, err) in enumerate(searched.items()):
        ax.axvline(100 * err, color=f"C{(k + 3) % 10}", linewidth=2.2, label=label, zorder=3)
    every = [*errors, *(100 * err for err in searched.values())]
    pad = max(0.5, 0.06 * (max(every) - min(every)))
    ax.set_xlim(min(every) - pad, max(every) + pad)
    ax.set_ylim(-1, 1)
    ax.set_yticks([])
    ax.set_xlabel("D_V top-1 error (%), lower is better")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def curve_plots(run: RunView, out_dir: Optional[Path]) -> dict[str, Plot]:
    """One plot per metric group the run recorded (loss, accuracy, error, perplexity, tau, lr, throughput)."""
    plots: dict[str, Plot] = {}
    keys = run.metric_keys()
    for name, title, ylabel, _, logy in CURVES:
        series = {k: run.series(k) for k in curve_keys(keys, name)}
        if series:
            fig = lines(series, title, ylabel, logy=logy)
            plots[f"curve_{name}"] = Plot(f"curve_{name}", title,
                                          render(fig, out_dir / f"curve_{name}.png" if out_dir else None))
    return plots


def comparison_plots(runs: Sequence[RunView], out_dir: Optional[Path]) -> dict[str, Plot]:
    """Overlays of the held-out metrics (not train_*) of several runs; the kept run drawn bold."""
    plots: dict[str, Plot] = {}
    keys = [k for k in runs[0].metric_keys() if not k.startswith("train")]
    wanted = [k for group in ("accuracy", "error", "perplexity", "loss") for k in curve_keys(keys, group)][:4]
    label = {run.name: run.name + (" (kept)" if run.kept else "") for run in runs}
    bold = next((label[run.name] for run in runs if run.kept), None)
    for key in wanted:
        series = {label[run.name]: run.series(key) for run in runs if run.series(key)[0]}
        if len(series) > 1:
            fig = lines(series, f"{key} of every run", key, logy="ppl" in key, bold=bold)
            name = f"compare_{key}"
            plots[name] = Plot(name, f"{key} of every run", render(fig, out_dir / f"{name}.png" if out_dir else None))
    return plots
