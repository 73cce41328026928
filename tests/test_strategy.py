"""The botorch strategy: every space type, constraints, several objectives, failures, pending points, stopping."""

from __future__ import annotations

import math

import pydantic
import pytest

from labloop.errors import LabloopError, PluginError, SpecError
from labloop.no_improvement import improvement_stalled as the_rule
from labloop.spec import (
    CampaignSpec,
    CategoricalParameter,
    CompositionParameter,
    ContinuousParameter,
    IntegerParameter,
    LinearConstraint,
    ObjectiveSpec,
    OutcomeConstraintSpec,
    StoppingSpec,
    StrategySpec,
)
from labloop.strategy import Observation, improvement_stalled, make_strategy

FAST = {"mc_samples": 32, "raw_samples": 64, "num_restarts": 2}


def _spec(params, objectives=None, constraints=(), **kw):
    objectives = objectives or [ObjectiveSpec(name="y", direction="maximize", plugin="reading")]
    strategy = kw.pop("strategy", StrategySpec(initial_design=4, options=FAST))
    return CampaignSpec(
        name="t", parameters=params, objectives=objectives, constraints=list(constraints), strategy=strategy, **kw
    )


def _run(strat, f, n_obs, failed=lambda p: False):
    obs = []
    while len(obs) < n_obs:
        for p in strat.ask(1, obs, []):
            obs.append(Observation(p.params, {} if failed(p.params) else f(p.params), failed=failed(p.params)))
    return obs


def test_factory_builds_named_strategies_and_refuses_unknown():
    from labloop.strategy import BotorchStrategy, RandomStrategy

    spec = _spec([ContinuousParameter(name="x", lower=0, upper=1)])
    assert isinstance(make_strategy(spec), BotorchStrategy)
    rnd = spec.model_copy(update={"strategy": StrategySpec(name="random")})
    assert isinstance(make_strategy(rnd), RandomStrategy)
    plug = spec.model_copy(update={"strategy": StrategySpec(name="labloop.strategy.random:RandomStrategy")})
    assert isinstance(make_strategy(plug), RandomStrategy)
    with pytest.raises(PluginError):
        make_strategy(spec.model_copy(update={"strategy": StrategySpec(name="nope")}))
    with pytest.raises(pydantic.ValidationError, match="unknown option 'bogus'"):
        StrategySpec(options={"bogus": 1})  # the spec refuses it: `labloop validate` reports it
    with pytest.raises(SpecError, match=r"strategy.options.bogus: unknown option 'bogus' for the botorch strategy"):
        make_strategy(spec, bogus=1)  # keyword options are checked as strictly
    with pytest.raises(SpecError, match=r"strategy.options.kernel: 'maternn' is not allowed .*'matern'"):
        make_strategy(spec, kernel="maternn")
    with pytest.raises(SpecError, match=r"strategy.options.kernel: unknown option 'kernel' for the random"):
        make_strategy(rnd, kernel="rbf")


def test_continuous_model_improves_on_the_initial_design():
    spec = _spec(
        [ContinuousParameter(name="x", lower=0, upper=1), ContinuousParameter(name="z", lower=1, upper=100, log=True)]
    )
    f = lambda p: {"y": -((p["x"] - 0.7) ** 2) - (math.log10(p["z"]) - 1.0) ** 2}
    strat = make_strategy(spec)
    obs = _run(strat, f, 9)
    init_best = max(o.values["y"] for o in obs[:4])
    assert max(o.values["y"] for o in obs[4:]) > init_best
    p = strat.ask(1, obs, [])[0]
    assert p.source == "model"
    assert set(p.info["importance"]) == {"x", "z"} and math.isclose(sum(p.info["importance"].values()), 1, abs_tol=1e-3)
    assert "params" in p.info["predicted_best"] and p.info["expected_improvement_rel"] >= 0


def test_seed_points_run_first_then_sobol_then_model():
    spec = _spec(
        [ContinuousParameter(name="x", lower=0, upper=1)],
        strategy=StrategySpec(initial_design=3, seed_points=[{"x": 0.25}], options=FAST),
    )
    strat = make_strategy(spec)
    first = strat.ask(2, [], [])
    assert [p.source for p in first] == ["seed", "sobol"] and first[0].params["x"] == 0.25
    obs = [Observation(p.params, {"y": p.params["x"]}) for p in first]
    assert [p.source for p in strat.ask(2, obs, [])] == ["sobol", "model"]


