"""Genotype -> DOT graphs of its cells (DARTS style), rendered to SVG/PNG by graphviz `dot` when present."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from gdas.errors import GdasError
from gdas.genotypes import AnyGenotype, load_genotype
from gdas.spaces import space_of

INPUT, NODE, OUTPUT = "darkseagreen2", "lightblue", "palegoldenrod"
_RENDER_TIMEOUT_S = 60


def _q(text: str) -> str:
    """A DOT double-quoted string: backslashes, quotes and newlines escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class DotGraph:
    """A DOT digraph in the DARTS drawing style: inputs green, nodes blue, the output yellow."""

    def __init__(self, title: str):
        self.lines = [
            f"digraph {_q(title)} {{",
            "  rankdir=LR;",
            '  node [style=filled, shape=rect, align=center, fontsize=20, height=0.5, width=0.5, '
            'penwidth=2, fontname="times"];',
            '  edge [fontsize=20, fontname="times"];',
        ]

    def node(self, name: str, color: str, label: str | None = None) -> None:
        extra = f", label={_q(label)}" if label is not None else ""
        self.lines.append(f"  {_q(name)} [fillcolor={_q(color)}{extra}];")

    def edge(self, src: str, dst: str, label: str | None = None) -> None:
        extra = f", label={_q(label)}" if label is not None else ""
        self.lines.append(f"  {_q(src)} -> {_q(dst)} [fillcolor=gray{extra}];")

    def text(self) -> str:
        return "\n".join(self.lines + ["}"]) + "\n"


def _cells(genotype: AnyGenotype) -> dict[str, str]:
    if not hasattr(genotype, "kind") or not hasattr(genotype, "to_json"):
        raise GdasError(f"cannot draw a {type(genotype).__name__}; pass a genotype (a registry name, "
                        "run directory or genotype JSON)")
    return space_of(genotype).dot(genotype)


def cells_of(genotype: AnyGenotype) -> tuple[str, ...]:
    """The cell names `genotype_to_dot` accepts for this genotype (its space draws them)."""
    return tuple(_cells(genotype))


def genotype_to_dot(genotype: AnyGenotype, cell: str) -> str:
    """DOT source of one cell: 'normal' or 'reduce' of a CNN genotype, 'recurrent' of an RNN one, ..."""
    cells = _cells(genotype)
    if cell not in cells:
        raise GdasError(f"unknown cell {cell!r} for a {genotype.kind} genotype; use one of: {', '.join(cells)}")
    return cells[cell]


def dot_available() -> bool:
    """Whether graphviz's `dot` executable is on PATH."""
    return shutil.which("dot") is not None


def _render(dot: str, source: Path, fmt: str) -> Path:
    out = source.with_suffix("." + fmt)
    try:
        result = subprocess.run([dot, f"-T{fmt}", str(source), "-o", str(out)],
                                capture_output=True, text=True, timeout=_RENDER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise GdasError(f"graphviz dot timed out after {_RENDER_TIMEOUT_S}s rendering {source.name} "
                        f"to {fmt}; the .dot file is written, render it by hand") from None
    except OSError as exc:
        raise GdasError(f"cannot run graphviz dot ({exc.strerror or exc}); reinstall graphviz or "
                        "use the .dot files") from None
    if result.returncode != 0:
        first = next((ln.strip() for ln in result.stderr.splitlines() if ln.strip()), "no message")
        raise GdasError(f"graphviz dot failed rendering {source.name} to {fmt}: {first}; "
                        "check the format name (e.g. svg, png) or the graphviz install")
    return out


def draw_genotype(genotype: AnyGenotype, out_dir: Path, formats: Sequence[str] = ("svg", "png")) -> list[Path]:
    """Write `<cell>.dot` per cell into `out_dir`, plus each of `formats` when `dot` is on PATH."""
    for fmt in formats:
        if not re.fullmatch(r"[A-Za-z0-9]+", fmt):
            raise GdasError(f"invalid drawing format {fmt!r}; use graphviz output names such as svg, png, pdf")
    out_dir = Path(out_dir)
    sources = {cell: genotype_to_dot(genotype, cell) for cell in cells_of(genotype)}
    out_dir.mkdir(parents=True, exist_ok=True)
    dot = shutil.which("dot")
    written: list[Path] = []
    for cell, text in sources.items():
        source = out_dir / f"{cell}.dot"
        source.write_text(text)
        written.append(source)
        if dot is not None:
            written += [_render(dot, source, fmt) for fmt in formats]
    return written


def resolve_and_draw(spec: str, out_dir: Path) -> list[Path]:
    """Draw a genotype given as a registry name, run directory, JSON file or text form."""
    return draw_genotype(load_genotype(spec), out_dir)
