"""The large-n path (labloop.strategy.large): a local GP in a trust region around the incumbent.

Forced on (``model_scope: local``) with a few hundred points and a small ``local_points`` so that it runs in
seconds; speed and quality at thousands of points are measured in benchmarks/large_n.py, not here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from labloop.errors import SpecError
from labloop.spec import (
    CampaignSpec,
    CategoricalParameter,
    ContinuousParameter,
    ObjectiveSpec,
    StoppingSpec,
    StrategySpec,
)
from labloop.strategy import Observation, make_strategy

FAST = {"mc_samples": 32, "raw_samples": 64, "num_restarts": 2}
OPT = (0.7, 0.2, 0.5)


def _f(p: dict) -> float:
    return -sum((p[f"x{i}"] - o) ** 2 for i, o in enumerate(OPT))


def _spec(**options) -> CampaignSpec:
    return CampaignSpec(
        name="large",
        parameters=[ContinuousParameter(name=f"x{i}", lower=0, upper=1) for i in range(3)],
        objectives=[ObjectiveSpec(name="y", direction="maximize", plugin="reading")],
        strategy=StrategySpec(options={**FAST, **options}),
    )


def _obs(n: int, seed: int = 0, noise: float = 0.01) -> list[Observation]:
    rng = np.random.default_rng(seed)
    out = []
    for x in rng.random((n, 3)):
        p = {f"x{i}": float(v) for i, v in enumerate(x)}
        out.append(Observation(p, {"y": _f(p) + noise * float(rng.standard_normal())}))
    return out


def test_robust_center_prefers_a_good_neighbourhood_over_one_lucky_value():
    import torch

    from labloop.strategy.large import robust_center

    X = torch.rand(300, 2, dtype=torch.double, generator=torch.Generator().manual_seed(0))
    y = -((X - 0.3) ** 2).sum(-1)
    y[int((X - 0.9).norm(dim=-1).argmin())] = 10.0  # one lucky (noisy) measurement far from the good region
    c = robust_center(X, y)
    assert float((c - 0.3).norm()) < 0.15


def test_local_outputs_keep_the_nearest_points_and_a_box_around_them():
    import torch

    from labloop.strategy.large import local_outputs

    X = torch.rand(400, 3, dtype=torch.double, generator=torch.Generator().manual_seed(1))
    y = -((X - 0.5) ** 2).sum(-1, keepdim=True)
    bounds = torch.tensor([[0.0] * 3, [1.0] * 3], dtype=torch.double)
    ((Xl, yl),) = local_outputs([(X, y)], bounds, 50)[0]
    region = local_outputs([(X, y)], bounds, 50)[1]
    assert len(Xl) == 50 and region.k == 50 and region.n == 400
    far = (X - region.center).norm(dim=-1).sort().values[50]
    assert float((Xl - region.center).norm(dim=-1).max()) <= float(far)
    assert bool(region.inside(Xl).all()) and bool(region.inside(region.center[None]).all())
    assert float((region.box[1] - region.box[0]).prod()) < 0.5  # a trust region, not the whole cube


def test_forced_local_model_proposes_inside_its_trust_region_near_the_optimum():
    strat = make_strategy(_spec(model_scope="local", local_points=60))
    obs = _obs(300)
    p = strat.ask(1, obs, [])[0]
    info = p.info["local_model"]
    assert p.source == "model" and info["n"] == 300 and info["local_points"] == 60
    assert info["box_volume"] < 1.0
    assert p.info["acquisition_kind"] == "LogExpectedImprovement"  # auto: analytic LogEI in the local box
    assert p.info["n_train"] == 60
    best = max(o.values["y"] for o in obs)
    assert _f(p.params) > best - 0.05  # a proposal among the best of 300 random points, not somewhere far
    # with a point in flight: the Monte Carlo form with the pending point, still local
    q = strat.ask(2, obs, [p.params])
    assert len(q) == 2 and all(x.info["acquisition_kind"] == "qLogExpectedImprovement" for x in q)
    assert all("local_model" in x.info for x in q)


def test_auto_scope_switches_at_the_threshold_and_exact_never_does():
    obs = _obs(80)
    below = make_strategy(_spec(local_above=80, local_points=30)).ask(1, obs, [])[0]
    above = make_strategy(_spec(local_above=79, local_points=30)).ask(1, obs, [])[0]
    exact = make_strategy(_spec(model_scope="exact", local_above=0)).ask(1, obs, [])[0]
    assert "local_model" not in below.info and below.info["n_train"] == 80
    assert above.info["local_model"]["local_points"] == 30 and above.info["n_train"] == 30
    assert "local_model" not in exact.info


def test_local_model_on_a_pool_with_categories_picks_a_free_row():
    from labloop.strategy import BotorchStrategy, CandidatePool

    spec = CampaignSpec(
        name="pool",
        parameters=[
            ContinuousParameter(name="x", lower=0, upper=1),
            CategoricalParameter(name="c", choices=list("abc")),
        ],
        objectives=[ObjectiveSpec(name="y", direction="maximize", plugin="reading")],
        stopping=StoppingSpec(max_trials=20),
        strategy=StrategySpec(options={**FAST, "model_scope": "local", "local_points": 40}),
    )
    rows = [{"x": i / 99, "c": c} for i in range(100) for c in "abc"]
    strat = BotorchStrategy(spec, CandidatePool(BotorchStrategy(spec).space, rows))
    y = lambda r: -abs(r["x"] - 0.4) + (0.3 if r["c"] == "b" else 0.0)
    obs = [Observation(r, {"y": y(r)}) for r in rows[::3]]  # 100 measured rows (all 'a')
    obs += [Observation(r, {"y": y(r)}) for r in rows[1::15]]
    p = strat.ask(1, obs, [])[0]
    measured = {(o.params["x"], o.params["c"]) for o in obs}
    assert p.params in rows and (p.params["x"], p.params["c"]) not in measured
    assert p.info["local_model"]["local_points"] == 40


def test_bad_scope_options_are_refused_before_anything_runs():
    with pytest.raises(ValueError, match="model_scope: 'sparse' is not allowed"):  # the campaign file's check
        _spec(model_scope="sparse")
    with pytest.raises(SpecError, match="local_points"):  # keyword options: the strategy's own check
        make_strategy(_spec(), local_points=3)


def test_encode_many_matches_row_by_row_and_keeps_its_errors():
    import torch

    strat = make_strategy(_spec())
    rows = [o.params for o in _obs(50)]
    fast = strat.space.encode_many(rows)
    slow = torch.stack([strat.space.encode(r) for r in rows])
    assert torch.equal(fast, slow)
    from labloop.errors import LabloopError

    with pytest.raises(LabloopError, match="outside"):
        strat.space.encode_many(rows + [{"x0": 2.0, "x1": 0.1, "x2": 0.1}])
    with pytest.raises(LabloopError, match="missing"):
        strat.space.encode_many(rows + [{"x0": 0.5}])
    assert math.isclose(float(fast[0, 0]), rows[0]["x0"])