def test_mixed_integer_categorical_space_without_cartesian_product():
    params = [
        ContinuousParameter(name="x", lower=0, upper=1),
        IntegerParameter(name="n", lower=0, upper=200),
        CategoricalParameter(name="c", choices=[f"s{i}" for i in range(30)]),
    ]
    spec = _spec(params)
    strat = make_strategy(spec)
    assert strat.pool is None  # 201 * 30 * continuous: no enumeration
    f = lambda p: {"y": -abs(p["x"] - 0.5) - abs(p["n"] - 120) / 200 + (p["c"] == "s7")}
    obs = _run(strat, f, 6)
    props = strat.ask(2, obs, [])
    for p in props:
        assert (
            isinstance(p.params["n"], int) and 0 <= p.params["n"] <= 200 and p.params["c"] in spec.parameters[2].choices
        )


def test_composition_and_linear_constraints_hold_for_model_proposals():
    params = [
        CompositionParameter(name="mix", components=["a", "b", "c"]),
        ContinuousParameter(name="t", lower=0, upper=10),
    ]
    cons = [LinearConstraint(coefficients={"a": 1, "t": 0.1}, upper=0.8)]
    spec = _spec(params, constraints=cons)
    strat = make_strategy(spec)
    f = lambda p: {"y": p["a"] * p["t"] - p["c"]}
    obs = _run(strat, f, 5)
    for p in [o.params for o in obs] + [p.params for p in strat.ask(2, obs, [])]:
        assert abs(p["a"] + p["b"] + p["c"] - 1) < 1e-6
        assert p["a"] + 0.1 * p["t"] <= 0.8 + 1e-5


def test_grid_composition_space_is_enumerated_and_never_repeats():
    spec = _spec([CompositionParameter(name="mix", components=["a", "b", "c"], step=0.25)])
    strat = make_strategy(spec)
    assert strat.pool is not None and len(strat.pool) == 15
    obs = _run(strat, lambda p: {"y": p["a"]}, 15)
    keys = {tuple(sorted(o.params.items())) for o in obs}
    assert len(keys) == 15  # every grid point once
    with pytest.raises(LabloopError, match="every row"):
        strat.ask(1, obs, [])


def test_pending_points_are_never_proposed_again():
    spec = _spec([CategoricalParameter(name="c", choices=list("abcdefgh"))])
    strat = make_strategy(spec)
    obs = [Observation({"c": c}, {"y": float(i)}) for i, c in enumerate("abcd")]
    pending = [{"c": "e"}, {"c": "f"}]
    props = strat.ask(2, obs, pending)
    assert sorted(p.params["c"] for p in props) == ["g", "h"]


def test_batch_of_continuous_points_is_diverse_with_pending():
    spec = _spec([ContinuousParameter(name="x", lower=0, upper=1)])
    strat = make_strategy(spec)
    obs = _run(strat, lambda p: {"y": -((p["x"] - 0.3) ** 2)}, 6)
    props = strat.ask(3, obs, [{"x": 0.3}])
    xs = sorted(p.params["x"] for p in props)
    assert min(b - a for a, b in zip(xs, xs[1:])) > 1e-3 and all(abs(x - 0.3) > 1e-4 for x in xs)


def test_failures_train_feasibility_and_failed_rows_are_not_reproposed():
    # pool of 40 rows; x > 0.5 always fails, and the objective grows with x: a model that ignored failures would
    # propose the failing region (it extrapolates the rising trend).
    from labloop.strategy import BotorchStrategy
    from labloop.strategy.space import CandidatePool

    spec = _spec([ContinuousParameter(name="x", lower=0, upper=1)])
    rows = [{"x": i / 39} for i in range(40)]
    strat = BotorchStrategy(spec, CandidatePool(BotorchStrategy(spec).space, rows), **FAST)
    obs = [Observation({"x": x}, {"y": x}) for x in (0.0, 0.1, 0.2, 0.3)]
    obs += [
        Observation({"x": x}, {}, failed=True, reason="cracked") for x in (rows[22]["x"], rows[30]["x"], rows[39]["x"])
    ]
    props = strat.ask(3, obs, [])
    failed = {rows[22]["x"], rows[30]["x"], rows[39]["x"]}
    assert all(p.params["x"] not in failed for p in props)
    assert sum(p.params["x"] > 0.5 for p in props) <= 1


def test_two_objectives_with_outcome_constraint():
    objectives = [
        ObjectiveSpec(name="r", direction="minimize", plugin="reading", reference=10.0),
        ObjectiveSpec(name="t", direction="maximize", plugin="reading"),
    ]
    spec = _spec(
        [ContinuousParameter(name="x", lower=0, upper=1)],
        objectives=objectives,
        outcome_constraints=[OutcomeConstraintSpec(name="haze", plugin="reading", upper=0.5)],
    )
    strat = make_strategy(spec)
    f = lambda p: {"r": 1 + 5 * p["x"], "t": p["x"], "haze": p["x"] ** 2}
    obs = _run(strat, f, 6)
    props = strat.ask(2, obs, [])
    assert len(props) == 2 and all(p.source == "model" for p in props)
    assert all(p.params["x"] < 0.85 for p in props)  # haze <= 0.5 means x <= 0.71


