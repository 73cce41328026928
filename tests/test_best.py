"""The one definition of "best" (labloop.run.best): feasible first, Pareto set for several objectives."""

from __future__ import annotations

import math
from datetime import UTC
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
    return CampaignSpec.model_validate(
        {
            **BASE,
            "objectives": list(objectives),
            "outcome_constraints": list(constraints),
            "stopping": {"max_trials": 50, **stopping},
        }
    )


def _t(n, values, state="done"):
    return SimpleNamespace(number=n, state=state, values=values, info={}, source="model")


R = {"name": "r", "plugin": "reading", "direction": "minimize"}
T = {"name": "tr", "plugin": "reading", "direction": "maximize"}
FLOOR = {"name": "floor", "plugin": "reading", "lower": 0.8}


def test_single_objective_skips_infeasible_and_unknown():
    spec = _spec([R], [FLOOR])
    trials = [
        _t(1, {"r": 9.7, "floor": 0.55}),
        _t(2, {"r": 40.0, "floor": 0.85}),
        _t(3, {"r": 1.0}),
        _t(4, {"r": 0.5, "floor": 0.9}, state="failed"),
        _t(5, {"r": 30.0, "floor": math.nan}),
    ]
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
    trials = [
        _t(1, {"r": 1.0, "tr": 0.70, "floor": 0.70}),  # best r but infeasible
        _t(2, {"r": 5.0, "tr": 0.82, "floor": 0.82}),
        _t(3, {"r": 40.0, "tr": 0.90, "floor": 0.90}),
        _t(4, {"r": 6.0, "tr": 0.81, "floor": 0.81}),  # dominated by 2
        _t(5, {"r": 10.0, "tr": 0.88, "floor": 0.88}),
    ]
    assert [t.number for t in best.pareto_front(spec, trials)] == [2, 3, 5]
    named = best.best_trial(spec, trials)
    assert named.number in (2, 3, 5)
    # the named trial's loss shrinks the front the most
    pts = [[-t.values["r"], t.values["tr"]] for t in best.pareto_front(spec, trials)]
    ref = [-40.0 - 3.5, 0.81 - 0.009]
    whole = best.hypervolume(pts, ref)
    contrib = {n: whole - best.hypervolume(pts[:i] + pts[i + 1 :], ref) for i, n in enumerate([2, 3, 5])}
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
    from datetime import datetime

    now = datetime.now(UTC)
    assert check(spec, [_t(1, {"r": 3.0, "floor": 0.5})], now, now) is None
    decision = check(spec, [_t(1, {"r": 3.0, "floor": 0.5}), _t(2, {"r": 4.0, "floor": 0.85})], now, now)
    assert decision is not None and decision.rule == "target" and decision.evidence["trial"] == 2


FRONT = [
    _t(1, {"r": 1.0, "tr": 0.70, "floor": 0.70}),  # infeasible: never named, never in the scaling
    _t(2, {"r": 5.0, "tr": 0.82, "floor": 0.82}),
    _t(3, {"r": 40.0, "tr": 0.90, "floor": 0.90}),
    _t(5, {"r": 10.0, "tr": 0.88, "floor": 0.88}),
]


def _spec_best(best_section, weights=(None, None)):
    objs = [{**o, **({"weight": w} if w is not None else {})} for o, w in zip([R, T], weights)]
    return CampaignSpec.model_validate(
        {**BASE, "objectives": objs, "outcome_constraints": [FLOOR], "best": best_section}
    )


def test_primary_rule_names_the_front_member_best_on_that_objective():
    assert best.best_trial(_spec_best({"rule": "primary", "primary": "r"}), FRONT).number == 2
    assert best.best_trial(_spec_best({"rule": "primary", "primary": "tr"}), FRONT).number == 3


