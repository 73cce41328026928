"""Proposals pinned for fixed seeds: refactoring the strategies' bookkeeping (labloop/strategy/bookkeeping.py) and
splitting bayes.py must not change a single proposal. The expected values were recorded before the refactoring;
a deliberate change of the strategy's behaviour updates them (say why in the commit)."""

from __future__ import annotations

import math

import pytest

from labloop.spec import (
    CampaignSpec,
    CategoricalParameter,
    ContinuousParameter,
    ExpertBelief,
    IntegerParameter,
    ObjectiveSpec,
    StoppingSpec,
    StrategySpec,
)
from labloop.strategy import Observation, make_strategy

FAST = {"mc_samples": 32, "raw_samples": 64, "num_restarts": 2}
OBJ = [ObjectiveSpec(name="y", direction="maximize", plugin="reading")]


def _spec(params, name="botorch", seed=3, budget=50, options=FAST, seed_points=(), initial=4):
    return CampaignSpec(
        name="pin",
        parameters=params,
        objectives=OBJ,
        seed=seed,
        stopping=StoppingSpec(max_trials=budget),
        strategy=StrategySpec(name=name, initial_design=initial, options=dict(options), seed_points=list(seed_points)),
    )


def _same(got, want):
    """Equal, floats within 1e-4 (the continuous optimizers' last digits vary from run to run by ~1e-6)."""
    if isinstance(want, float) or isinstance(got, float):
        return isinstance(got, (int, float)) and abs(got - want) <= 1e-4
    if isinstance(want, (list, tuple)):
        return isinstance(got, (list, tuple)) and len(got) == len(want) and all(map(_same, got, want))
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(_same(got[k], want[k]) for k in want)
    return got == want


def _summary(proposals):
    return [
        (
            p.source,
            {k: (round(v, 6) if isinstance(v, float) else v) for k, v in p.params.items()},
            p.info.get("acquisition_kind"),
            p.info.get("row"),
        )
        for p in proposals
    ]


CONT = [ContinuousParameter(name="x", lower=0, upper=1), ContinuousParameter(name="z", lower=-2, upper=2)]
POOL = [CategoricalParameter(name="c", choices=[f"s{i}" for i in range(40)])]
MIXED = [
    ContinuousParameter(name="x", lower=0, upper=1),
    IntegerParameter(name="k", lower=0, upper=4),
    CategoricalParameter(name="c", choices=["a", "b", "c"]),
]


def _f(p):
    return math.sin(3 * p["x"]) + 0.3 * p.get("z", 0.0) + 0.1 * p.get("k", 0) + (0.5 if p.get("c") == "b" else 0.0)


def _cont_obs():
    pts = [{"x": i / 7, "z": -2 + 4 * ((3 * i) % 7) / 7} for i in range(7)]
    return [Observation(p, {"y": _f(p)}) for p in pts]


def _pool_obs():
    return [Observation({"c": f"s{i}"}, {"y": float(i % 7)}) for i in range(0, 40, 5)]


def _mixed_obs():
    pts = [{"x": i / 8, "k": i % 5, "c": "abc"[i % 3]} for i in range(8)]
    return [Observation(p, {"y": _f(p)}) for p in pts]


def test_seed_points_and_initial_design_are_pinned():
    spec = _spec(CONT, seed_points=[{"x": 0.5, "z": 0.0}, {"x": 0.25, "z": 1.0}])
    got = _summary(make_strategy(spec).ask(4, [Observation({"x": 0.25, "z": 1.0}, {"y": 1.0})], []))
    assert _same(got, PINNED["design"]), got


def test_an_expert_belief_shapes_the_pinned_initial_design():
    spec = _spec(CONT).model_copy(deep=True)
    spec = spec.model_copy(
        update={
            "strategy": spec.strategy.model_copy(update={"expert_prior": {"x": ExpertBelief(center=0.8, width=0.05)}})
        }
    )
    got = _summary(make_strategy(spec).ask(3, [], []))
    assert _same(got, PINNED["expert_design"]), got


@pytest.mark.parametrize("selection", ["believer", "fantasy"])
def test_continuous_model_proposals_are_pinned(selection):
    """'continuous' was re-recorded when the trials in flight came to be believed in search spaces (issue 25,
    archive section 37); 'continuous_fantasy' is the earlier record, which the fantasy selection still gives."""
    spec = _spec(CONT, options={**FAST, "batch_selection": selection})
    got = _summary(make_strategy(spec).ask(2, _cont_obs(), [{"x": 0.9, "z": 1.5}]))
    assert _same(got, PINNED["continuous" if selection == "believer" else "continuous_fantasy"]), got


