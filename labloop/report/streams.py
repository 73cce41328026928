"""Process streams (chamber pressure, substrate temperature, ... monitored during a synthesis) of the best trial and
of every trial asked for with ``--trial``: one figure per trial, one panel per signal, from ``process_points``.
"""

from __future__ import annotations

from pathlib import Path

from .gather import ReportData, TrialDetail
from .plotting import BLUE, Drawn, Item, NotDrawn, new_figure, save

MAX_SIGNALS = 6


def draw(data: ReportData, out: Path) -> list[Item]:
    numbers = list(dict.fromkeys(([data.best.number] if data.best else []) + data.asked))
    if not numbers:
        return [NotDrawn("Process streams", "no trial succeeded, and no trial was asked for with --trial")]
    return [_one(data, data.details[n], out) for n in numbers]


def _one(data: ReportData, d: TrialDetail, out: Path) -> Item:
    n = d.trial.number
    why = "best trial" if data.best is not None and n == data.best.number else "asked for"
    title = f"Process streams of trial {n} ({why})"
    signals = list(d.streams)
    if not signals:
        return NotDrawn(title, f"trial {n} recorded no process stream (state {d.trial.state})")
    shown = signals[:MAX_SIGNALS]
    cols = 2 if len(shown) > 1 else 1
    rows = (len(shown) + cols - 1) // cols
    fig, axes = new_figure(7, 2.2 * rows + 0.4, rows, cols)
    for ax, sig in zip(axes, shown):
        pts = d.streams[sig]
        t0 = pts[0][0]
        ax.plot([t - t0 for t, _ in pts], [v for _, v in pts], color=BLUE, lw=1.2)
        unit = d.units.get(sig)
        ax.set_title(f"{sig} ({unit})" if unit else sig, fontsize=9)
        ax.set_xlabel("s from the first reading", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    file = save(fig, out, f"streams-trial-{n}")
    more = f" {len(signals) - len(shown)} more signals are not drawn." if len(signals) > len(shown) else ""
    recipe = ", ".join(f"{k}={_v(v)}" for k, v in d.trial.params.items())
    return Drawn(file, title, f"Each panel is one monitored signal of trial {n} ({d.trial.state}; {recipe}) "
                 f"against the time since its first reading, as the device reported it; a drift, spike or "
                 f"plateau here is what the sample lived through.{more}")


def _v(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