def test_band_objective_and_log_transform():
    spec = _spec(
        [ContinuousParameter(name="x", lower=0, upper=1)],
        objectives=[ObjectiveSpec(name="y", direction="band", band=(0.4, 0.6), plugin="reading")],
    )
    strat = make_strategy(spec)
    obs = _run(strat, lambda p: {"y": p["x"]}, 8)
    best = min(abs(o.values["y"] - 0.5) for o in obs)
    assert best < 0.1


def test_stopping_rule_evidence_helper():
    stop = StoppingSpec(no_improvement_rounds=3, improvement_threshold=0.01)
    assert improvement_stalled([0.5, None, 0.02, 0.005], stop) is None
    ev = improvement_stalled([0.5, 0.004, None, 0.003, 0.001], stop)
    assert ev is not None and ev.rounds == [0.004, 0.003, 0.001] and "last 3 proposals" in ev.message()
    assert improvement_stalled([0.0] * 5, StoppingSpec()) is None  # rule not configured
    assert improvement_stalled([0.001, float("nan"), 0.001], stop) is None  # NaN is never "no improvement"
    assert improvement_stalled is the_rule  # one implementation, shared with labloop.run.stopping
    spec = _spec([ContinuousParameter(name="x", lower=0, upper=1)])
    strat = make_strategy(spec)
    obs = _run(strat, lambda p: {"y": p["x"]}, 5)
    p = strat.ask(1, obs, [])[0]
    assert p.info["improvement"] == p.info["expected_improvement_rel"] >= 0  # the evidence the rule reads
    # y = x: the model's optimum (x = 1) is already measured, so a space-filling point replaces it, and says so
    assert p.source == "model" or p.info["fallbacks"][-1] == p.info["note"]


def test_bad_observations_are_clear_errors():
    spec = _spec([ContinuousParameter(name="x", lower=0, upper=1)])
    strat = make_strategy(spec)
    with pytest.raises(LabloopError, match="observation"):
        strat.ask(1, [Observation({"x": 7.0}, {"y": 1.0})], [])
    with pytest.raises(LabloopError, match="seed_points"):
        make_strategy(spec.model_copy(update={"strategy": StrategySpec(seed_points=[{"x": 3}])})).ask(1, [], [])


def test_random_strategy_draws_without_replacement_and_is_reproducible():
    spec = _spec([CategoricalParameter(name="c", choices=list("abcdef"))], strategy=StrategySpec(name="random"))
    a = make_strategy(spec).ask(6, [], [])
    b = make_strategy(spec).ask(6, [], [])
    assert [p.params for p in a] == [p.params for p in b]
    assert len({p.params["c"] for p in a}) == 6


@pytest.mark.parametrize(
    "selection, kind",
    [
        ("believer", "LogExpectedImprovement"),  # the default
        ("fantasy", "qLogExpectedImprovement"),
    ],
)
def test_pool_batches_are_distinct_rows_with_evidence_for_the_stopping_rule(selection, kind):
    from labloop.strategy import BotorchStrategy
    from labloop.strategy.space import CandidatePool

    spec = _spec(
        [ContinuousParameter(name="x", lower=0, upper=1), CategoricalParameter(name="c", choices=list("ab"))],
        stopping=StoppingSpec(max_trials=12),
    )  # 60 rows > 2 x 12: a large pool, expected improvement
    rows = [{"x": i / 29, "c": c} for i in range(30) for c in "ab"]
    strat = BotorchStrategy(spec, CandidatePool(BotorchStrategy(spec).space, rows), **FAST, batch_selection=selection)
    obs = [Observation(r, {"y": r["x"] * (r["c"] == "a")}) for r in rows[::9]]
    props = strat.ask(4, obs, [rows[1]])
    keys = {(p.params["x"], p.params["c"]) for p in props}
    assert len(keys) == 4 and not keys & {(r["x"], r["c"]) for r in rows[::9] + [rows[1]]}
    for p in props:
        # a pending row and a batch of 4: each chosen row pending for the next (believer: the analytic LogEI on the
        # GP conditioned on its own mean there; fantasy: the Monte Carlo LogEI with them as X_pending)
        assert p.source == "model" and p.info["acquisition_kind"] == kind
        assert p.info["improvement"] == p.info["expected_improvement_rel"] >= 0
        assert p.info["pool_max_expected_improvement_rel"] > 0
    assert props[0].info["predicted_best"]["params"] in rows


