"""Leave-one-out cross-validation of the model for every objective and outcome constraint, on the scale the model
uses: predicted against measured, one panel per quantity.

Why: the prediction each proposal stored covers only the first objective, at the points the optimizer chose. A
researcher also asks whether the model of the transmittance floor or of the second objective can be trusted. So
this fits, for each quantity, the GP labloop's strategy fits (:func:`labloop.strategy.modeling.fit_gp` on the
campaign's search space, same outcome scale: log for a positive objective spanning decades, as
:class:`~labloop.strategy.modeling.ObjectiveTransform` decides with the campaign's ``log_outcome``; constraints in
raw units) on every done trial, and predicts each trial from all the others with the fitted hyperparameters
(closed form, Rasmussen & Williams eq. 5.12: ``mu_-i = y_i - [K^-1 y]_i / [K^-1]_ii``, ``var_-i = 1/[K^-1]_ii``;
the hyperparameters saw the left-out point, so this is slightly optimistic, and says so). The 95 % interval is
drawn on the model's scale, so a log-modelled sheet resistance never gets a negative bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labloop.spec import ObjectiveSpec, OutcomeConstraintSpec

from .gather import ReportData
from .plotting import BLUE, GREY, Drawn, Item, NotDrawn, dense, label, new_figure, save

MIN_POINTS = 4


@dataclass
class LOO:
    name: str
    unit: str | None
    log: bool
    trials: list[int]
    measured: np.ndarray
    mean: np.ndarray  # on the measured scale (back-transformed)
    lo: np.ndarray
    hi: np.ndarray

    @property
    def coverage(self) -> float:
        return float(np.mean((self.measured >= self.lo) & (self.measured <= self.hi)))

    @property
    def rmse(self) -> float:
        """On the model's scale (log10 units when log)."""
        f = np.log10 if self.log else (lambda a: a)
        return float(np.sqrt(np.mean((f(self.mean) - f(self.measured)) ** 2)))


def quantities(data: ReportData) -> list[ObjectiveSpec | OutcomeConstraintSpec]:
    return [*data.spec.objectives, *data.spec.outcome_constraints]


def model_log(data: ReportData, q: ObjectiveSpec | OutcomeConstraintSpec, values: list[float]) -> bool:
    """Whether the strategy models ``q`` on a log scale (objectives only; constraints are modelled raw)."""
    from labloop.strategy.modeling import ObjectiveTransform

    if not isinstance(q, ObjectiveSpec):
        return False
    option = (
        (data.spec.strategy.options or {}).get("log_outcome", "auto")
        if data.spec.strategy.name == "botorch"
        else "auto"
    )
    return ObjectiveTransform.infer(q, values, option).log


def loo(data: ReportData, q: ObjectiveSpec | OutcomeConstraintSpec) -> LOO | str:
    """The cross-validation of one quantity, or why there is none."""
    import torch

    from labloop.strategy.modeling import fit_gp
    from labloop.strategy.space import DTYPE, SearchSpace

    rows = [
        (t.number, t.params, float(t.values[q.name]))
        for t in data.trials
        if t.state == "done"
        and isinstance((t.values or {}).get(q.name), (int, float))
        and not isinstance(t.values[q.name], bool)
        and math.isfinite(float(t.values[q.name]))
    ]
    if len(rows) < MIN_POINTS:
        return f"{len(rows)} done trial{'s' if len(rows) != 1 else ''} measured it: too few to cross-validate"
    y = np.array([v for _, _, v in rows])
    log = model_log(data, q, list(y))
    space = SearchSpace.from_spec(data.spec)
    try:
        X = space.encode_many([p for _, p, _ in rows])
    except Exception as exc:  # noqa: BLE001 - a stored trial outside today's space (an edited campaign)
        return f"the trials do not fit the campaign's search space ({exc})"
    g = np.log(y) if log else y
    model = fit_gp(space, X, torch.tensor(g, dtype=DTYPE).unsqueeze(-1), label=f"'{q.name}' (report)")
    from botorch.models.transforms.outcome import Standardize

    standardize = model.outcome_transform
    assert isinstance(standardize, Standardize), "fit_gp standardizes its outcomes"
    with torch.no_grad():
        feats = space.features(X)
        K = model.covar_module(feats).to_dense() + model.likelihood.noise.squeeze() * torch.eye(len(rows), dtype=DTYPE)
        mu0 = model.mean_module(feats)
        ystd = standardize(torch.tensor(g, dtype=DTYPE).unsqueeze(-1))[0].squeeze(-1)
        Kinv = torch.linalg.inv(K)
        r = ystd - mu0
        diag = torch.diagonal(Kinv)
        loo_std = ystd - (Kinv @ r) / diag  # the standardized leave-one-out means and sds
        sd_std = (1.0 / diag).sqrt()
        means, stdvs = standardize.means.squeeze(), standardize.stdvs.squeeze()
        m = (loo_std * stdvs + means).numpy()
        sd = (sd_std * stdvs).numpy()
    lo, hi = m - 1.96 * sd, m + 1.96 * sd
    back = np.exp if log else (lambda a: a)
    return LOO(q.name, q.unit, log, [n for n, _, _ in rows], y, back(m), back(lo), back(hi))


def draw(data: ReportData, out: Path) -> list[Item]:
    title = "Leave-one-out cross-validation of every objective and constraint"
    results = [(q, loo(data, q)) for q in quantities(data)]
    drawn = [(q, r) for q, r in results if isinstance(r, LOO)]
    why = "; ".join(f"{q.name}: {r}" for q, r in results if isinstance(r, str))
    if not drawn:
        return [NotDrawn(title, why or "the campaign measures nothing")]
    fig, axes = new_figure(4.2 * len(drawn), 4.2, 1, len(drawn))
    lines = []
    for ax, (q, r) in zip(axes, drawn):
        ax.errorbar(
            r.measured,
            r.mean,
            yerr=[np.maximum(r.mean - r.lo, 0), np.maximum(r.hi - r.mean, 0)],
            fmt="o",
            ms=4,
            color=BLUE,
            ecolor=BLUE,
            alpha=0.7,
            elinewidth=1,
            rasterized=dense(len(r.trials)),
        )
        allv = np.concatenate([r.measured, r.lo, r.hi])
        allv = allv[np.isfinite(allv) & ((allv > 0) if r.log else True)]
        lims = (float(allv.min()), float(allv.max()))
        ax.plot(lims, lims, color=GREY, ls="--", lw=1)
        if r.log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"measured {label(q.name, q.unit)}", fontsize=8)
        ax.set_ylabel(f"predicted without it {label(q.name, q.unit)}", fontsize=8)
        ax.set_title(f"{q.name} ({'log scale, as modelled' if r.log else 'linear, as modelled'})", fontsize=9)
        ax.tick_params(labelsize=8)
        err = f"RMSE {r.rmse:.3g} {'decades' if r.log else (q.unit or '')}".rstrip()
        lines.append(f"{q.name}: {len(r.trials)} trials, {r.coverage:.0%} inside their 95 % interval, {err}")
    file = save(fig, out, "loo-cross-validation")
    note = f" Not cross-validated: {why}." if why else ""
    return [
        Drawn(
            file,
            title,
            "Each point is a done trial predicted by the model fitted on all the other trials "
            "(the GP the strategy fits, on its scale: log for a positive objective spanning decades, so the "
            "95 % bar stays positive) against its measurement; the dashed line is prediction = "
            "measurement. The hyperparameters were fitted once on every trial, so this is slightly "
            "optimistic. " + "; ".join(lines) + "." + note,
        )
    ]
