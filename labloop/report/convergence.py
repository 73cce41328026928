"""Best so far against trials, with the target and what random search would have found.

The random-search expectation is computed from the campaign's own data, not from a simulator: its space-filling
trials (source ``sobol`` or ``random``: points chosen without looking at any result) are a sample of what random
sampling of this space yields, failures included. The distribution of the best of ``n`` draws with replacement from
that sample has a closed form over its order statistics (no Monte-Carlo noise); the figure draws its median and its
middle half. The median, not the mean: objectives such as a sheet resistance span decades, and one insulating
film in the sample would drag a mean far from anything random search typically finds. It is honest only as far as
the sample reaches: beyond the sample's size it levels off at the sample's best, so the line is drawn solid up to
the number of such trials and dashed beyond, and the caption says so.

With outcome constraints, "best" means the best feasible value (labloop/run/best.py, as every other surface says
it): a trial over a constraint is drawn hollow and never sets the best so far, and a random draw over a constraint
counts as a draw without a result, as a failed one does.
"""

from __future__ import annotations

from pathlib import Path

from labloop.run.best import constraints_met
from labloop.spec import ObjectiveSpec

from .gather import ReportData
from .plotting import (
    BLUE,
    GREY,
    ORANGE,
    RED,
    Drawn,
    Item,
    NotDrawn,
    dense,
    label,
    new_figure,
    objective_values,
    save,
    slug,
    trial_axis,
    wide,
)

#: Sources of proposals chosen without looking at any result.
RANDOM_SOURCES = ("sobol", "random")
#: Draws with a result needed before the expectation is drawn at all.
MIN_DRAWS = 3


def best_of_n(values: list[float], draws: int, n_max: int, minimize: bool, q: float = 0.5) -> list[float | None]:
    """The ``q`` quantile (0.5: the median) of the best value of ``n`` random draws (``n`` = 1..n_max) with
    replacement from ``draws`` equally likely outcomes of which ``values`` gave a result (the others failed), given
    that at least one of the ``n`` succeeded: the smallest ``v_j`` (best first) whose probability of being matched
    or beaten is at least ``q``.

    With the results sorted best first ``v_1..v_m`` and ``k`` draws, the best of ``n`` is ``v_j`` or better with
    probability ``1 - (1 - j/k)^n``; divided by the chance that not all ``n`` failed, ``1 - (1 - m/k)^n``."""
    k, m = draws, len(values)
    if k <= 0 or m == 0:
        return [None] * n_max
    ordered = sorted(values, reverse=not minimize)
    out: list[float | None] = []
    for n in range(1, n_max + 1):
        some = 1 - (1 - m / k) ** n
        j = next((j for j in range(1, m + 1) if (1 - (1 - j / k) ** n) / some >= q - 1e-12), m)
        out.append(ordered[j - 1])
    return out


def best_so_far(points: list[tuple[int, float]], ok: set[int], o: ObjectiveSpec) -> list[tuple[int, float]]:
    """(trial, best value up to it) at each trial of ``points`` in ``ok`` (the feasible ones): a trial over an
    outcome constraint never sets the best, as in :mod:`labloop.run.best`."""
    best: list[tuple[int, float]] = []
    for n, v in points:
        if n in ok:
            best.append((n, v if not best or o.better(v, best[-1][1]) else best[-1][1]))
    return best


def draw(data: ReportData, out: Path) -> list[Item]:
    items: list[Item] = []
    for o in data.spec.objectives[:3]:
        items.append(_one(data, o, out))
    return items


