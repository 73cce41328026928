"""Proposals with some parameters fixed (``ask(n, observations, pending, fixed=...)``, issue 24 item 3): what the
scheduler asks for when a trial should share a batch station's profile. In every space type (continuous, mixed,
candidate pool) and for both built-in strategies, the proposal has the fixed values and the other parameters are
still chosen (by the acquisition, for the model); pending points are still excluded; a pool with no free row of
those values says so."""

from __future__ import annotations

import pytest

from labloop.errors import LabloopError
from labloop.spec import (
    CampaignSpec,
    CategoricalParameter,
    ContinuousParameter,
    IntegerParameter,
    ObjectiveSpec,
    StrategySpec,
)
from labloop.strategy import Observation, make_strategy
from labloop.strategy.base import accepts_fixed

FAST = {"mc_samples": 32, "raw_samples": 64, "num_restarts": 2}
OBJ = [ObjectiveSpec(name="y", direction="maximize", plugin="reading")]


def _spec(params, name="botorch", **strategy):
    return CampaignSpec(
        name="f",
        parameters=params,
        objectives=OBJ,
        seed=3,
        strategy=StrategySpec(name=name, initial_design=4, options=FAST if name == "botorch" else {}, **strategy),
    )


def _peak(p) -> dict[str, float]:
    """A landscape whose best x is 0.8 whatever the other parameters are (so a fixed value does not move it)."""
    return {"y": -((float(p["x"]) - 0.8) ** 2) + (0.1 if p.get("c") == "b" else 0.0)}


def _observed(params: list[dict]) -> list[Observation]:
    return [Observation(p, _peak(p)) for p in params]


CONT = [ContinuousParameter(name="x", lower=0, upper=1), ContinuousParameter(name="t", lower=250, upper=450)]
MIXED = [ContinuousParameter(name="x", lower=0, upper=1), CategoricalParameter(name="c", choices=["a", "b", "c"])]


def test_a_model_proposal_in_a_continuous_space_takes_the_fixed_value_and_optimizes_the_rest():
    strat = make_strategy(_spec(CONT))
    obs = _observed([{"x": x, "t": t} for x, t in [(0.1, 260), (0.3, 440), (0.5, 300), (0.7, 400), (0.95, 350)]])
    pending = [{"x": 0.2, "t": 333.3}]
    [p] = strat.ask(1, obs, pending, fixed={"t": 333.3})
    assert p.source == "model"
    assert p.params["t"] == 333.3  # exactly as given (a batch station compares keys exactly), not decoded
    assert abs(p.params["x"] - 0.8) < 0.25  # x still chosen by the acquisition: near the peak, not a random draw
    [free] = strat.ask(1, obs, pending)
    assert free.params["t"] != pytest.approx(333.3, abs=1e-6)  # without it, t is free


def test_a_model_proposal_in_a_mixed_space_fixes_a_categorical_or_a_continuous_parameter():
    strat = make_strategy(_spec(MIXED))
    obs = _observed([{"x": x, "c": c} for x, c in [(0.1, "a"), (0.4, "b"), (0.6, "c"), (0.9, "a"), (0.75, "c")]])
    [p] = strat.ask(1, obs, [], fixed={"c": "c"})
    assert p.source == "model" and p.params["c"] == "c" and abs(p.params["x"] - 0.8) < 0.25
    [q] = strat.ask(1, obs, [], fixed={"x": 0.25})
    assert q.source == "model" and q.params["x"] == pytest.approx(0.25) and q.params["c"] in ("a", "b", "c")


def test_a_pool_proposal_is_a_free_row_with_the_fixed_values_or_the_ask_says_there_is_none():
    params = [IntegerParameter(name="k", lower=0, upper=9), CategoricalParameter(name="c", choices=["a", "b"])]
    for name in ("botorch", "random"):
        strat = make_strategy(_spec(params, name=name))
        assert strat.pool is not None  # 20 rows: enumerated as a pool
        obs = [Observation({"k": k, "c": c}, {"y": float(k) / 10}) for k, c in [(1, "a"), (3, "b"), (5, "a"), (7, "b")]]
        out = strat.ask(3, obs, [{"k": 9, "c": "b"}], fixed={"c": "b"})
        assert len(out) == 3 and all(p.params["c"] == "b" for p in out), name
        assert {(p.params["k"], p.params["c"]) for p in out}.isdisjoint({(3, "b"), (7, "b"), (9, "b")}), name
        taken = [{"k": k, "c": "a"} for k in range(10)]
        with pytest.raises(LabloopError, match="no free row of the candidate pool has"):
            strat.ask(1, obs, taken, fixed={"c": "a"})


def test_random_and_the_initial_design_write_the_fixed_values_in_and_a_seed_point_without_them_waits():
    for name in ("random", "botorch"):
        strat = make_strategy(_spec(CONT, name=name, seed_points=[{"x": 0.5, "t": 300}]))
        out = strat.ask(3, [], [], fixed={"t": 400})
        assert all(p.params["t"] == pytest.approx(400) for p in out), name
        assert "seed" not in [p.source for p in out], name  # the seed point has t = 300: it waits
        assert len({round(p.params["x"], 6) for p in out}) == 3, name  # x still spread over the space
        assert strat.ask(1, [], [])[0].source == "seed", name


def test_a_fixed_value_that_is_not_a_parameter_or_does_not_fit_is_refused():
    strat = make_strategy(_spec(CONT, name="random"))
    with pytest.raises(LabloopError, match="cannot fix 'nope'"):
        strat.ask(1, [], [], fixed={"nope": 1})
    with pytest.raises(LabloopError, match="lies outside"):
        strat.ask(1, [], [], fixed={"t": 900})


def test_whether_a_strategy_takes_fixed_values_is_read_from_its_ask():
    class Old:
        def ask(self, n, observations, pending):
            return []

    class Kw:
        def ask(self, n, observations, pending, **kw):
            return []

    assert accepts_fixed(make_strategy(_spec(CONT, name="random"))) and accepts_fixed(Kw())
    assert not accepts_fixed(Old())
