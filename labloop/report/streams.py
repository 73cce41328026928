"""Process streams (chamber pressure, substrate temperature, ... monitored during a synthesis) of the best trial and
of every trial asked for with ``--trial``: one figure per trial, one panel per signal, from ``process_points``.

On process time (minutes of the lab's clock from the step's start, not wall seconds of an accelerated simulator) and
drawn as steps (a monitored value holds until the device reports the next), without the stale reading a monitor
delivers when it subscribes (it is from before the step; joining it by a line drew ramps that never happened).
"""

from __future__ import annotations

from pathlib import Path

from .gather import ReportData, Stream, TrialDetail
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
    stale = 0
    for ax, sig in zip(axes, shown):
        st = d.streams[sig]
        stale += st.stale
        xs, ys = process_time(st)
        if xs:  # a reading holds until the next one: steps, not lines between readings
            ax.step(xs, ys, where="post", color=BLUE, lw=1.2)
        unit = d.units.get(sig.split(" (")[0])
        ax.set_title(f"{sig} ({unit})" if unit else sig, fontsize=9)
        ax.set_xlabel(f"min from the start of {st.step}", fontsize=8)
        ax.set_xlim(left=0)
        ax.tick_params(labelsize=8)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    file = save(fig, out, f"streams-trial-{n}")
    more = f" {len(signals) - len(shown)} more signals are not drawn." if len(signals) > len(shown) else ""
    left = (
        f" {stale} reading{'s' if stale != 1 else ''} from before the step (a monitor's first value is the "
        f"device's last reading) {'are' if stale != 1 else 'is'} left out."
        if stale
        else ""
    )
    recipe = ", ".join(f"{k}={_v(v)}" for k, v in d.trial.params.items())
    return Drawn(
        file,
        title,
        f"Each panel is one monitored signal of trial {n} ({d.trial.state}; {recipe}) on "
        f"process time: minutes of the lab's clock from the start of the step (the simulated clock for a "
        f"simulated lab), each reading held until the next, as the device reported it; a drift, spike or "
        f"plateau here is what the sample lived through.{left}{more}",
    )


def process_time(st: Stream) -> tuple[list[float], list[float]]:
    """The points of a stream for a step plot: the last value held until the step's end."""
    xs = [t for t, _ in st.points]
    ys = [v for _, v in st.points]
    if xs and st.end is not None and st.end > xs[-1]:
        xs.append(st.end)
        ys.append(ys[-1])
    return xs, ys


def _v(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