def _one(data: ReportData, o: ObjectiveSpec, out: Path) -> Item:
    title = f"Best so far: {o.name}"
    points = objective_values(o, data.trials)
    if not points:
        return NotDrawn(title, "no trial has a measured value of this objective yet")
    ok = {t.number for t in data.trials if constraints_met(data.spec, t.values)}
    best = best_so_far(points, ok, o)
    last = data.trials[-1].number
    fig, (ax,) = new_figure()
    shown = [(n, v) for n, v in points if n in ok]
    over = [(n, v) for n, v in points if n not in ok]
    ax.scatter(
        [n for n, _ in shown],
        [v for _, v in shown],
        s=12,
        color=GREY,
        alpha=0.5,
        label="each trial",
        rasterized=dense(len(points)),
    )
    if over:
        ax.scatter(
            [n for n, _ in over],
            [v for _, v in over],
            s=14,
            facecolors="none",
            edgecolors=GREY,
            label=f"over a constraint ({len(over)})",
            rasterized=dense(len(points)),
        )
    if best:
        ax.step(
            [n for n, _ in best] + [last],
            [v for _, v in best] + [best[-1][1]],
            where="post",
            color=BLUE,
            lw=2,
            marker="o",
            ms=3,
            markevery=list(range(len(best))),  # one feasible trial, the last, is a point: the line alone is not seen
            label="best so far",
        )
    failed = [t.number for t in data.trials if t.state == "failed"]
    ticks = " Red ticks on the bottom edge mark failed trials." if failed else ""
    if failed:
        ax.plot(
            failed,
            [0] * len(failed),
            "|",
            color=RED,
            ms=10,
            transform=ax.get_xaxis_transform(),
            label=f"failed ({len(failed)})",
        )
    target = ""
    if o.target is not None:
        ax.axhline(o.target, color=RED, ls=":", lw=1.5, label=f"target {o.target:g}")
        target = f" The dotted red line is the target ({o.target:g})."
    elif o.band is not None:
        ax.axhspan(o.band[0], o.band[1], color=RED, alpha=0.1, label="target band")
        target = f" The shaded band is the target band [{o.band[0]:g}, {o.band[1]:g}]."
    rnd = _random_line(data, o, ax, last, ok)
    if wide([v for _, v in points] + ([o.target] if o.target else [])):
        ax.set_yscale("log")
    trial_axis(ax)
    ax.set_ylabel(label(o.name, o.unit))
    ax.legend(fontsize=8, loc="best")
    file = save(fig, out, f"convergence-{slug(o.name)}")
    direction = {"minimize": "lower is better", "maximize": "higher is better"}.get(o.direction, "closer to the band")
    if not data.spec.outcome_constraints:
        found = "the blue step line is the best value found up to that trial."
    elif best:
        names = ", ".join(c.name for c in data.spec.outcome_constraints)
        found = (
            f"hollow dots broke an outcome constraint ({names}) and do not count; the blue step line is the best "
            "feasible value found up to that trial."
        )
    else:
        found = "no trial has met every outcome constraint yet, so there is no best so far (hollow dots: over one)."
    caption = f"Each grey dot is a trial's measured {o.name} ({direction}); {found}{target}{ticks} " + rnd
    return Drawn(file, title, caption)


def _random_line(data: ReportData, o: ObjectiveSpec, ax, last: int, ok: set[int]) -> str:
    if o.direction == "band":
        return "No random-search expectation is drawn for a band objective."
    draws = [t for t in data.trials if t.source in RANDOM_SOURCES and t.state in ("done", "failed")]
    # a draw over an outcome constraint is a draw without a usable result, as a failed one is
    values = [v for _, v in objective_values(o, [t for t in draws if t.number in ok])]
    if len(values) < MIN_DRAWS:
        return (
            f"No random-search expectation: the campaign has {len(values)} space-filling trial(s) with a result "
            f"{'within the outcome constraints ' if data.spec.outcome_constraints else ''}(sobol/random), fewer "
            f"than {MIN_DRAWS}."
        )
    k = len(draws)
    minimize = o.direction == "minimize"
    mid, lo, hi = (best_of_n(values, k, last, minimize, q) for q in (0.5, 0.25, 0.75))
    xs = list(range(1, last + 1))
    ax.step(xs[:k], mid[:k], where="mid", color=ORANGE, lw=1.5, label="random search (median best of n)")
    ax.fill_between(xs, lo, hi, step="mid", color=ORANGE, alpha=0.15, lw=0)
    if last > k:
        ax.step(xs[k - 1 :], mid[k - 1 :], where="mid", color=ORANGE, lw=1.5, ls="--")
    return (
        f"The orange line is the median best of n random draws (shaded: the middle half of outcomes), computed "
        f"from this campaign's {k} space-filling trials (sobol/random: chosen without looking at results; "
        f"{k - len(values)} of them failed{' or broke a constraint' if data.spec.outcome_constraints else ''}) as "
        f"draws with replacement; it is dashed beyond {k} draws, where it "
        f"can only level off at the best of those {k} and so understates what a longer random search would "
        f"find."
    )
