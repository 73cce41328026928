"""While nothing measured is feasible, a constrained campaign maximizes the probability of feasibility (Gelbart et
al. 2014) when the campaign asks for it (``strategy.options.nothing_feasible: feasibility``), in continuous, mixed and pool spaces, for one proposal and for batches and trials in flight; the first
feasible measurement brings constrained expected improvement back (labloop/strategy/feasibility.py).

The toy: x in [0, 1]; the objective is best on the left (y = 1 - x); the outcome constraint ``impurity <= 0.05``
with impurity = 0.9 - 0.5 x, measured at x <= 0.5 (0.65-0.9): its trend points right, but even at x = 1 the GP
gives feasibility a tiny probability (log ~ -46), as on the solid-state campaign's seed 4. Measured before the
change (qLogNEI / qLogEI with smoothed constraints, whose Monte Carlo feasibility weight is ~0 everywhere): the
proposal refines the data's left half (x 0.30 continuous, 0.49 mixed, the 0.275 row of a large pool; a batch beside
a pending 0.6: 0.30 and 1.0); after: x = 1.0 in each (the batch: 1.0 and 0.81)."""

from __future__ import annotations

import pytest

from labloop.errors import SpecError
from labloop.spec import (
    CampaignSpec,
    CategoricalParameter,
    ContinuousParameter,
    ObjectiveSpec,
    OutcomeConstraintSpec,
    StoppingSpec,
    StrategySpec,
)
from labloop.strategy import BotorchStrategy, Observation, make_strategy
from labloop.strategy.space import CandidatePool

FAST = {"mc_samples": 64, "raw_samples": 64, "num_restarts": 2, "nothing_feasible": "feasibility"}
XS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def _spec(mixed: bool = False, budget: int = 30) -> CampaignSpec:
    params: list = [ContinuousParameter(name="x", lower=0, upper=1)]
    if mixed:
        params.append(CategoricalParameter(name="c", choices=list("ab")))
    return CampaignSpec(
        name="t",
        parameters=params,
        objectives=[ObjectiveSpec(name="y", direction="maximize", plugin="reading")],
        outcome_constraints=[OutcomeConstraintSpec(name="impurity", plugin="reading", upper=0.05)],
        strategy=StrategySpec(initial_design=4, options=FAST),
        stopping=StoppingSpec(max_trials=budget),
    )


def _obs(xs=XS, mixed: bool = False) -> list[Observation]:
    extra = [{"c": "a"}, {"c": "b"}] if mixed else [{}]
    return [
        Observation({"x": x, **e}, {"y": 1 - x + (0.1 if e.get("c") == "b" else 0.0), "impurity": 0.9 - 0.5 * x})
        for x in xs
        for e in extra
    ]


def _feasible_one(mixed: bool = False) -> Observation:
    return Observation({"x": 0.97, **({"c": "a"} if mixed else {})}, {"y": 0.03, "impurity": 0.03})


def test_the_default_keeps_the_constrained_acquisition_and_the_option_is_checked():
    """Not the default (measured: benchmarks/results/solid_state_feas.jsonl), but the proposal's evidence says nothing is feasible yet and what
    the option would do; a misspelt value is refused with the allowed ones."""
    spec = _spec()
    plain = spec.model_copy(
        update={"strategy": StrategySpec(initial_design=4, options={**FAST, "nothing_feasible": "constrained"})}
    )
    p = make_strategy(plain).ask(1, _obs(), [])[0]
    assert p.info["acquisition_kind"] == "qLogNoisyExpectedImprovement"
    assert "none of the 6 successful measurements" in p.info["acquisition_reason"]  # the evidence says so
    assert "'feasibility' would maximize" in p.info["acquisition_reason"]
    with pytest.raises(SpecError, match=r"strategy.options.nothing_feasible: 'probability' is not allowed"):
        make_strategy(spec, nothing_feasible="probability")