@pytest.mark.parametrize(
    "case, budget, options",
    [
        ("pool_logei", 10, FAST),  # large pool: believer LogEI, Matern
        ("pool_ts", 20, FAST),  # small pool: Thompson sampling, RBF
        ("pool_fantasy", 10, {**FAST, "batch_selection": "fantasy"}),  # qLogEI, sequential greedy
    ],
)
def test_pool_proposals_are_pinned(case, budget, options):
    spec = _spec(POOL, budget=budget, options=options)
    got = _summary(make_strategy(spec).ask(3, _pool_obs(), [{"c": "s1"}]))
    assert _same(got, PINNED[case]), got


def test_mixed_space_proposals_are_pinned():
    got = _summary(make_strategy(_spec(MIXED)).ask(1, _mixed_obs(), []))
    assert _same(got, PINNED["mixed"]), got


@pytest.mark.parametrize(
    "case, params, obs",
    [
        ("random_cont", CONT, _cont_obs),
        ("random_pool", POOL, _pool_obs),
    ],
)
def test_random_strategy_is_pinned(case, params, obs):
    spec = _spec(params, name="random", options={}, seed_points=[{"c": "s0"}] if params is POOL else [])
    got = _summary(make_strategy(spec).ask(3, obs(), [{"c": "s2"}] if params is POOL else []))
    assert _same(got, PINNED[case]), got


PINNED: dict = {
    "design": [
        ("seed", {"x": 0.5, "z": 0.0}, None, None),
        ("sobol", {"x": 0.9612, "z": -0.027707}, None, None),
        ("sobol", {"x": 0.470923, "z": 1.974403}, None, None),
        ("sobol", {"x": 0.263707, "z": -0.553765}, None, None),
    ],
    "continuous": [
        ("model", {"x": 0.467948, "z": 1.916633}, "qLogNoisyExpectedImprovement", None),
        ("model", {"x": 0.466354, "z": 1.448328}, "qLogNoisyExpectedImprovement", None),
    ],
    "continuous_fantasy": [
        ("model", {"x": 0.470547, "z": 1.95928}, "qLogNoisyExpectedImprovement", None),
        ("model", {"x": 0.461017, "z": 1.396325}, "qLogNoisyExpectedImprovement", None),
    ],
    # the unmeasured categories tie (their one-hot columns carry no data): the first free rows, whatever the
    # library versions (s37 won by rounding noise on the machine that first recorded this)
    "pool_logei": [
        ("model", {"c": "s2"}, "LogExpectedImprovement", 2),
        ("model", {"c": "s3"}, "LogExpectedImprovement", 3),
        ("model", {"c": "s4"}, "LogExpectedImprovement", 4),
    ],
    "pool_ts": [
        ("model", {"c": "s23"}, "ThompsonSampling", 23),
        ("model", {"c": "s18"}, "ThompsonSampling", 18),
        ("model", {"c": "s8"}, "ThompsonSampling", 8),
    ],
    "pool_fantasy": [
        ("model", {"c": "s2"}, "qLogExpectedImprovement", 2),
        ("model", {"c": "s3"}, "qLogExpectedImprovement", 3),
        ("model", {"c": "s4"}, "qLogExpectedImprovement", 4),
    ],
    "mixed": [("model", {"x": 0.18198, "k": 4, "c": "b"}, "qLogNoisyExpectedImprovement", None)],
    "random_cont": [
        ("random", {"x": 0.672506, "z": -0.556987}, None, None),
        ("random", {"x": 0.428932, "z": -1.495623}, None, None),
        ("random", {"x": 0.421606, "z": -0.978584}, None, None),
    ],
    "random_pool": [
        ("random", {"c": "s29"}, None, 29),
        ("random", {"c": "s33"}, None, 33),
        ("random", {"c": "s18"}, None, 18),
    ],
    "expert_design": [
        ("sobol", {"x": 0.725634, "z": -1.101892}, None, None),
        ("sobol", {"x": 0.815469, "z": 0.892336}, None, None),
        ("sobol", {"x": 0.888239, "z": -0.027707}, None, None),
    ],
}


def test_a_proposal_depends_on_the_campaign_seed_not_on_the_processs_random_state():
    """botorch seeds its raw samples from torch's global RNG: without the strategy's own seeding, the mixed proposal
    moved from x = 0.182 to 0.210 with what ran before it in the process (a flaky pin under a different test order)."""
    import torch

    got = []
    for state in (0, 1):
        torch.manual_seed(state)
        got.append(_summary(make_strategy(_spec(MIXED)).ask(1, _mixed_obs(), [])))
    assert _same(got[0], got[1]) and _same(got[0], PINNED["mixed"]), got