def test_pool_auto_acquisition_exploits_until_the_model_expects_nothing_then_thompson_samples():
    from labloop.strategy import BotorchStrategy
    from labloop.strategy.space import CandidatePool

    spec = _spec([ContinuousParameter(name="x", lower=0, upper=1)], stopping=StoppingSpec(max_trials=20))
    rows = [{"x": i / 59} for i in range(60)]
    pool = CandidatePool(BotorchStrategy(spec).space, rows)
    obs = [Observation(r, {"y": math.sin(6 * r["x"])}) for r in rows[::6]]
    one = BotorchStrategy(spec, pool, **FAST).ask(1, obs, [])[0]
    ei = one.info["pool_max_expected_improvement_rel"]
    assert one.info["acquisition_kind"] == "LogExpectedImprovement" and ei > 0
    # the same state with a threshold above the model's best expectation: a Thompson sample instead
    ts = BotorchStrategy(spec, pool, explore_below=ei * 10, **FAST).ask(1, obs, [])[0]
    assert ts.info["acquisition_kind"] == "ThompsonSampling" and ts.params in rows
    assert ts.params not in [o.params for o in obs]
    # the exploiting proposal is the free row of largest EI: next to the best measured row (sin peaks at pi/12)
    best_obs = max(obs, key=lambda o: o.values["y"]).params
    assert abs(one.params["x"] - best_obs["x"]) <= 0.2


def test_plug_in_incumbent_is_not_fooled_by_a_lucky_measurement():
    """With noisy data the best measured value is an optimistic draw; EI against it (incumbent 'observed')
    expects less from every other row than EI against the model's best mean at a measured row."""
    from labloop.strategy import BotorchStrategy
    from labloop.strategy.space import CandidatePool

    spec = _spec([ContinuousParameter(name="x", lower=0, upper=1)], stopping=StoppingSpec(max_trials=20))
    rows = [{"x": i / 79} for i in range(80)]
    pool = CandidatePool(BotorchStrategy(spec).space, rows)
    noise = [0.3 * math.sin(37.0 * i) for i in range(80)]
    obs = [Observation(r, {"y": math.sin(3 * r["x"]) + noise[i]}) for i, r in enumerate(rows) if i % 3 == 0]
    lucky = max(range(len(obs)), key=lambda i: obs[i].values["y"])
    obs[lucky] = Observation(obs[lucky].params, {"y": obs[lucky].values["y"] + 1.0})  # one lucky reading
    ei = {
        inc: BotorchStrategy(spec, pool, incumbent=inc, **FAST)
        .ask(1, obs, [])[0]
        .info["pool_max_expected_improvement_rel"]
        for inc in ("observed", "posterior_mean")
    }
    assert ei["posterior_mean"] > 2 * ei["observed"]


@pytest.mark.parametrize("acquisition", ["ts", "auto"])
def test_pool_proposals_are_reproducible_and_leave_global_rng_alone(acquisition):
    import torch

    spec = _spec(
        [CategoricalParameter(name="c", choices=[f"s{i}" for i in range(40)])],
        strategy=StrategySpec(initial_design=4, options={**FAST, "acquisition": acquisition}),
        stopping=StoppingSpec(max_trials=10),
    )
    obs = [Observation({"c": f"s{i}"}, {"y": float(i % 7)}) for i in range(0, 40, 5)]
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = make_strategy(spec).ask(2, obs, [])
    after = torch.rand(1)
    b = make_strategy(spec).ask(2, obs, [])
    assert [p.params for p in a] == [p.params for p in b] and torch.equal(before, after)
    assert len({p.params["c"] for p in a}) == 2
    kind = {"ts": "ThompsonSampling", "auto": "LogExpectedImprovement"}[acquisition]  # auto: the believer's LogEI
    assert all(p.info["acquisition_kind"] == kind for p in a)


@pytest.mark.parametrize(
    "rows, budget, kind, kernel",
    [
        (60, 40, "ThompsonSampling", "rbf"),  # 60 <= 2 x 40: a small pool, explore it
        (60, 20, "LogExpectedImprovement", "matern"),  # 60 > 2 x 20: exploit the model
    ],
)
def test_auto_strategy_follows_pool_size_against_budget(rows, budget, kind, kernel):
    from labloop.strategy import BotorchStrategy
    from labloop.strategy.space import CandidatePool

    spec = _spec([ContinuousParameter(name="x", lower=0, upper=1)], stopping=StoppingSpec(max_trials=budget))
    pool_rows = [{"x": i / (rows - 1)} for i in range(rows)]
    strat = BotorchStrategy(spec, CandidatePool(BotorchStrategy(spec).space, pool_rows), **FAST)
    obs = [Observation(r, {"y": math.sin(6 * r["x"])}) for r in pool_rows[::7]]
    p = strat.ask(1, obs, [])[0]
    assert strat.small_pool == (kind == "ThompsonSampling")
    assert p.info["acquisition_kind"] == kind and p.params in pool_rows
    assert strat.options["kernel"] == kernel
    # an explicit choice always wins over 'auto'
    forced = BotorchStrategy(spec, CandidatePool(strat.space, pool_rows), acquisition="logei", **FAST)
    assert forced.ask(1, obs, [])[0].info["acquisition_kind"] == "LogExpectedImprovement"