@pytest.mark.parametrize("mixed", [False, True])
def test_nothing_feasible_maximizes_the_probability_of_feasibility_until_something_is(mixed):
    spec = _spec(mixed)
    strat = make_strategy(spec)
    p = strat.ask(1, _obs(mixed=mixed), [])[0]
    assert p.source == "model"
    assert p.info["acquisition_kind"] == "BelievedLogProbabilityOfFeasibility"
    assert "none of the" in p.info["acquisition_reason"] and "Gelbart" in p.info["acquisition_reason"]
    assert p.params["x"] > 0.9, p.params  # where the constraint's trend leads, not the best objective's corner
    back = strat.ask(1, _obs(mixed=mixed) + [_feasible_one(mixed)], [])[0]
    assert back.info["acquisition_kind"] == "qLogNoisyExpectedImprovement" and "acquisition_reason" not in back.info
    # without outcome constraints every successful trial is feasible: failed trials keep constrained EI
    plain = make_strategy(spec.model_copy(update={"outcome_constraints": []}))
    failed = plain.ask(1, _obs(mixed=mixed) + [Observation(_feasible_one(mixed).params, {}, failed=True)], [])[0]
    assert failed.info["acquisition_kind"] == "qLogNoisyExpectedImprovement"


def test_batches_and_trials_in_flight_are_believed():
    strat = make_strategy(_spec())
    props = strat.ask(2, _obs(), [{"x": 0.6}])
    assert [p.info["acquisition_kind"] for p in props] == ["BelievedLogProbabilityOfFeasibility"] * 2
    # the first pick is the one-at-a-time pick; believing its (infeasible-looking) mean moves the second away from it
    assert props[0].params["x"] > 0.9 and 0.6 < props[1].params["x"] < 0.95, [p.params for p in props]


@pytest.mark.parametrize("budget", [30, 10])  # a large pool (LogEI) and a small one (Thompson sampling)
def test_a_pool_picks_the_row_most_likely_feasible(budget):
    spec = _spec(budget=budget)
    rows = [{"x": i / 40} for i in range(41)]
    pool = CandidatePool(BotorchStrategy(spec).space, rows)
    strat = BotorchStrategy(spec, pool)
    p = strat.ask(1, _obs(), [])[0]
    assert p.info["acquisition_kind"] == "BelievedLogProbabilityOfFeasibility"
    assert p.params["x"] >= 0.95, p.params
    batch = strat.ask(2, _obs(), [])
    assert {q.info["acquisition_kind"] for q in batch} == {"BelievedLogProbabilityOfFeasibility"}
    assert batch[0].params == p.params and 0.6 < batch[1].params["x"] < 0.95, [q.params for q in batch]
    back = strat.ask(1, _obs() + [Observation({"x": 0.975}, {"y": 0.025, "impurity": 0.025})], [])[0]
    assert (
        back.info["acquisition_kind"] != "BelievedLogProbabilityOfFeasibility" and "acquisition_reason" not in back.info
    )


def test_an_upper_limited_constraint_far_above_its_limit_can_be_modelled_on_a_log_scale():
    """log_constraint (opt-in): log of an upper-limited, non-negative constraint whose values reach 10x the limit;
    exact zeros count as 1/100 of the limit; lower limits, negative values and small spans stay as measured."""
    import math

    import torch

    from labloop.strategy.feasibility import constraint_scale

    y = torch.tensor([0.0, 0.05, 0.5, 0.98], dtype=torch.double)
    z, lo, hi = constraint_scale(y, None, 0.05, "auto")
    assert lo is None and hi == pytest.approx(math.log(0.05))
    assert z.tolist() == pytest.approx([math.log(5e-4), math.log(0.05), math.log(0.5), math.log(0.98)])
    assert (z <= hi + 1e-12).tolist() == (y <= 0.05).tolist()  # feasibility is the same on both scales
    for args in [(y, 0.8, None, "auto"), (y, None, 0.5, "auto"), (y - 0.1, None, 0.05, "auto"), (y, None, 0.05, False)]:
        same, lo2, hi2 = constraint_scale(*args)
        assert torch.equal(same, args[0]) and (lo2, hi2) == (args[1], args[2])
    assert constraint_scale(y, None, 0.5, True)[2] == pytest.approx(math.log(0.5))  # true: whatever the span
    # the strategy runs with it, and the probability of feasibility still goes where the trend leads
    spec = _spec()
    spec = spec.model_copy(
        update={"strategy": StrategySpec(initial_design=4, options={**FAST, "log_constraint": True})}
    )
    p = make_strategy(spec).ask(1, _obs(), [])[0]
    assert p.info["acquisition_kind"] == "BelievedLogProbabilityOfFeasibility" and p.params["x"] > 0.9
