"""The one definition of "best" (labloop.run.best): feasible first, Pareto set for several objectives."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from labloop.run import best
from labloop.run.stopping import check
from labloop.spec import CampaignSpec

BASE = {
    "name": "t",
    "parameters": [{"name": "x", "type": "continuous", "lower": 0, "upper": 1}],
    "lab": {"simulator": "thinfilm"},
    "workflow": [{"kind": "synthesize", "device": "chamber"}, {"kind": "measure", "device": "probe"}],
}


def _spec(objectives, constraints=(), **stopping) -> CampaignSpec:
    return CampaignSpec.model_validate({**BASE, "objectives": list(objectives),
                                        "outcome_constraints": list(constraints),
                                        "stopping": {"max_trials": 50, **stopping}})


def _t(n, values, state="done"):
    return SimpleNamespace(number=n, state=state, values=values, info={}, source="model")


R = {"name": "r", "plugin": "reading", "direction": "minimize"}
T = {"name": "tr", "plugin": "reading", "direction": "maximize"}
FLOOR = {"name": "floor", "plugin": "reading", "lower": 0.8}


def test_single_objective_skips_infeasible_and_unknown():
    spec = _spec([R], [FLOOR])
    trials = [_t(1, {"r": 9.7, "floor": 0.55}), _t(2, {"r": 40.0, "floor": 0.85}), _t(3, {"r": 1.0}),
              _t(4, {"r": 0.5, "floor": 0.9}, state="failed"), _t(5, {"r": 30.0, "floor": math.nan})]
    assert best.best_trial(spec, trials).number == 2


def test_no_feasible_trial_means_no_best():
    spec = _spec([R], [FLOOR])
    assert best.best_trial(spec, [_t(1, {"r": 1.0, "floor": 0.1})]) is None


@pytest.mark.parametrize("bad", [math.nan, math.inf, None, "12.5", True])
def test_not_a_number_is_never_best(bad):
    spec = _spec([R])
    assert best.best_trial(spec, [_t(1, {"r": bad}), _t(2, {"r": 50.0})]).number == 2


def test_pareto_front_and_named_best_by_hypervolume_contribution():
    spec = _spec([R, T], [FLOOR])
    trials = [_t(1, {"r": 1.0, "tr": 0.70, "floor": 0.70}),  # best r but infeasible
              _t(2, {"r": 5.0, "tr": 0.82, "floor": 0.82}),
              _t(3, {"r": 40.0, "tr": 0.90, "floor": 0.90}),
              _t(4, {"r": 6.0, "tr": 0.81, "floor": 0.81}),   # dominated by 2
              _t(5, {"r": 10.0, "tr": 0.88, "floor": 0.88})]
    assert [t.number for t in best.pareto_front(spec, trials)] == [2, 3, 5]
    named = best.best_trial(spec, trials)
    assert named.number in (2, 3, 5)
    # the named trial's loss shrinks the front the most
    pts = [[-t.values["r"], t.values["tr"]] for t in best.pareto_front(spec, trials)]
    ref = [-40.0 - 3.5, 0.81 - 0.009]
    whole = best.hypervolume(pts, ref)
    contrib = {n: whole - best.hypervolume(pts[:i] + pts[i + 1:], ref) for i, n in enumerate([2, 3, 5])}
    assert named.number == max(contrib, key=contrib.get)


def test_hypervolume_3d_matches_a_box_count():
    pts = [[1.0, 2.0, 3.0], [3.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
    # union of boxes [0,p] on a 0.5 grid, counted cell by cell
    cells = 0
    for i in range(8):
        for j in range(8):
            for k in range(8):
                c = ((i + 0.5) / 2, (j + 0.5) / 2, (k + 0.5) / 2)
                cells += any(all(c[d] < p[d] for d in range(3)) for p in pts)
    assert best.hypervolume(pts, [0.0, 0.0, 0.0]) == pytest.approx(cells / 8)


def test_target_reached_requires_feasibility():
    spec = _spec([{**R, "target": 5.0}], [FLOOR], target_reached=True)
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc)
    assert check(spec, [_t(1, {"r": 3.0, "floor": 0.5})], now, now) is None
    decision = check(spec, [_t(1, {"r": 3.0, "floor": 0.5}), _t(2, {"r": 4.0, "floor": 0.85})], now, now)
    assert decision is not None and decision.rule == "target" and decision.evidence["trial"] == 2
