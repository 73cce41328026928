"""No value without a number (issue 21 item 2): an objective or outcome-constraint plugin that returns NaN, inf,
None, a string (even "12.5"), a bool or anything else that is not a real number fails the trial with a reason naming
the plugin and the value; the trial is never `done` without a value, no "internal error" alert is raised, and a run
in which no trial succeeded exits non-zero. Real short campaigns on the simulated lab, through `labloop run`."""

from __future__ import annotations

import pytest
from campaign_files import thinfilm, write
from typer.testing import CliRunner

from labloop.cli import app
from labloop.store import Store

FAST = 2e6


def _run(tmp_path, data):
    path = write(tmp_path, data)
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    r = CliRunner().invoke(app, ["run", str(path), "--store", url, "--time-scale", str(FAST)], catch_exceptions=False)
    store = Store(url)
    try:
        c = store.campaign()
        return r, store.trials(c.id), store.audit_log(c.id)
    finally:
        store.close()


EXPECTED = {
    "nan": "nan",
    "inf": "inf",
    "-inf": "-inf",
    "none": "None",
    "string": "'12.5'",
    "bool": "True",
    "list": "[1.0]",
    "complex": "(1+2j)",
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_an_objective_that_is_not_a_real_number_fails_the_trial_and_the_run(tmp_path, kind):
    data = thinfilm(stopping={"max_trials": 2, "target_reached": False})
    data["strategy"] = {"name": "random", "initial_design": 1}
    data["objectives"][0]["plugin"] = "objective_plugins:Returns"
    data["objectives"][0]["options"] = {"kind": kind}
    r, trials, audit = _run(tmp_path, data)
    assert r.exit_code != 0, r.output  # no trial succeeded
    assert "ended with no successful trial" in r.output and "Traceback" not in r.output
    assert len(trials) == 2
    for t in trials:
        assert t.state == "failed", (t.state, t.values)
        assert "objective 'sheet_resistance'" in t.failure_reason
        assert "objective_plugins:Returns" in t.failure_reason
        assert f"returned {EXPECTED[kind]}" in t.failure_reason, t.failure_reason
        assert "sheet_resistance" not in (t.values or {})
    assert not [a for a in audit if "internal error" in str(a.detail)]
    assert "internal error" not in r.output


def test_a_constraint_that_is_not_a_number_fails_the_trial_but_not_the_others(tmp_path):
    data = thinfilm(stopping={"max_trials": 2, "target_reached": False})
    data["strategy"] = {"name": "random", "initial_design": 1}
    data["outcome_constraints"] = [
        {"name": "quality", "plugin": "objective_plugins:Returns", "options": {"kind": "nan"}, "lower": 0.0}
    ]
    r, trials, _ = _run(tmp_path, data)
    assert r.exit_code != 0, r.output
    assert all(
        t.state == "failed"
        and "outcome constraint 'quality'" in t.failure_reason
        and "returned nan" in t.failure_reason
        for t in trials
    )
    # the objective's good number is kept with the failed trial (it is data), the constraint's is not
    assert all(t.values.get("sheet_resistance", 0) > 0 and "quality" not in t.values for t in trials)


def test_a_good_number_still_makes_a_done_trial(tmp_path):
    data = thinfilm(stopping={"max_trials": 2, "target_reached": False})
    data["strategy"] = {"name": "random", "initial_design": 1}
    r, trials, _ = _run(tmp_path, data)
    assert r.exit_code == 0, r.output
    assert all(t.state == "done" and isinstance(t.values["sheet_resistance"], float) for t in trials)