def test_weighted_rule_sums_weights_times_scores_scaled_over_the_feasible_trials():
    # scaled over trials 2, 3, 5: r (minimize) 5 -> 1, 40 -> 0, 10 -> 30/35; tr 0.82 -> 0, 0.90 -> 1, 0.88 -> 0.75
    assert best.best_trial(_spec_best({"rule": "weighted"}), FRONT).number == 5  # 1.607 > 1 = 1
    assert best.best_trial(_spec_best({"rule": "weighted"}, (10.0, 1.0)), FRONT).number == 2  # 10 > 10*0.857+0.75
    assert best.best_trial(_spec_best({"rule": "weighted"}, (1.0, 5.0)), FRONT).number == 3  # 5 > 0.857+3.75


def test_the_rule_never_names_an_infeasible_trial():
    for section in ({"rule": "primary", "primary": "r"}, {"rule": "weighted"}, {}):
        assert (
            best.best_trial(
                _spec_best(section, (10.0, None) if section.get("rule") == "weighted" else (None, None)), FRONT
            ).number
            != 1
        )


@pytest.mark.parametrize(
    "section, weights, message",
    [
        ({"rule": "primary"}, (None, None), "rule 'primary' needs 'primary: OBJECTIVE'"),
        ({"rule": "primary", "primary": "nope"}, (None, None), "best.primary: 'nope' is not an objective"),
        ({"primary": "r"}, (None, None), "'primary' is used only with rule 'primary'"),
        ({}, (2.0, None), "objectives[0].weight is used only with best.rule: weighted"),
        ({"rule": "weighted"}, (0.0, None), "objectives.0.weight"),
        ({"rule": "weighted"}, (math.nan, None), "objectives.0.weight"),
        ({"rule": "most"}, (None, None), "best.rule"),
    ],
)
def test_bad_best_sections_are_refused(section, weights, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as exc:
        _spec_best(section, weights)
    assert message in str(exc.value)


def test_the_run_commands_best_line_names_only_a_feasible_trial(capsys):
    """`labloop run`'s "best so far" (LiveView) reads labloop/run/best.py: a film under the transmittance floor is
    never named, however low its sheet resistance (it used to be the first objective's best value)."""
    from labloop.cli.live import LiveView

    spec = _spec_best({"rule": "primary", "primary": "r"})
    view = LiveView(spec, steps=False)
    lines = []
    for t in FRONT:
        t.params, t.source, t.failure_reason = {"x": 0.5}, "model", None
        view("finished", {"trial": t})
        lines.append(capsys.readouterr().out)
    assert "best -" in lines[0]  # trial 1 is below the floor: no best yet
    assert "best r=5 tr=0.82 (trial 2)" in lines[1] and "(trial 2)" in lines[3]
    resumed = LiveView(spec, steps=False, trials=FRONT[1:])  # `labloop resume` knows the earlier trials
    resumed("finished", {"trial": FRONT[0]})
    assert "(trial 2)" in capsys.readouterr().out


def test_ranked_lists_only_feasible_trials_named_best_first():
    spec = _spec([R], [FLOOR])
    trials = [
        _t(1, {"r": 1.0, "floor": 0.5}),
        _t(2, {"r": 9.0, "floor": 0.9}),
        _t(3, {"r": 4.0, "floor": 0.85}),
        _t(4, {"r": 2.0, "floor": 0.2}),
        _t(5, {"r": 6.0, "floor": 0.95}),
    ]
    assert [t.number for t in best.ranked(spec, trials)] == [3, 5, 2]
    assert best.ranked(spec, [_t(1, {"r": 1.0, "floor": 0.1})]) == []


def test_ranked_with_two_objectives_puts_the_pareto_set_first():
    spec = _spec([R, T], [FLOOR])
    trials = [
        _t(1, {"r": 1.0, "tr": 0.70, "floor": 0.70}),
        _t(2, {"r": 5.0, "tr": 0.82, "floor": 0.82}),
        _t(3, {"r": 40.0, "tr": 0.90, "floor": 0.90}),
        _t(4, {"r": 6.0, "tr": 0.81, "floor": 0.81}),
    ]
    order = [t.number for t in best.ranked(spec, trials)]
    assert order[0] == best.best_trial(spec, trials).number
    assert set(order[:2]) == {2, 3} and order[2] == 4 and 1 not in order