@pytest.mark.parametrize("kernel", ["matern", "rbf", "matern_gamma", "additive", "edbo"])
@pytest.mark.parametrize("acquisition", ["logei", "ts"])
def test_every_kernel_fits_a_mixed_pool_and_explains_itself(kernel, acquisition):
    """Each kernel option learns that y depends on x and on the choice of c, not on the noise column z, and
    serves both pool acquisitions (Thompson sampling falls back to joint posterior samples where botorch has no
    pathwise sampler for the kernel)."""
    from labloop.strategy import BotorchStrategy
    from labloop.strategy.space import CandidatePool

    spec = _spec(
        [
            ContinuousParameter(name="x", lower=0, upper=1),
            ContinuousParameter(name="z", lower=0, upper=1),
            CategoricalParameter(name="c", choices=list("abcd")),
        ],
        strategy=StrategySpec(initial_design=4, options={**FAST, "kernel": kernel, "acquisition": acquisition}),
    )
    rows = [{"x": i / 11, "z": ((7 * i + j) % 12) / 11, "c": c} for i in range(12) for j, c in enumerate("abcd")]

    def f(r):
        return {"y": -((r["x"] - 0.7) ** 2) * 4 + {"a": 0.0, "b": 1.0, "c": 0.2, "d": -0.5}[r["c"]]}

    pool = CandidatePool(BotorchStrategy(spec).space, rows)
    obs = [Observation(r, f(r)) for r in rows[::3]]
    p = BotorchStrategy(spec, pool).ask(1, obs, [])[0]
    assert p.source == "model" and p.params in rows and p.params not in [o.params for o in obs]
    imp = p.info["importance"]
    assert set(imp) == {"x", "z", "c"} and imp["z"] < max(imp["x"], imp["c"])
    best = p.info["predicted_best"]["params"]
    assert best["c"] == "b" and abs(best["x"] - 0.7) < 0.25


def test_output_warp_is_monotone_invertible_and_needs_enough_data():
    import torch

    from labloop.strategy.modeling import ObjectiveTransform, WarpedTransform

    skewed = [math.exp(0.3 * i) for i in range(20)]  # a long upper tail
    y = torch.tensor(skewed, dtype=torch.double)
    for direction, log in (("maximize", False), ("minimize", True)):
        base = ObjectiveTransform(ObjectiveSpec(name="y", direction=direction, plugin="reading"), log)
        w = WarpedTransform.fit(base, skewed)
        assert isinstance(w, WarpedTransform)
        t = w(y)
        assert torch.allclose(w.inverse(t), y, rtol=1e-9)
        assert torch.equal(t.argsort(), base(y).argsort())  # larger-is-better order kept
        assert abs(float(t.mean())) < 0.5 and 0.5 < float(t.std()) < 2.0  # roughly standardized
    # the warp straightens the tail: its skewness is smaller than the raw values'
    base = ObjectiveTransform(ObjectiveSpec(name="y", direction="maximize", plugin="reading"), False)
    w = WarpedTransform.fit(base, skewed)

    def skew(v):
        v = (v - v.mean()) / v.std()
        return float((v**3).mean())

    assert abs(skew(w(y))) < abs(skew(y)) / 2
    assert WarpedTransform.fit(base, skewed[:3]) is base  # too few values to fit a warp
    assert WarpedTransform.fit(base, [2.0] * 8) is base  # no spread


def test_warped_strategy_reports_predictions_in_objective_units():
    from labloop.strategy import BotorchStrategy
    from labloop.strategy.space import CandidatePool

    spec = _spec(
        [ContinuousParameter(name="x", lower=0, upper=1)],
        objectives=[ObjectiveSpec(name="y", direction="minimize", plugin="reading")],
        strategy=StrategySpec(initial_design=4, options={**FAST, "warp": True}),
    )
    rows = [{"x": i / 39} for i in range(40)]
    pool = CandidatePool(BotorchStrategy(spec).space, rows)
    obs = [Observation(r, {"y": 1.0 + 50 * (r["x"] - 0.3) ** 2}) for r in rows[::4]]
    p = BotorchStrategy(spec, pool).ask(1, obs, [])[0]
    pred = p.info["predicted"]
    lo, hi = pred["interval_95"]
    assert lo <= pred["mean"] <= hi and 0.0 < pred["mean"] < 40.0  # objective units, not warped units
    assert abs(p.info["predicted_best"]["params"]["x"] - 0.3) < 0.15


