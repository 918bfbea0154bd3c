"""The report's random-baseline section (`gdas search --random-baseline`): where each searched cell ranks among random
cells of its space on D_V, as a strip plot and a table of every cell with its error and size."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

from gdas.engine.progress import format_value
from gdas.reporting import plots as P
from gdas.reporting.runview import RunView, is_number

PLOT = "random_baseline"  # <folder>/plots/random_baseline.png


def baseline_sections(runs: Sequence[RunView]) -> str:
    """One section per search with a random baseline (a multi-seed folder's once, for all its seeds)."""
    seen: list[Path] = []
    out = []
    for run in runs:
        if run.baseline is None or run.baseline_of is None or run.baseline_of in seen:
            continue
        seen.append(run.baseline_of)
        out.append(_section(run.baseline, run.baseline_of, len(seen) - 1))
    return "\n".join(out)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}" if is_number(value) else "-"


def _label(row: dict[str, Any], several: bool, cells: int) -> str:
    who = f"seed {row.get('seed')}" + (" (kept)" if row.get("kept") else "") if several else "searched cell"
    return f"{who}: rank {row.get('rank')} of {cells + 1}"


def _note(record: dict[str, Any], searched: list[dict[str, Any]], cells: int) -> str:
    """How the cells were trained and measured, each searched cell's rank, the random cells' mean and spread."""
    several = len(searched) > 1
    std = record.get("valid_err_std")
    size = record.get("size") if isinstance(record.get("size"), dict) else {}
    ranks = "; ".join(_label(row, several, cells) for row in searched)
    spread = f" ± {_pct(std)} (sample standard deviation)" if is_number(std) else ""
    return (f"{cells} random cells of the space, drawn by the rule its derivation follows, each retrained like the "
            f"searched cell{'s' if several else ''} (from scratch on D_T for --select-epochs "
            f"{record.get('select_epochs')}, top-1 error on {record.get('valid_images')} D_V images, split seed "
            f"{record.get('split_seed')}; never the test set). {ranks} (rank 1 = best; a random cell with the same "
            f"error does not count above it). Random cells: mean D_V error {_pct(record.get('valid_err_mean'))}%"
            f"{spread}, from {_pct(record.get('valid_err_min'))} to {_pct(record.get('valid_err_max'))}%. Sizes are "
            f"the final network's (C={size.get('C')}, N={size.get('N')}), as gdas info counts them.")


def _row(row: dict[str, Any], rank: str) -> str:
    name = "searched" if row.get("dir") == "." else row.get("dir")
    cells = [f"{name} (seed {row.get('seed')})", _pct(row["valid_err"]), rank, format_value(row.get("params_M")),
             format_value(row.get("mult_adds_M"))]
    return (f'<tr{" class=searched" if rank else ""}><td>{_e(cells[0])}</td>'
            + "".join(f'<td class="num">{_e(c)}</td>' for c in cells[1:])
            + f'<td><code>{_e(row.get("genotype"))}</code></td></tr>')


def _section(record: dict[str, Any], folder: Path, index: int) -> str:
    section_id = "random-baseline" if index == 0 else f"random-baseline-{index + 1}"
    searched = [row for row in record.get("searched", []) if isinstance(row, dict) and is_number(row.get("valid_err"))]
    random = [row for row in record.get("random", []) if isinstance(row, dict) and is_number(row.get("valid_err"))]
    head = f'<section id="{section_id}"><h2>Against random cells: {_e(folder.name or folder)}</h2>'
    if not random:
        return head + '<p class="note">The random baseline records no random cell.</p></section>'
    several, cells = len(searched) > 1, len(random)
    title = f"D_V error of {cells} random cells and of the searched cell{'s' if several else ''}"
    plot = P.Plot(PLOT, title, P.render(
        P.strip_plot([row["valid_err"] for row in random],
                     {_label(row, several, cells): row["valid_err"] for row in searched}, title),
        folder / "plots" / f"{PLOT}.png"))
    rows = [(row, str(row.get("rank"))) for row in searched] + [(row, "") for row in random]
    rows.sort(key=lambda pair: (pair[0]["valid_err"], pair[1] == ""))
    return (head + f'<p class="note">{_e(_note(record, searched, cells))}</p><div class="grid wide">{plot.html()}'
            "</div><table><tr><th>cell</th><th>D_V error (%)</th><th>rank</th><th>params (M)</th><th>mult-adds (M)"
            f"</th><th>genotype</th></tr>{''.join(_row(row, rank) for row, rank in rows)}</table></section>")
