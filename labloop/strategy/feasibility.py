"""The acquisition of a constrained campaign before anything measured is feasible: the probability of feasibility.

Why: constrained expected improvement (qLogNEI, qLogEI with smoothed constraints) is improvement over the best
*feasible* value, weighted by the probability of feasibility. While no observed point meets every outcome
constraint there is no feasible incumbent; botorch then measures improvement from the worst objective value seen,
and the weight is a Monte Carlo average of smoothed indicators that are all ~0 when the feasible region is far from
the data (every sample infeasible: the log-acquisition is flat, about -16, everywhere). What is left to rank
candidates is the objective itself, so the search refines the infeasible point with the best objective (measured on
the solid-state campaign, seed 4: eleven proposals in the LiOH + Mn3O4, Ar corner at impurity 0.75-0.96 against a
ceiling of 0.05; docs/benchmarks/archive.md §24). The rule of the literature (Gelbart, Snoek & Adams 2014,
"Bayesian optimization with unknown constraints", §3; Gardner et al. 2014) is: while nothing observed is
feasible, maximize the probability that a point is feasible, the product over constraints of P(c_i(x) satisfied)
under the constraint GPs (taken in log form), and switch to constrained EI once a feasible point exists.

botorch has it: :class:`~botorch.acquisition.analytic.LogProbabilityOfFeasibility`, with exact Gaussian tails
(``log_ndtr``), so the ranking stays right when every candidate is very unlikely to be feasible, which is exactly
this situation. Batches and trials in flight: the constraint GPs believe their own mean at the pending points (see
:class:`BelievedLogProbabilityOfFeasibility` for why not botorch's Monte Carlo ``qLogProbabilityOfFeasibility``).

Opt-in (``strategy.options.nothing_feasible: feasibility``), one objective only. Not the default because it measured
worse on the solid-state campaign (benchmarks/results/solid_state_feas.jsonl): over 20 seeds one at a
time it reached the target in 18 against 17 but at a median of 27 experiments against 20.5, and with four trials in
flight in 5 of 10 seeds against 8. There the objective carries information about feasibility (the target and the
impurity phases share one sample), which this rule, made for unrelated constraints, discards: it walks to the
ceiling's edge and refines feasibility there. With several objectives labloop keeps qLogNEHVI (not measured).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.acquisition.analytic import LogProbabilityOfFeasibility
from botorch.models import ModelListGP
from torch import Tensor

#: (lower, upper) limits of one modelled constraint output, either may be None
Bounds = tuple[float | None, float | None]


def at_least(i: int, lo: float) -> Callable[[Tensor], Tensor]:
    """Output ``i`` >= ``lo`` as a botorch outcome constraint (satisfied where the callable is <= 0)."""
    return lambda Z: lo - Z[..., i]


def at_most(i: int, hi: float) -> Callable[[Tensor], Tensor]:
    """Output ``i`` <= ``hi`` as a botorch outcome constraint (satisfied where the callable is <= 0)."""
    return lambda Z: Z[..., i] - hi


def feasible_count(observations: Sequence[Any], constraints: Sequence[Any]) -> int:
    """How many of ``observations`` (not failed) have a finite value within the limits of every one of
    ``constraints`` (``OutcomeConstraintSpec``); an unmeasured value counts as not feasible, as in
    :func:`labloop.run.best.constraints_met` (the strategy does not import the runtime)."""
    n = 0
    for o in observations:
        if o.failed:
            continue
        ok = True
        for c in constraints:
            v = o.values.get(c.name)
            try:
                f = float(v)
            except (TypeError, ValueError):
                ok = False
                break
            if not math.isfinite(f) or (c.lower is not None and f < c.lower) or (c.upper is not None and f > c.upper):
                ok = False
                break
        n += ok
    return n


class BelievedLogProbabilityOfFeasibility(LogProbabilityOfFeasibility):
    """botorch's analytic :class:`LogProbabilityOfFeasibility` on constraint GPs that believe the points in flight:
    each GP conditioned on its own posterior mean at the pending points (the Kriging believer labloop uses for pool
    batches, :meth:`AcquisitionMixin._believer_pool`). ``set_X_pending`` (what botorch's sequential optimizers and
    the pool's greedy loop call between picks) conditions on the pending points given here plus those.

    Why not the Monte Carlo batch form (:class:`~botorch.acquisition.logei.qLogProbabilityOfFeasibility`): its
    feasibility is a smoothed indicator averaged over posterior samples, so where every sample is infeasible (the
    case this rule is for: the feasible region lies outside the data) it ranks candidates by the smoothing's tail,
    not by the probability: on the toy of tests/test_feasibility_search.py it proposed x ~0.73-0.85 where the
    analytic form proposes the end x = 1 that the constraint's trend points to. The believer keeps the exact
    Gaussian tails; believing a pending point's (infeasible-looking) mean collapses the variance there, so the next
    point goes where feasibility is still uncertain rather than beside it."""

    def __init__(self, models: list[Any], constraints: dict[int, Bounds], X_pending: Tensor | None = None):
        self._models = list(models)
        self._base: Tensor | None = None
        super().__init__(ModelListGP(*models), constraints=constraints)
        self._base = None if X_pending is None or not len(X_pending) else X_pending.detach()
        self.X_pending = None  # type: ignore[assignment]  # what botorch's optimizers add new picks to: the base is kept apart, in _base
        self.set_X_pending(None)

    def set_X_pending(self, X_pending: Tensor | None = None) -> None:
        parts = [t for t in (self._base, X_pending) if t is not None and len(t)]
        if not parts:
            self.model = ModelListGP(*self._models)
            return
        X = torch.cat([p.detach() for p in parts], dim=-2)
        believed = []
        with torch.no_grad():
            for gp in self._models:
                mean = gp.posterior(X).mean.reshape(-1, 1)  # also fills the caches conditioning needs
                believed.append(gp.condition_on_observations(X, mean))
        self.model = ModelListGP(*believed)


def feasibility_acquisition(models: list[Any], bounds: list[Bounds], X_pending: Tensor | None) -> AcquisitionFunction:
    """The log probability that a point satisfies every one of ``bounds`` (one per model in ``models``, the
    constraint GPs), the points in flight believed (see :class:`BelievedLogProbabilityOfFeasibility`)."""
    return BelievedLogProbabilityOfFeasibility(models, dict(enumerate(bounds)), X_pending)


def constraint_scale(values: Tensor, lower: float | None, upper: float | None, option: Any = False):
    """``(modelled values, lower, upper)`` of one outcome constraint: as measured, or log-transformed.

    Why log (``log_constraint``: False, the default; True; 'auto'): a quantity capped from above whose good end is
    near zero (an impurity fraction under 0.05, a defect density, a leakage current) is measured mostly far above
    its limit at first (solid-state campaign: 0.4-0.98 against 0.05). On that raw scale everything that decides
    feasibility lies in the bottom few percent of the range, below what the GP's noise resolves: with the
    probability of feasibility the search sat at 0.058-0.063 for 8 trials (seed 18), the GP unable to tell them
    from 0.05. Log spreads that region out (0.05 to 0.06 is 6 % of log(0.05)..log(0.98), 1 % on the raw scale), as
    ``log_outcome: auto`` does for a minimized objective. 'auto' applies it to an upper limit alone (a lower limit
    is the other way round: log would compress its good end), when every value is >= 0 and the largest is at
    least 10 times the limit; values below 1/100 of the limit (exact zeros of a fitted fraction) count as that
    floor: they are all well inside. Opt-in: measured with 'auto' on the solid-state campaign (20 seeds, one at a
    time, benchmarks/results/solid_state_feas.jsonl) the median fell from 20.5 to 16.5 experiments and from 20.7 to
    14.6 furnace-days, but run by run it won 7 seeds and lost 10 (paired Wilcoxon p = 0.72): not shown better."""
    if option is False or lower is not None or upper is None or upper <= 0 or len(values) == 0:
        return values, lower, upper
    if float(values.min()) < 0 or (option == "auto" and float(values.max()) < 10 * upper):
        return values, lower, upper
    return values.clamp(min=upper / 100).log(), None, math.log(upper)


def kept(n_ok: int) -> str:
    """Why the configured acquisition ran although nothing measured is feasible (``acquisition_reason``)."""
    return (
        f"none of the {n_ok} successful measurements meets every outcome constraint: the constrained acquisition's "
        f"feasibility weight is then small everywhere and the objective ranks candidates (nothing_feasible: "
        f"constrained, the default; 'feasibility' would maximize the probability of feasibility instead)"
    )


def reason(n_ok: int, n_constraints: int) -> str:
    """Why the probability of feasibility was maximized, for the proposal's info (``acquisition_reason``)."""
    return (
        f"none of the {n_ok} successful measurements meets every outcome constraint: maximized the probability of "
        f"feasibility over {n_constraints} modelled constraint(s) (Gelbart et al. 2014) instead of constrained "
        f"expected improvement, which has no feasible incumbent to improve on; constrained EI returns with the first "
        f"feasible measurement"
    )
