"""The Pareto front of a campaign with several objectives: the trials no other feasible trial beats on every
objective at once. Drawn only for campaigns with two or more objectives (one objective has a best, not a front).

Feasible means: done, a value for every objective, and every outcome constraint met (the campaign's own floor, e.g.
transmittance >= 0.70); infeasible trials are drawn too, hollow, since they show where the trade-off is cut off.
"""

from __future__ import annotations

import math
from pathlib import Path

from labloop.run import best
from labloop.spec import CampaignSpec

from .gather import ReportData
from .plotting import BLUE, GREY, ORANGE, Drawn, Item, NotDrawn, dense, label, new_figure, save, wide


def front(spec: CampaignSpec, points: list[tuple[int, list[float]]]) -> list[int]:
    """Trial numbers of the non-dominated points (each objective's direction respected; band objectives as
    distance to the band's middle), by the one definition's scores (:func:`labloop.run.best.score`)."""
    scored = [(n, [best.score(spec.objectives[i], v) for i, v in enumerate(vals)]) for n, vals in points]
    return [
        n
        for n, s in scored
        if not any(all(a >= b for a, b in zip(s2, s)) and any(a > b for a, b in zip(s2, s)) for _, s2 in scored)
    ]


def draw(data: ReportData, out: Path) -> list[Item]:
    spec = data.spec
    if len(spec.objectives) < 2:
        return []  # a single objective has no front: nothing to say
    names = [o.name for o in spec.objectives]
    rows = []
    for t in data.trials:
        vals = [(t.values or {}).get(n) for n in names]
        nums = [float(v) for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
        if t.state == "done" and len(nums) == len(vals):
            rows.append((t.number, nums, best.constraints_met(spec, t.values)))
    title = f"Pareto front: {names[0]} against {names[1]}"
    if not rows:
        return [NotDrawn(title, "no trial has a value of every objective yet")]
    ok = [(n, v) for n, v, f in rows if f]
    on_front = {t.number for t in best.pareto_front(spec, data.trials)}  # what status calls the best
    o0, o1 = spec.objectives[0], spec.objectives[1]
    fig, (ax,) = new_figure(6.5, 4.5)
    bad = [v for _, v, f in rows if not f]
    if bad:
        ax.scatter(
            [v[0] for v in bad],
            [v[1] for v in bad],
            s=18,
            facecolors="none",
            edgecolors=GREY,
            label=f"violates an outcome constraint ({len(bad)})",
            rasterized=dense(len(bad)),
        )
    rest = [v for n, v in ok if n not in on_front]
    ax.scatter(
        [v[0] for v in rest],
        [v[1] for v in rest],
        s=18,
        color=BLUE,
        alpha=0.6,
        label=f"feasible ({len(ok)})",
        rasterized=dense(len(rest)),
    )
    fr = sorted(v for n, v in ok if n in on_front)
    ax.plot(
        [v[0] for v in fr],
        [v[1] for v in fr],
        "o-",
        color=ORANGE,
        ms=6,
        drawstyle="steps-post",
        label=f"Pareto front ({len(fr)})",
    )
    for n, v in ok:
        if n in on_front:
            ax.annotate(str(n), (v[0], v[1]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if wide(v[0] for _, v, _ in rows):
        ax.set_xscale("log")
    if wide(v[1] for _, v, _ in rows):
        ax.set_yscale("log")
    ax.set_xlabel(label(o0.name, o0.unit) + f" ({o0.direction})")
    ax.set_ylabel(label(o1.name, o1.unit) + f" ({o1.direction})")
    ax.legend(fontsize=8, loc="best")
    file = save(fig, out, "pareto")
    more = (
        f" The front is computed over all {len(names)} objectives; only the first two are drawn."
        if len(names) > 2
        else ""
    )
    caption = (
        f"Each point is a done trial. Orange points (labelled with their trial number) form the Pareto front: "
        f"no other feasible trial is better on every objective at once ({o0.name}: {o0.direction}, "
        f"{o1.name}: {o1.direction}); moving along it trades one objective for the other. Hollow grey "
        f"points violate an outcome constraint.{more}"
    )
    return [Drawn(file, title, caption)]
