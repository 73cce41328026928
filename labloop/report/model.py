"""What the model believed and how right it was: parameter importance over the campaign, and its predictions
against the measurements.

Both come from the evidence every model proposal stores with its trial (``Trial.info``, see
:mod:`labloop.strategy.bayes`): ``importance`` (inverse ARD lengthscales, normalized) and ``predicted`` (the
posterior mean and 95 % interval at the proposed point, made *before* the trial ran). So predicted-against-measured
is an honest out-of-sample check, and nothing is refitted. A campaign whose strategy stores no importance (random
search) gets the rank correlation of each numeric parameter with the first objective instead, labelled as such.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from labloop.spec import CategoricalParameter, CompositionParameter, FixedParameter

from .gather import ReportData
from .plotting import BLUE, CYCLE, GREY, ORANGE, Drawn, Item, NotDrawn, dense, label, new_figure, save, trial_axis


def importance_ranking(data: ReportData) -> tuple[list[str], str]:
    """Parameters, most important first, and where that order comes from."""
    latest = next((t for t in reversed(data.trials) if (t.info or {}).get("importance")), None)
    if latest is not None:
        imp = latest.info["importance"]
        return sorted(imp, key=lambda k: -float(imp[k])), f"the model's importance at trial {latest.number}"
    corr = rank_correlations(data)
    if corr:
        return sorted(corr, key=lambda k: -abs(corr[k])), "rank correlation with the first objective"
    return searched(data), "the campaign file's order"


def searched(data: ReportData) -> list[str]:
    """Parameters the campaign searches (fixed ones left out; compositions as their components)."""
    out: list[str] = []
    for p in data.spec.parameters:
        if isinstance(p, FixedParameter):
            continue
        out.extend(p.components if isinstance(p, CompositionParameter) else [p.name])
    return out


def rank_correlations(data: ReportData) -> dict[str, float]:
    """Spearman correlation of each numeric parameter with the first objective over done trials (5 at least)."""
    o = data.spec.objectives[0]
    done = [t for t in data.done if isinstance(t.values.get(o.name), (int, float))]
    if len(done) < 5:
        return {}
    y = _ranks([float(t.values[o.name]) for t in done])
    out = {}
    cats = {p.name for p in data.spec.parameters if isinstance(p, CategoricalParameter)}
    for name in searched(data):
        if name in cats:
            continue
        xs = [t.params.get(name) for t in done]
        nums = [float(v) for v in xs if isinstance(v, (int, float))]
        if len(nums) != len(xs):
            continue
        x = _ranks(nums)
        if x.std() == 0 or y.std() == 0:
            continue
        out[name] = float(np.corrcoef(x, y)[0, 1])
    return out


def _ranks(values: list[float]) -> np.ndarray:
    return np.argsort(np.argsort(np.asarray(values))).astype(float)


def draw(data: ReportData, out: Path) -> list[Item]:
    return [_importance(data, out), _predicted(data, out)]


def _importance(data: ReportData, out: Path) -> Item:
    title = "Parameter importance over the campaign"
    series = [(t.number, t.info["importance"]) for t in data.trials if (t.info or {}).get("importance")]
    if series:
        order, _ = importance_ranking(data)
        fig, (ax,) = new_figure()
        for i, name in enumerate(order):
            pts = [(n, float(imp[name])) for n, imp in series if name in imp]
            ax.plot(
                [n for n, _ in pts],
                [v for _, v in pts],
                "-" if dense(len(pts)) else "o-",
                ms=3,
                color=CYCLE[i % len(CYCLE)],
                label=name,
            )
        trial_axis(ax)
        ax.set_xlabel("trial (model proposals)")
        ax.set_ylabel("relative importance")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8, loc="best")
        file = save(fig, out, "importance")
        last = series[-1][1]
        top = ", ".join(f"{k} {float(last[k]):.0%}" for k in order[:3])
        return Drawn(
            file,
            title,
            "The importance the model gave each parameter when it proposed each trial: the "
            "inverse of its fitted lengthscale (how little a parameter must change to change the result), "
            f"normalized to sum to one. Lines that settle mean the model's view settled. At the last "
            f"proposal: {top}.",
        )
    corr = rank_correlations(data)
    if not corr:
        return NotDrawn(
            title,
            "the strategy stored no importance (no model proposals) and fewer than 5 trials "
            "succeeded, too few for a correlation",
        )
    names = sorted(corr, key=lambda k: abs(corr[k]))
    fig, (ax,) = new_figure(6, 0.5 + 0.4 * len(names))
    ax.barh(names, [corr[k] for k in names], color=[BLUE if corr[k] >= 0 else ORANGE for k in names])
    ax.axvline(0, color=GREY, lw=0.8)
    ax.set_xlim(-1, 1)
    o = data.spec.objectives[0]
    ax.set_xlabel(f"Spearman rank correlation with {o.name}")
    file = save(fig, out, "importance")
    return Drawn(
        file,
        title,
        f"No model proposal stored an importance (strategy '{data.spec.strategy.name}'), so "
        f"this is the rank correlation of each numeric parameter with {o.name} over the "
        f"{len(data.done)} done trials: +1 means {o.name} rises with the parameter, -1 that it falls, 0 no "
        "monotonic link (a parameter with an optimum inside its range can matter and still show ~0).",
    )


def _predicted(data: ReportData, out: Path) -> Item:
    title = "Predicted against measured"
    rows = []
    for t in data.trials:
        pred = (t.info or {}).get("predicted") or {}
        name = pred.get("objective")
        measured = (t.values or {}).get(name) if name else None
        if t.state != "done" or not isinstance(measured, (int, float)) or not math.isfinite(measured):
            continue
        mean, interval = pred.get("mean"), pred.get("interval_95")
        if isinstance(mean, (int, float)) and isinstance(interval, (list, tuple)) and len(interval) == 2:
            rows.append((t.number, float(measured), float(mean), float(interval[0]), float(interval[1])))
    if not rows:
        return NotDrawn(
            title,
            "no done trial carries the model's prediction (the strategy stores one with each "
            "model proposal; space-filling and random trials have none)",
        )
    name = next(
        (t.info or {}).get("predicted", {}).get("objective")
        for t in data.trials
        if ((t.info or {}).get("predicted") or {}).get("objective")
    )
    o = next((x for x in data.spec.objectives if x.name == name), data.spec.objectives[0])
    inside = sum(1 for _, m, _, lo, hi in rows if lo <= m <= hi)
    fig, (ax,) = new_figure(5.5, 5)
    xs = [m for _, m, _, _, _ in rows]
    ys = [p for _, _, p, _, _ in rows]
    lo = [max(p - a, 0) for _, _, p, a, _ in rows]
    hi = [max(b - p, 0) for _, _, p, _, b in rows]
    ax.errorbar(
        xs,
        ys,
        yerr=[lo, hi],
        fmt="o",
        ms=4,
        color=BLUE,
        ecolor=BLUE,
        alpha=0.7,
        elinewidth=1,
        label="prediction, 95 % interval",
        rasterized=dense(len(rows)),
    )
    allv = xs + ys + [p - a for p, a in zip(ys, lo)] + [p + b for p, b in zip(ys, hi)]
    # the scale the model uses (log for a positive objective spanning decades), never a guess from the points
    from .crossval import model_log

    log = (
        model_log(
            data,
            o,
            [float(t.values[o.name]) for t in data.done if isinstance((t.values or {}).get(o.name), (int, float))],
        )
        and min(allv) > 0
    )
    finite = [v for v in allv if math.isfinite(v) and (v > 0 or not log)]
    lims = (min(finite), max(finite))
    ax.plot(lims, lims, color=GREY, ls="--", lw=1, label="prediction = measurement")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(f"measured {label(o.name, o.unit)}")
    ax.set_ylabel(f"predicted {label(o.name, o.unit)}")
    ax.legend(fontsize=8, loc="best")
    file = save(fig, out, "predicted-vs-measured")
    share = inside / len(rows)
    return Drawn(
        file,
        title,
        f"Each point is a model proposal: the model's prediction of {o.name} made before the "
        f"trial ran (posterior mean, bar = 95 % interval) against what was then measured. Points on the "
        f"dashed line were predicted exactly; {inside} of {len(rows)} measurements ({share:.0%}) fell "
        f"inside their interval (a calibrated model: about 95 %; the optimizer proposes where the model "
        f"is unsure, so fewer is common early on).",
    )
