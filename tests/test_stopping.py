"""Each stopping rule fires on exactly its condition and reports its evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from labloop.run.stopping import budget_left, check
from labloop.spec import parse_spec

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def spec(**stopping):
    return parse_spec(
        {
            "name": "s",
            "parameters": [{"name": "x", "type": "continuous", "lower": 0, "upper": 1}],
            "objectives": [{"name": "r", "direction": "minimize", "target": 5.0, "unit": "ohm/sq", "plugin": "p"}],
            "stopping": stopping,
        }
    )


def trial(n, state="done", r=None, source="model", info=None):
    return SimpleNamespace(number=n, state=state, values={} if r is None else {"r": r}, source=source, info=info or {})


def test_target_reached_names_the_trial_and_the_value():
    d = check(spec(max_trials=10), [trial(1, r=9.0), trial(2, r=4.5), trial(3, r=3.0)], NOW, NOW)
    assert d.rule == "target" and d.reason == "target reached at trial 2 (r = 4.5 ohm/sq <= 5)"
    assert d.evidence == {"trial": 2, "values": {"r": 4.5}}
    # a failed trial with a good-looking value never counts
    assert check(spec(max_trials=10), [trial(1, state="failed", r=1.0)], NOW, NOW) is None
    assert check(spec(max_trials=10, target_reached=False), [trial(1, r=1.0)], NOW, NOW) is None


def test_budget_waits_for_trials_in_flight():
    s = spec(max_trials=3)
    trials = [trial(1, r=9), trial(2, state="failed"), trial(3, state="running")]
    assert budget_left(s, trials) == 0
    assert check(s, trials, NOW, NOW) is None  # the running one is still to come
    trials[2] = trial(3, r=8)
    d = check(s, trials + [trial(4, state="rejected")], NOW, NOW)
    assert d.rule == "budget" and d.reason == "budget spent: 3 trials (max_trials = 3)"


def test_time_limit_counts_from_the_campaign_start():
    s = spec(max_trials=10, max_wall_time=3600)
    assert check(s, [], NOW - timedelta(seconds=3599), NOW) is None
    d = check(s, [], (NOW - timedelta(seconds=3700)).replace(tzinfo=None), NOW)  # SQLite hands back naive UTC
    assert d.rule == "time" and d.evidence["elapsed_s"] == 3700


def test_no_improvement_needs_k_consecutive_model_rounds_below_the_threshold():
    s = spec(max_trials=50, no_improvement_rounds=3, improvement_threshold=0.01)
    low = [trial(i, r=9, info={"improvement": 0.001}) for i in range(3, 6)]
    assert (
        check(s, [trial(1, r=9, source="sobol"), trial(2, r=9, info={"improvement": 0.5})] + low[:2], NOW, NOW) is None
    )
    d = check(s, [trial(1, r=9, source="sobol"), trial(2, r=9, info={"improvement": 0.5})] + low, NOW, NOW)
    assert d.rule == "no_improvement" and d.evidence == {"expected_improvement": [0.001] * 3}
    assert "stayed below 0.01 for the last 3 proposals" in d.reason
