"""The one definition of a campaign's "best", used by every surface (status, watch, stream, dashboard, report,
export) and by the stopping rules.

Why one module: each surface used to pick its own "best" (the first objective's best value, constraints ignored), so
the status line could name a film that breaks the campaign's transmittance floor while the report's Pareto front
left it out. The rules here:

* **Feasible first.** A trial can be best only if it is ``done``, every objective has a finite number, and every
  outcome constraint has a finite number inside its limits. A trial whose feasibility is unknown (a constraint value
  missing) is never best.
* **One objective:** the feasible trial with the best value (ties: the earlier trial).
* **Several objectives:** "the best" is the feasible Pareto set. Where one trial must be named (status line, the
  stream's ``best`` event, the report's best-trial figures) the campaign's ``best.rule`` says which member:

  - ``hypervolume`` (default): the largest exclusive hypervolume contribution, the trial whose loss would shrink the
    front the most. The reference point is each objective's ``reference`` where the campaign gives one, else just
    below the worst feasible value.
  - ``weighted``: the largest sum of ``objectives[].weight`` (default 1) x score, each objective's score scaled to
    0..1 over the feasible trials (so ohm/sq and fractions weigh alike).
  - ``primary``: the member best on the objective ``best.primary`` (the others only decide the Pareto set).

  Ties go to the earlier trial.
* ``target_met``: every objective with a target (or band) reaches it **and** the trial is feasible.

This module imports only the campaign spec: the light CLI commands use it without the optimizer.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

from labloop.spec import CampaignSpec, ObjectiveSpec


def real_number(v: Any) -> float | None:
    """``v`` as a finite real float, or None: NaN, infinities, None, strings (even "12.5"), bools (numpy's too) and
    anything else that is not a real number are no value. The one test both a plugin's result (before it is stored)
    and a stored value (before it is ranked) pass."""
    if isinstance(v, (bool, str, bytes)) or not isinstance(v, numbers.Real) or type(v).__name__ == "bool_":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def constraints_met(spec: CampaignSpec, values: dict[str, Any] | None) -> bool:
    """Whether every outcome constraint has a finite value within its limits (unknown counts as not met)."""
    values = values or {}
    for c in spec.outcome_constraints:
        v = real_number(values.get(c.name))
        if v is None:
            return False
        if (c.lower is not None and v < c.lower) or (c.upper is not None and v > c.upper):
            return False
    return True


def feasible(spec: CampaignSpec, values: dict[str, Any] | None) -> bool:
    """Every objective has a finite number and every outcome constraint is met."""
    values = values or {}
    return all(real_number(values.get(o.name)) is not None for o in spec.objectives) and constraints_met(spec, values)


def target_met(spec: CampaignSpec, values: dict[str, Any] | None) -> bool:
    """Every objective with a goal (target or band) reaches it, and the values are feasible."""
    goals = [o for o in spec.objectives if o.target is not None or o.direction == "band"]
    values = values or {}
    return bool(goals) and feasible(spec, values) and all(o.reached(real_number(values.get(o.name))) for o in goals)


def score(o: ObjectiveSpec, v: float) -> float:
    """The value on a larger-is-better scale (band objectives: minus the distance to the band's middle)."""
    if o.direction == "maximize":
        return v
    if o.direction == "minimize":
        return -v
    assert o.band is not None
    return -abs(v - 0.5 * (o.band[0] + o.band[1]))


def feasible_done(spec: CampaignSpec, trials: Iterable[Any]) -> list[Any]:
    """The done, feasible trials, in the order given."""
    return [t for t in trials if str(t.state) == "done" and feasible(spec, t.values)]


def _scores(spec: CampaignSpec, t: Any) -> list[float]:
    return [score(o, float(t.values[o.name])) for o in spec.objectives]


def pareto_front(spec: CampaignSpec, trials: Iterable[Any]) -> list[Any]:
    """The feasible done trials no other feasible done trial beats on every objective (the campaign's "best" when
    it has several objectives; with one objective: the best trial, or ties of it)."""
    cands = feasible_done(spec, trials)
    scored = [(t, _scores(spec, t)) for t in cands]
    out = []
    for t, s in scored:
        dominated = any(all(a >= b for a, b in zip(s2, s)) and any(a > b for a, b in zip(s2, s)) for _, s2 in scored)
        if not dominated:
            out.append(t)
    return out


def hypervolume(points: Sequence[Sequence[float]], ref: Sequence[float]) -> float:
    """Hypervolume dominated by ``points`` (larger is better) above ``ref``, by slicing the last objective.
    Exact; fine for the few tens of points of a campaign's front."""
    pts = [list(p) for p in points if all(a > r for a, r in zip(p, ref))]
    if not pts:
        return 0.0
    d = len(ref)
    if d == 1:
        return max(p[0] for p in pts) - ref[0]
    if d == 2:
        pts.sort(key=lambda p: -p[0])
        area, best_y = 0.0, ref[1]
        for x, y in pts:
            if y > best_y:
                area += (x - ref[0]) * (y - best_y)
                best_y = y
        return area
    levels = sorted({p[-1] for p in pts})
    total, lower = 0.0, ref[-1]
    for level in levels:
        above = [p[:-1] for p in pts if p[-1] >= level]
        total += (level - lower) * hypervolume(above, ref[:-1])
        lower = level
    return total


def _reference(spec: CampaignSpec, scored: list[list[float]]) -> list[float]:
    ref = []
    for i, o in enumerate(spec.objectives):
        worst = min(s[i] for s in scored)
        spread = max(s[i] for s in scored) - worst
        r = worst - 0.1 * (spread or abs(worst) or 1.0)
        if o.reference is not None and o.direction != "band" and score(o, o.reference) < worst:
            r = score(o, o.reference)  # the campaign's worst acceptable value, where it lies below every point
        ref.append(r)
    return ref


def _normalized(spec: CampaignSpec, scored: list[list[float]], among: list[list[float]]) -> list[list[float]]:
    """Each score scaled to 0..1 by the range of ``among`` (1 where every trial scores alike)."""
    lo = [min(s[i] for s in among) for i in range(len(spec.objectives))]
    hi = [max(s[i] for s in among) for i in range(len(spec.objectives))]
    return [[(v - a) / (b - a) if b > a else 1.0 for v, a, b in zip(s, lo, hi)] for s in scored]


def _merits(spec: CampaignSpec, front: list[Any], feasible_trials: list[Any]) -> list[float]:
    """How much each member of the front deserves to be named, by the campaign's ``best.rule``."""
    scored = [_scores(spec, t) for t in front]
    rule = spec.best.rule
    if rule == "primary":
        assert spec.best.primary is not None  # the spec's validator requires it with rule primary
        i = [o.name for o in spec.objectives].index(spec.best.primary)
        return [s[i] for s in scored]
    if rule == "weighted":
        weights = [1.0 if o.weight is None else o.weight for o in spec.objectives]
        norm = _normalized(spec, scored, [_scores(spec, t) for t in feasible_trials])
        return [sum(w * v for w, v in zip(weights, s)) for s in norm]
    ref = _reference(spec, [_scores(spec, t) for t in feasible_trials])
    whole = hypervolume(scored, ref)
    return [whole - hypervolume(scored[:i] + scored[i + 1 :], ref) for i in range(len(front))]


def best_trial(spec: CampaignSpec, trials: Iterable[Any]) -> Any | None:
    """The one trial to name as best (see the module's docstring), or None if no trial is feasible yet."""
    trials = list(trials)
    if len(spec.objectives) == 1:
        o = spec.objectives[0]
        best = None
        for t in feasible_done(spec, trials):
            if best is None or o.better(float(t.values[o.name]), float(best.values[o.name])):
                best = t
        return best
    front = pareto_front(spec, trials)
    if len(front) <= 1:
        return front[0] if front else None
    merit = _merits(spec, front, feasible_done(spec, trials))
    i = max(range(len(front)), key=lambda k: (merit[k], -k))
    return front[i]


def ranked(spec: CampaignSpec, trials: Iterable[Any]) -> list[Any]:
    """The feasible done trials, best first: the named best, then the rest of the Pareto set (several objectives),
    then the other feasible trials by the first objective (ties: the earlier trial). Infeasible trials are never
    listed, so figures of "the best trials" (the report's dock spectra) show only films the campaign accepts."""
    trials = list(trials)
    cands = feasible_done(spec, trials)
    top = best_trial(spec, cands)
    if top is None:
        return []
    o = spec.objectives[0]
    front = {t.number for t in pareto_front(spec, cands)} if len(spec.objectives) > 1 else set()
    rest = sorted(
        (t for t in cands if t is not top),
        key=lambda t: (t.number not in front, -score(o, float(t.values[o.name])), t.number),
    )
    return [top, *rest]