def test_large_data_fits_hyperparameters_on_a_subset_but_conditions_on_all():
    import torch

    from labloop.strategy.modeling import fit_gp
    from labloop.strategy.space import SearchSpace

    space = SearchSpace([ContinuousParameter(name="x", lower=0, upper=1)])
    X = torch.linspace(0, 1, 60, dtype=torch.double).unsqueeze(-1)
    Y = torch.sin(6 * X)
    model = fit_gp(space, X, Y, fit_subset=20)
    assert model.train_inputs[0].shape[0] == 60
    with torch.no_grad():
        err = (model.posterior(X).mean - Y).abs().max()
    assert err < 0.05


# ------------------------------------------------------------------------------------- run-time fallbacks
def _pool_case(budget=10, **options):
    """40 rows: a large pool for a budget of 10 (LogEI, Matern under 'auto'), a small one for 20 (TS, RBF)."""
    spec = _spec(
        [CategoricalParameter(name="c", choices=[f"s{i}" for i in range(40)])],
        strategy=StrategySpec(initial_design=4, options={**FAST, **options}),
        stopping=StoppingSpec(max_trials=budget),
    )
    obs = [Observation({"c": f"s{i}"}, {"y": float(i % 7)}) for i in range(0, 40, 5)]
    return spec, obs


def test_a_failed_gp_fit_is_recorded_in_the_proposal(monkeypatch):
    from linear_operator.utils.errors import NotPSDError

    from labloop.strategy import modeling

    spec, obs = _pool_case(acquisition="logei")
    clean = make_strategy(spec).ask(1, obs, [])[0]
    assert clean.source == "model" and "fallbacks" not in clean.info  # nothing to report on the normal path

    def broken(*a, **k):
        raise NotPSDError("Matrix not positive definite after repeatedly adding jitter")

    monkeypatch.setattr(modeling, "fit_gpytorch_mll", broken)
    p = make_strategy(spec).ask(1, obs, [])[0]
    assert p.source == "model" and p.params["c"] not in {o.params["c"] for o in obs}
    assert p.info["fallbacks"] == [
        "gp fit of 'y' failed (NotPSDError: Matrix not positive definite after repeatedly "
        "adding jitter): used the prior-mode hyperparameters, not fitted to the data"
    ]


def test_botorch_fit_retries_are_recorded(monkeypatch):
    import warnings

    from botorch.exceptions.warnings import OptimizationWarning

    from labloop.strategy import modeling

    real = modeling.fit_gpytorch_mll

    def retried(*a, **k):  # what botorch re-emits when an attempt stopped abnormally and it refits
        warnings.warn("ABNORMAL_TERMINATION_IN_LNSRCH", OptimizationWarning)
        return real(*a, **k)

    monkeypatch.setattr(modeling, "fit_gpytorch_mll", retried)
    spec, obs = _pool_case(acquisition="logei")
    p = make_strategy(spec).ask(1, obs, [])[0]
    assert any(
        f.startswith("gp fit of 'y': botorch retried") and "ABNORMAL_TERMINATION_IN_LNSRCH" in f
        for f in p.info["fallbacks"]
    )


def test_pathwise_thompson_fallback_to_joint_samples_is_recorded(monkeypatch):
    from labloop.strategy import acquisition

    def no_paths(*a, **k):
        raise NotImplementedError("no pathwise sampler for this kernel")

    monkeypatch.setattr(acquisition, "draw_matheron_paths", no_paths)
    spec, obs = _pool_case(acquisition="ts")
    p = make_strategy(spec).ask(1, obs, [])[0]
    assert p.info["acquisition_kind"] == "ThompsonSampling"
    assert any(
        f.startswith(
            "pathwise Thompson sampling unavailable for kernel 'matern' (NotImplementedError: no pathwise sampler"
        )
        and "exact joint posterior samples over the 32 free rows" in f
        for f in p.info["fallbacks"]
    )


