"""Shared plotting plumbing for the report's figure modules: a matplotlib ``Figure`` drawn without pyplot (no global
backend, no GUI: the same as the Agg backend, and safe from any thread), saved as SVG with text kept as text (small
files, searchable, sharp at any zoom), and what each figure module hands to the HTML writer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from labloop.spec import ObjectiveSpec

# colours that survive greyscale printing and common colour blindness (Okabe-Ito)
BLUE, ORANGE, GREEN, RED, PURPLE, GREY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#888888"
CYCLE = (BLUE, ORANGE, GREEN, PURPLE, RED, "#56B4E9", "#F0E442", GREY)
#: Above this many markers in one artist, it is embedded as a bitmap inside the SVG (axes and text stay vector): a
#: 1,000-trial campaign's scatter would otherwise be a 500 kB figure that browsers draw slowly.
DENSE = 300


def dense(n: int) -> bool:
    return n > DENSE


@dataclass(frozen=True)
class Drawn:
    """A figure file written beside ``index.html``, with the heading and the caption saying how to read it."""

    file: str
    title: str
    caption: str


@dataclass(frozen=True)
class NotDrawn:
    """A figure the report would show, and why the data at hand do not allow it."""

    title: str
    reason: str


Item = Drawn | NotDrawn


def new_figure(width: float = 7.0, height: float = 4.0, rows: int = 1, cols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def trial_axis(ax) -> None:
    """Trial numbers are whole numbers: no 9.2 ticks."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")


def save(fig: Figure, out: Path, name: str) -> str:
    """Write ``fig`` as ``out/name.svg``; returns the file name. Deterministic output: no date, fixed ids."""
    file = f"{name}.svg"
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "labloop-report"}):
        fig.savefig(out / file, format="svg", metadata={"Date": None})
    return file


def label(name: str, unit: str | None) -> str:
    return f"{name} ({unit})" if unit else name


def wide(values: Iterable[float]) -> bool:
    """Whether positive values span more than two decades: then a log axis reads better."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) > 100


def objective_values(objective: ObjectiveSpec, trials: Sequence) -> list[tuple[int, float]]:
    """(trial number, value) of done trials that have a finite value of ``objective``."""
    out = []
    for t in trials:
        v = (t.values or {}).get(objective.name)
        if t.state == "done" and isinstance(v, (int, float)) and math.isfinite(v):
            out.append((t.number, float(v)))
    return out


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)
