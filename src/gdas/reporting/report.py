"""The self-contained HTML report of one or several run directories: plots and cell drawings inlined, no fetches."""

from __future__ import annotations

import html
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import gdas
from gdas.reporting import plots as P
from gdas.reporting.baseline import baseline_sections
from gdas.reporting.draw import cells_of, draw_genotype
from gdas.errors import GdasError
from gdas.genotypes import AnyGenotype
from gdas.engine.progress import format_duration, format_value
from gdas.engine.rundir import atomic_write_bytes
from gdas.reporting.runview import RunView, epoch_of, is_number, load_runs

REPORT = "report.html"
# Summary fields shown first (others follow in file order); the genotype is drawn instead.
_HEADLINE = ("final_valid_acc", "final_train_acc", "final_top1_err", "final_top5_err", "test_images", "valid_images",
             "best_valid_top1_err",
             "best_test_top1_err", "best_top1_err",  # the last: test-picked, in runs from before validation parts
             "valid_ppl", "test_ppl", "best_valid_ppl", "final_valid_ppl", "final_derived_valid_ppl",
             "final_train_ppl", "params_M", "mult_adds_M")
_HIDDEN = frozenset({"kind", "genotype", "genotype_json", "complete"})
_COST = ("wall_time_s", "search_cost_device_hours", "device", "world_size")
_COMPARE = re.compile(r"acc|err|ppl|perplexity|params|mult_adds")
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
main{max-width:1280px;margin:0 auto;padding:18px 26px 60px}
h1{margin:6px 0 2px;font-size:26px}h2{margin:34px 0 6px;padding-top:10px;border-top:3px solid #2f5d8a;font-size:21px}
h3{margin:22px 0 8px;font-size:16px;color:#2f5d8a}
.sub{color:#5b6575;margin:0 0 12px}
table{border-collapse:collapse;background:#fff;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #d5dae1;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.kept td{background:#eaf6e7;font-weight:600}tr.searched td{background:#e8f0fb;font-weight:600}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#fff;border:1px solid #d5dae1;padding:8px 10px;overflow-x:auto;white-space:pre-wrap}
.badge{display:inline-block;font-size:12px;font-weight:600;padding:2px 8px;border-radius:10px;margin-left:6px;
 vertical-align:middle;background:#dfe6ef;color:#2f3b4c}
.badge.kept{background:#2e7d32;color:#fff}.badge.incomplete{background:#c62828;color:#fff}
.alert{border:2px solid #c62828;background:#fdecea;color:#7f1d1d;padding:10px 14px;border-radius:6px;margin:12px 0}
.alert strong{font-size:16px}.note{border-left:4px solid #e0a800;background:#fff8e1;padding:8px 12px;margin:8px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:14px;align-items:start;margin:8px 0}
.grid.wide{grid-template-columns:1fr}
figure{margin:0;background:#fff;border:1px solid #d5dae1;padding:8px}
figure img,figure svg{max-width:100%;height:auto;display:block;margin:0 auto}
figure.cell svg{width:auto;max-height:380px}
figcaption{font-size:12px;color:#5b6575;margin-top:4px;text-align:center}
nav a{margin-right:14px}details summary{cursor:pointer;color:#2f5d8a}
"""


def write_report(run_dirs: Sequence[Path], out: Optional[Path] = None) -> Path:
    """Write one self-contained HTML report of `run_dirs` (default: `<first run>/report.html`).

    A multi-seed parent folder stands for its seed runs. Plots are also saved as PNGs under each
    run's `plots/` folder (comparison plots under the first directory's).
    """
    runs, notes = load_runs([Path(p) for p in run_dirs])
    first = Path(run_dirs[0])
    out = Path(out) if out is not None else first / REPORT
    if out.is_dir():
        out = out / REPORT
    page = render_report(runs, notes, first / "plots").encode()
    try:
        atomic_write_bytes(out, page)
        out.chmod(0o644)  # a page to share, unlike the private temp file it was renamed from
    except OSError as exc:
        raise GdasError(f"cannot write the report to {out} ({exc.strerror or exc}); choose another --out") from None
    return out


def render_report(runs: Sequence[RunView], notes: Sequence[str], compare_dir: Optional[Path] = None) -> str:
    """The report's HTML; per-run plots are saved under `<run>/plots/`, comparison plots in `compare_dir`."""
    kind = runs[0].kind
    title = f"gdas {kind} report: " + ", ".join(run.name for run in runs)
    body = [f"<h1>gdas {_e(kind)} report</h1>",
            f'<p class="sub">{len(runs)} run{"s" if len(runs) > 1 else ""} · generated '
            f'{_e(time.strftime("%Y-%m-%d %H:%M:%S"))} by gdas {_e(gdas.__version__)}</p>']
    incomplete = [run for run in runs if not run.complete]
    if incomplete:
        items = "".join(f"<li><b>{_e(run.name)}</b>: {_e('; '.join(run.problems))}</li>" for run in incomplete)
        body.append(f'<div class="alert" id="incomplete"><strong>⚠ INCOMPLETE: {len(incomplete)} of {len(runs)} '
                    f"run{'s' if len(runs) > 1 else ''} did not finish.</strong> The report shows what was "
                    f"recorded.<ul>{items}</ul></div>")
    body += [f'<p class="note">{_e(note)}</p>' for note in notes]
    if len(runs) > 1:
        body.append("<nav>" + "".join(f'<a href="#run{i}">{_e(run.name)}</a>' for i, run in enumerate(runs))
                    + "</nav>")
        body.append(_comparison(runs, compare_dir))
    body.append(baseline_sections(runs))
    body += [_run_section(i, run) for i, run in enumerate(runs)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{_e(title)}</title><style>{_CSS}</style></head>'
            "<body><main>\n" + "\n".join(body) + "\n</main></body></html>\n")


# -- pieces ------------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key.endswith("time_s") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_duration(float(value)) + (f" ({value:.0f} s)" if value >= 60 else "")
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return format_value(value)


def _table(rows: Iterable[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_fmt(k, v))}</td></tr>" for k, v in rows)
    return f"<table><tr><th>field</th><th>value</th></tr>{cells}</table>"


def _figure(plot: P.Plot) -> str:
    return plot.html()


def _grid(plots: Iterable[P.Plot], wide: bool = False) -> str:
    items = [_figure(p) for p in plots]
    return f'<div class="grid{" wide" if wide else ""}">{"".join(items)}</div>' if items else ""


def _h3(run_id: str, section: str, title: str) -> str:
    return f'<h3 id="{run_id}-{section}">{_e(title)}</h3>'


def _status(run: RunView) -> str:
    total = f"/{run.epochs_total}" if run.epochs_total else ""
    stopped = isinstance((run.summary or {}).get("stopped_early"), dict)
    return (f"{'complete' if run.complete else 'INCOMPLETE'} ({run.epochs_done}{total} epochs"
            f"{', stopped early: collapse' if stopped else ''})")


def _results(run: RunView) -> list[tuple[str, Any]]:
    """The run's result fields: summary.json's, or the last recorded metrics of an unfinished run."""
    rows: list[tuple[str, Any]] = [("status", _status(run))]
    if run.summary:
        fields = {k: v for k, v in run.summary.items() if k not in _HIDDEN and not isinstance(v, (dict, list))}
        order = [k for k in _HEADLINE if k in fields] + [k for k in fields if k not in _HEADLINE]
        return rows + [(k, fields[k]) for k in order if k not in _COST]
    if run.metrics:
        last = run.metrics[-1]
        rows.append(("last recorded epoch", epoch_of(last, run.epochs_done - 1)))
        rows += [(f"last {k}", v) for k, v in last.items() if k not in ("epoch", "wall_time_s")]
    return rows


def _benchmark(run_id: str, run: RunView) -> str:
    """The derived cell's true accuracies from a tabular benchmark (`gdas search --benchmark`), when recorded."""
    info = (run.summary or {}).get("benchmark")
    if not isinstance(info, dict):
        return ""
    name = info.get("name", "benchmark")
    head = _h3(run_id, "benchmark", f"True accuracy ({name})")
    if "error" in info:
        return head + f'<p class="note">No look-up: {_e(info["error"])}</p>'

    def pct(acc: Any, split: str) -> str:
        value = acc.get(split) if isinstance(acc, dict) else None
        return f"{value:.2f}" if is_number(value) else "-"

    rows = "".join(f'<tr><td>{_e(dataset)}</td><td class="num">{pct(acc, "valid")}</td>'
                   f'<td class="num">{pct(acc, "test")}</td></tr>' for dataset, acc in info.get("results", {}).items())
    return (head + f'<p class="sub">{_e(info.get("arch", ""))}: index {_e(info.get("index"))}, '
            f"{_e(info.get('epochs'))} epochs, accuracy in % (mean over the benchmark's seeds)</p>"
            f"<table><tr><th>dataset</th><th>valid</th><th>test</th></tr>{rows}</table>")


def _guards(run_id: str, run: RunView) -> str:
    """Where the collapse guards acted (summary.json's `guards`), and the early stop, if any."""
    summary = run.summary or {}
    events, stopped = summary.get("guards"), summary.get("stopped_early")
    if not isinstance(events, list):
        return ""
    out = [_h3(run_id, "guards", "Guards against collapse")]
    if isinstance(stopped, dict):
        kept = stopped.get("kept_epoch")
        which = f"that of epoch {_e(kept)}" if kept is not None else "the last derived one (no healthy epoch)"
        out.append(f'<p class="note" id="{run_id}-stopped"><b>Stopped early after epoch {_e(stopped.get("epoch"))}'
                   f"</b>: {_e(stopped.get('reason'))}; the genotype is {which}.</p>")
    rows = "".join(f'<tr><td class="num">{_e(e.get("epoch"))}</td><td>{_e(e.get("guard"))}</td>'
                   f'<td>{_e(e.get("why"))}</td></tr>' for e in events if isinstance(e, dict))
    out.append(f"<table><tr><th>epoch</th><th>guard</th><th>why</th></tr>{rows}</table>" if rows
               else "<p>The guards were set and did not act.</p>")
    return "".join(out)


def _cost(run: RunView) -> list[tuple[str, Any]]:
    summary = run.summary or {}
    rows: list[tuple[str, Any]] = [("wall time", _fmt("wall_time_s", run.last("wall_time_s")))]
    if "search_cost_device_hours" in summary:
        rows.append(("search cost (device-hours)", summary["search_cost_device_hours"]))
    for key in run.metric_keys():
        if key.endswith("_per_s"):
            values = run.series(key)[1]
            rows.append((f"{key.replace('_per_s', '')}/s (mean over epochs)", sum(values) / len(values)))
    epoch_times = run.series("epoch_time_s")[1]
    if epoch_times:
        rows.append(("epoch time (mean)", format_duration(sum(epoch_times) / len(epoch_times))))
    device = summary.get("device", run.env.get("device"))
    rows.append(("device", device if "gpu" not in run.env else f"{device} ({run.env['gpu']})"))
    rows.append(("processes (world size)", summary.get("world_size", 1)))
    return rows


def _cells(run_id: str, genotype: Optional[AnyGenotype], note: str) -> str:
    """The cells drawn by graphviz (inline SVG), or a fallback with the genotype text and DOT source."""
    out = [_h3(run_id, "cells", "Cells")]
    if genotype is None:
        return out[0] + '<p class="note">No genotype recorded yet (no genotype.json and no epoch finished).</p>'
    if note:
        out.append(f'<p class="note">Genotype {_e(note)}.</p>')
    out.append(f"<pre>{_e(str(genotype))}</pre>")
    with tempfile.TemporaryDirectory() as tmp:
        error = ""
        try:
            draw_genotype(genotype, Path(tmp), formats=("svg",))
        except GdasError as exc:
            error = str(exc)
        figures, sources = [], []
        for cell in cells_of(genotype):
            svg_path, dot_path = Path(tmp) / f"{cell}.svg", Path(tmp) / f"{cell}.dot"
            if svg_path.exists():
                figures.append(f'<figure class="cell">{_clean_svg(svg_path.read_text())}'
                               f"<figcaption>{_e(cell)} cell</figcaption></figure>")
            elif dot_path.exists():
                sources.append(f"<details open><summary>{_e(cell)} cell: DOT source</summary>"
                               f"<pre>{_e(dot_path.read_text())}</pre></details>")
    if sources:
        why = error or "graphviz's dot program is not installed"
        out.append(f'<p class="note" id="{run_id}-cells-fallback">The cells are not drawn: {_e(why)}. '
                   "Install graphviz (e.g. <code>apt-get install graphviz</code>) and run "
                   "<code>gdas report</code> again; the genotype and the DOT source of each cell follow.</p>")
    return "".join(out) + (f'<div class="grid">{"".join(figures)}</div>' if figures else "") + "".join(sources)


def _clean_svg(svg: str) -> str:
    """Graphviz SVG fit for inlining in HTML: no XML prolog, doctype or comments."""
    svg = re.sub(r"<\?xml.*?\?>|<!DOCTYPE.*?>|<!--.*?-->", "", svg, flags=re.S)
    return svg.strip()


def _genotype_changes(run: RunView, limit: int = 40) -> str:
    rows, previous = [], None
    for i, record in enumerate(run.genotypes):
        text = record.get("text")
        if isinstance(text, str) and text != previous:
            rows.append(f'<tr><td class="num">{epoch_of(record, i)}</td><td><code>{_e(text)}</code></td></tr>')
            previous = text
    if not rows:
        return ""
    more = f"<p>… {len(rows) - limit} later changes not shown.</p>" if len(rows) > limit else ""
    changes = len(rows) - 1
    return (f"<details><summary>The derived genotype changed {changes} time{'' if changes == 1 else 's'} over "
            f"{len(run.genotypes)} epochs (show)</summary><table><tr><th>epoch</th><th>genotype</th></tr>"
            f"{''.join(rows[:limit])}</table>{more}</details>")


def _label_table(run: RunView) -> str:
    """A module space's labels: the derived choice and the final distribution over the label's candidates."""
    chosen = getattr(run.genotype, "choices", {}) or {}
    last = run.alphas[-1] if run.alphas else {}
    rows = []
    for label, names in run.candidates().items():
        probs = (last.get(label) or [[]])[0]
        dist = ", ".join(f"{_e(n)} {p:.2f}" for n, p in sorted(zip(names, probs), key=lambda t: -t[1]))
        rows.append(f"<tr><td>{_e(label)}</td><td><b>{_e(chosen.get(label, '-'))}</b></td><td>{dist}</td></tr>")
    return ("<table><tr><th>label</th><th>derived</th><th>softmax(A), last epoch</th></tr>" + "".join(rows)
            + "</table>")


def _run_section(index: int, run: RunView) -> str:
    run_id = f"run{index}"
    badges = f'<span class="badge">{_e(run.kind)}</span>'
    if run.kept:
        badges += '<span class="badge kept">★ kept</span>'
    if not run.complete:
        badges += '<span class="badge incomplete">INCOMPLETE</span>'
    out = [f'<section class="run" id="{run_id}"><h2>{_e(run.name)}{badges}</h2>',
           f'<p class="sub">{_e(run.path)}</p>']
    if not run.complete:
        out.append(f'<div class="alert"><strong>INCOMPLETE run.</strong> {_e("; ".join(run.problems))}</div>')
    out += [_h3(run_id, "results", "Results"), _table(_results(run)), _benchmark(run_id, run), _guards(run_id, run)]
    if run.is_search or run.genotype is not None:
        out.append(_cells(run_id, run.genotype, run.genotype_note))
        out.append(_genotype_changes(run))
    plots_dir = run.path / "plots"
    if run.is_search:
        arch = P.architecture_plots(run, plots_dir)
        if "labels" in arch:  # a module space: one distribution per label
            out += [_h3(run_id, "labels", "softmax(A) per label over epochs"), _label_table(run),
                    _grid([arch["labels"]], wide=True)]
        elif arch:
            out += [_h3(run_id, "heatmaps", "softmax(A) per edge and op, final epoch"),
                    _grid(p for n, p in arch.items() if n.startswith("heatmap_")),
                    _h3(run_id, "trajectory", "Trajectory of the op probabilities over epochs"),
                    _grid(p for n, p in arch.items() if n.startswith("trajectory_")),
                    _grid((p for n, p in arch.items() if n.startswith("edges_")), wide=True),
                    _h3(run_id, "entropy", "Entropy and parameter-free share (skip-connect collapse)"),
                    _grid([arch["entropy"], arch["parameter_free"]])]
        else:
            out.append('<p class="note">No architecture distribution recorded yet (alphas.jsonl is empty).</p>')
    curves = P.curve_plots(run, plots_dir)
    out.append(_h3(run_id, "curves", "Curves"))
    out.append(_grid(curves.values()) or '<p class="note">No epoch recorded yet (metrics.jsonl is empty).</p>')
    out += [_h3(run_id, "cost", "Search cost" if run.is_search else "Cost"), _table(_cost(run))]
    out += [_h3(run_id, "config", "Resolved config"), _table(run.config.items()),
            _h3(run_id, "environment", "Environment"), _table(run.env.items())]
    return "\n".join(out) + "</section>"


def _comparison(runs: Sequence[RunView], compare_dir: Optional[Path]) -> str:
    """The side-by-side table of several runs (the kept one marked) and overlays of their held-out metrics."""
    values = []
    for run in runs:
        found = {k: v for k, v in (run.summary or {}).items() if _COMPARE.search(k) and is_number(v)}
        if run.summary is None and run.metrics:
            found = {f"final_{k}": v for k, v in run.metrics[-1].items() if _COMPARE.search(k) and is_number(v)}
        values.append(found)
    columns = list(dict.fromkeys(k for found in values for k in found))
    head = "".join(f"<th>{_e(c)}</th>" for c in ["run", "kind", "status", *columns, "genotype", "wall time", "kept"])
    rows = []
    for i, (run, found) in enumerate(zip(runs, values)):
        cells = [f'<a href="#run{i}">{_e(run.name)}</a>', _e(run.kind), _e(_status(run))]
        cells += [f'<span class="num">{_e(_fmt(c, found.get(c)))}</span>' for c in columns]
        cells += [f"<code>{_e(run.genotype) if run.genotype is not None else '-'}</code>",
                  _e(_fmt("wall_time_s", run.last("wall_time_s"))),
                  "★ kept" if run.kept else ("-" if run.kept is None else "")]
        rows.append(f'<tr{" class=kept" if run.kept else ""}>' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    plots = P.comparison_plots(runs, compare_dir)
    return (f'<section id="comparison"><h2>Comparison of {len(runs)} runs</h2><table><tr>{head}</tr>'
            f"{''.join(rows)}</table>{_seed_selection(runs)}{_grid(plots.values())}</section>")


def _seed_selection(runs: Sequence[RunView]) -> str:
    """A multi-seed search's selection: each seed's search and retrain accuracy on D_V, and the kept one."""
    judged = [run for run in runs if run.selection is not None]
    if not judged:
        return ""
    how = judged[0].selection or {}
    by = (f"the best retrain on D_V ({how.get('select_epochs')} epochs from scratch on D_T)"
          if how.get("select_by") == "retrain" else "the best final search accuracy on D_V")
    head = "".join(f"<th>{c}</th>" for c in ("seed", "search valid acc", "retrain valid acc", "kept"))
    rows = []
    for run in judged:
        row = run.selection or {}
        cells = [_e(row.get("seed")), f'<span class="num">{_e(_fmt("valid_acc", row.get("valid_acc")))}</span>',
                 f'<span class="num">{_e(_fmt("select_valid_acc", row.get("select_valid_acc")))}</span>',
                 "★ kept" if run.kept else ""]
        rows.append(f'<tr{" class=kept" if run.kept else ""}>' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (f'<h3 id="seed-selection">Seed selection</h3><p class="note">Seeds share one D_T/D_V split (split '
            f"seed {_e(how.get('split_seed', '-'))}); the kept cell is {_e(by)}.</p>"
            f"<table><tr>{head}</tr>{''.join(rows)}</table>")
