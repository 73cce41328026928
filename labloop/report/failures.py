"""Where failures clustered: failed against done trials in the plane of each pair of the most important parameters
(up to three pairs). A cluster of crosses says the space has an infeasible corner the optimizer learnt to avoid
(or did not); crosses scattered among dots say the failures were the lab's, not the recipe's.
"""

from __future__ import annotations

import random
from itertools import combinations
from pathlib import Path
from typing import Any

from labloop.spec import CategoricalParameter, ContinuousParameter, IntegerParameter

from .gather import ReportData
from .model import importance_ranking
from .plotting import BLUE, RED, Drawn, Item, NotDrawn, dense, new_figure, save

PAIRS = 3


def draw(data: ReportData, out: Path) -> list[Item]:
    title = "Failed trials in the search space"
    failed = [t for t in data.trials if t.state == "failed"]
    if not failed:
        return [NotDrawn(title, "no trial failed")]
    order, source = importance_ranking(data)
    specs = {p.name: p for p in data.spec.parameters}
    usable = [n for n in order if _coords(specs.get(n), [t.params.get(n) for t in data.trials]) is not None]
    if len(usable) < 2:
        return [NotDrawn(title, "the campaign searches fewer than two parameters that can be drawn on an axis")]
    top = usable[:3]
    pairs = list(combinations(top, 2))[:PAIRS]
    fig, axes = new_figure(4.2 * len(pairs), 4, 1, len(pairs))
    done = [t for t in data.trials if t.state == "done"]
    for ax, (a, b) in zip(axes, pairs):
        for group, colour, marker, name in (
            (done, BLUE, "o", f"done ({len(done)})"),
            (failed, RED, "x", f"failed ({len(failed)})"),
        ):
            xs = _coords(specs.get(a), [t.params.get(a) for t in group])
            ys = _coords(specs.get(b), [t.params.get(b) for t in group])
            ax.scatter(
                xs,
                ys,
                s=16 if marker == "o" else 26,
                marker=marker,
                color=colour,
                alpha=0.45 if marker == "o" else 0.9,
                label=name,
                rasterized=dense(len(group)),
            )
        _axis(ax, "x", specs.get(a), a)
        _axis(ax, "y", specs.get(b), b)
    axes[0].legend(fontsize=8, loc="best")
    file = save(fig, out, "failures")
    reasons = _reasons(failed)
    return [
        Drawn(
            file,
            title,
            f"Each panel is a pair of the most important parameters (order from {source}); "
            f"blue dots are done trials, red crosses failed ones (categorical values are jittered around their "
            f"tick). Most frequent failure reasons: {reasons}.",
        )
    ]


def _coords(param: Any, values: list[Any]) -> list[float] | None:
    """Numbers to plot for a parameter's values (categorical: choice index with jitter), or None if it has none."""
    if isinstance(param, CategoricalParameter):
        rng = random.Random(0)
        idx = {c: i for i, c in enumerate(param.choices)}
        return [idx.get(str(v), -1) + rng.uniform(-0.2, 0.2) for v in values]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values]
    return None


def _axis(ax: Any, which: str, param: Any, name: str) -> None:
    unit = getattr(param, "unit", None)
    getattr(ax, f"set_{which}label")(f"{name} ({unit})" if unit else name)
    if isinstance(param, (ContinuousParameter, IntegerParameter)) and param.log:
        getattr(ax, f"set_{which}scale")("log")
    if isinstance(param, CategoricalParameter):
        getattr(ax, f"set_{which}ticks")(range(len(param.choices)), param.choices)


def _reasons(failed: list[Any]) -> str:
    counts: dict[str, int] = {}
    for t in failed:
        r = (t.failure_reason or "no reason recorded").split("\n")[0]
        r = r if len(r) <= 90 else r[:89] + "…"
        counts[r] = counts.get(r, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    return "; ".join(f"{r} ({n})" for r, n in top)