def test_an_acquisition_that_cannot_apply_is_recorded_with_what_was_used():
    # Thompson sampling needs a candidate pool: a continuous space gets qLogNEI, and says so
    spec = _spec(
        [ContinuousParameter(name="x", lower=0, upper=1)],
        strategy=StrategySpec(initial_design=4, options={**FAST, "acquisition": "ts"}),
    )
    obs = [Observation({"x": i / 5}, {"y": math.sin(3 * i / 5)}) for i in range(6)]
    p = make_strategy(spec).ask(1, obs, [])[0]
    assert p.info["acquisition_kind"] == "qLogNoisyExpectedImprovement"
    assert "acquisition 'ts' needs a candidate pool: used qLogNoisyExpectedImprovement" in p.info["fallbacks"]
    # a small pool's 'auto' Thompson sample with failed trials (a feasibility constraint) becomes qLogNEI too
    spec, obs = _pool_case(budget=20)
    obs = obs + [Observation({"c": "s1"}, {}, failed=True)]
    p = make_strategy(spec).ask(1, obs, [])[0]
    assert p.info["acquisition_kind"] == "qLogNoisyExpectedImprovement"
    assert (
        "acquisition 'ts' (from 'auto') cannot weigh outcome constraints or failed trials: used "
        "qLogNoisyExpectedImprovement"
    ) in p.info["fallbacks"]


def test_a_retried_acquisition_optimization_is_recorded(monkeypatch):
    import warnings

    from labloop.strategy import acquisition

    real = acquisition.optimize_acqf

    def retried(*a, **k):  # botorch's own message when it restarts from new initial conditions
        warnings.warn(
            "Optimization failed in `gen_candidates_scipy` with the following warning(s):\n[...]\n"
            "Trying again with a new set of initial conditions.",
            RuntimeWarning,
        )
        return real(*a, **k)

    monkeypatch.setattr(acquisition, "optimize_acqf", retried)
    spec = _spec([ContinuousParameter(name="x", lower=0, upper=1)])
    obs = [Observation({"x": i / 5}, {"y": math.sin(3 * i / 5)}) for i in range(6)]
    p = make_strategy(spec).ask(1, obs, [])[0]
    assert p.source == "model"
    assert (
        "acquisition optimizer: Optimization failed in `gen_candidates_scipy` with the following warning(s):"
        in p.info["fallbacks"]
    )


def test_requested_warp_and_log_that_cannot_apply_are_recorded():
    spec = _spec(
        [ContinuousParameter(name="x", lower=0, upper=1)],
        strategy=StrategySpec(initial_design=2, options={**FAST, "warp": True, "log_outcome": True}),
    )
    obs = [Observation({"x": 0.1}, {"y": -1.0}), Observation({"x": 0.9}, {"y": 2.0})]
    p = make_strategy(spec).ask(1, obs, [])[0]
    assert p.source == "model"
    assert "log_outcome: 'y' has values <= 0: modelled without log" in p.info["fallbacks"]
    assert "output warp of 'y' not applied: 2 measured values, it needs 4" in p.info["fallbacks"]


# ------------------------------------------------------------------------------ typed options, pilot variants
def test_plugin_strategies_get_their_options_as_given_or_checked_by_their_own_model(monkeypatch):
    import sys
    import types

    from labloop.strategy import RandomStrategy

    received = {}

    class Options(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        depth: int = pydantic.Field(3, ge=1)

    def untyped(spec, candidates, **kw):
        received.update(spec.strategy.options)
        return RandomStrategy(spec.model_copy(update={"strategy": StrategySpec(name="random")}), candidates)

    def typed(spec, candidates, **kw):
        return untyped(spec, candidates, **kw)

    typed.options_model = Options
    monkeypatch.setitem(sys.modules, "fakeplugin", types.SimpleNamespace(untyped=untyped, typed=typed))
    base = _spec([ContinuousParameter(name="x", lower=0, upper=1)])
    loose = base.model_copy(update={"strategy": StrategySpec(name="fakeplugin:untyped", options={"anything": [1]})})
    make_strategy(loose)
    assert received == {"anything": [1]}
    strict = base.model_copy(update={"strategy": StrategySpec(name="fakeplugin:typed", options={"depth": 0})})
    with pytest.raises(SpecError, match=r"strategy.options.depth: 0 is not allowed \(allowed: an integer >= 1\)"):
        make_strategy(strict)


def test_pilot_only_acquisitions_live_in_benchmarks():
    import sys
    from pathlib import Path

    from labloop.strategy import BotorchStrategy

    spec, obs = _pool_case()
    for pilot in ("ei_ts", "mix"):
        with pytest.raises(SpecError, match=f"strategy.options.acquisition: '{pilot}' is not allowed"):
            BotorchStrategy(spec, acquisition=pilot)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from pilot_variants import PilotStrategy
    finally:
        sys.path.pop(0)
    strat = PilotStrategy(spec, acquisition="ei_ts")
    kinds = []
    for _ in range(2):  # alternates by trial count: 8 observed -> LogEI, then 9 -> a Thompson sample
        p = strat.ask(1, obs, [])[0]
        kinds.append(p.info["acquisition_kind"])
        obs = obs + [Observation(p.params, {"y": 1.0})]
    assert kinds == ["LogExpectedImprovement", "ThompsonSampling"]


# ----------------------------------------------------------------------- what is in flight (issue 25)
def _rising(kind):
    """A 1-d problem rising to x = 1 (mixed: with a categorical whose 'a' is better), measured on the left only:
    the acquisition's optimum is on the right, where a pending point then sits."""
    params = [ContinuousParameter(name="x", lower=0, upper=1)]
    extra = {}
    if kind == "mixed":
        params.append(CategoricalParameter(name="c", choices=list("ab")))
        extra = {"c": "a"}
    obs = [Observation({"x": x, **extra}, {"y": x}) for x in (0.0, 0.2, 0.4, 0.6)]
    if extra:
        obs += [Observation({"x": x, "c": "b"}, {"y": x - 1}) for x in (0.1, 0.5)]
    return params, obs


@pytest.mark.parametrize("kind", ["continuous", "mixed"])
def test_a_proposal_moves_away_from_a_pending_point_in_continuous_and_mixed_spaces(kind):
    params, obs = _rising(kind)
    strat = make_strategy(_spec(params))
    alone = [strat.ask(1, obs, [])[0].params for _ in range(2)]
    assert abs(alone[0]["x"] - alone[1]["x"]) < 0.01 and alone[0]["x"] > 0.85  # the optimum, found again
    beside = strat.ask(1, obs, [alone[0]])[0].params  # the same state with that point in flight
    # ignored, it would be proposed again (< 0.01 away); believed (the default), the mean there is kept and only
    # the variance collapses, so the next proposal stays near the optimum but off the pending point
    assert abs(beside["x"] - alone[0]["x"]) > 0.05, "the pending point was ignored"


@pytest.mark.parametrize("small", [False, True])  # expected improvement (believer), Thompson sampling
def test_a_pool_proposal_believes_pending_rows(small):
    """Pool proposals condition on the rows in flight (the GP believes its own mean there) rather than only
    excluding them. Two promising, unmeasured ends of a symmetric problem; three trials in flight on the left
    end: proposals go to the right end in most seeds (ignoring them: half of them, and between pending rows)."""
    from labloop.strategy import BotorchStrategy
    from labloop.strategy.space import CandidatePool

    rows = [{"x": i / 60} for i in range(61)]
    obs = [Observation({"x": x}, {"y": y}) for x, y in [(0.2, 0.8), (0.4, 0.0), (0.6, 0.0), (0.8, 0.8)]]
    pend = [{"x": 3 / 60}, {"x": 6 / 60}, {"x": 9 / 60}]
    budget = 40 if small else 12  # 65 rows: at most 2 x 40 (small: Thompson sampling), more than 2 x 12
    right = 0
    for seed in range(12):
        spec = _spec(
            [ContinuousParameter(name="x", lower=0, upper=1)], stopping=StoppingSpec(max_trials=budget), seed=seed
        )
        pool = CandidatePool(BotorchStrategy(spec).space, rows + [o.params for o in obs])
        p = BotorchStrategy(spec, pool, **FAST).ask(1, obs, pend)[0]
        assert p.info["acquisition_kind"] == ("ThompsonSampling" if small else "LogExpectedImprovement")
        right += p.params["x"] > 0.5
        if not small:  # deterministic: the same pick whatever the seed
            assert p.params["x"] > 0.5
    assert right >= 8


def test_the_initial_design_is_one_space_filling_design_across_stations():
    """Four stations free at the start: one ask for 4 points, or 4 asks one at a time (each with the earlier ones
    pending), give the same 4 points of one scrambled Sobol sequence, spread over the box (not independent draws
    per station)."""
    import torch

    params = [ContinuousParameter(name=k, lower=0, upper=1) for k in "abc"]
    spec = _spec(params, strategy=StrategySpec(initial_design=8, options=FAST))
    together = [p.params for p in make_strategy(spec).ask(4, [], [])]
    one_by_one: list[dict] = []
    for _ in range(4):
        one_by_one += [p.params for p in make_strategy(spec).ask(1, [], list(one_by_one))]
    assert together == one_by_one
    assert all(p.source == "sobol" for p in make_strategy(spec).ask(4, [], []))
    pts = torch.tensor([[p[k] for k in "abc"] for p in together])
    gaps = torch.cdist(pts, pts) + torch.eye(4) * 9
    # 4 scrambled-Sobol points in the unit cube are at least ~0.4 apart; 4 independent uniform draws are closer
    # than 0.3 in about half the seeds
    assert float(gaps.min()) > 0.3
    for i in range(3):  # each coordinate: one point in each half (a Sobol property), for every pair of halves
        assert sorted(int(v >= 0.5) for v in pts[:, i].tolist()) == [0, 0, 1, 1]
