"""Trials in flight in a continuous search space (issue 25 item 2): the default (``batch_selection: believer``)
conditions every GP on its own mean at the pending points, as on pools; ``fantasy`` keeps them as Monte Carlo
``X_pending``. Pool and mixed-space cases are in test_strategy.py."""

import pytest
import torch
from botorch.models import ModelListGP, SingleTaskGP

from labloop.spec import CampaignSpec, ContinuousParameter, ObjectiveSpec, StrategySpec
from labloop.strategy import make_strategy
from labloop.strategy.acquisition import believe_in_flight
from labloop.strategy.base import Observation

FAST = {"mc_samples": 32, "raw_samples": 64, "num_restarts": 2}


def _spec(seed: int, selection: str) -> CampaignSpec:
    return CampaignSpec(
        name="t",
        parameters=[ContinuousParameter(name="x", lower=0, upper=1)],
        objectives=[ObjectiveSpec(name="y", direction="maximize", plugin="reading")],
        strategy=StrategySpec(initial_design=4, options={**FAST, "batch_selection": selection}),
        seed=seed,
    )


@pytest.mark.parametrize("selection", ["believer", "fantasy"])
def test_a_proposal_goes_to_the_promising_end_nothing_is_in_flight_at(selection):
    """Two promising, unmeasured ends of a symmetric problem; three trials in flight at one end: the proposal goes
    to the other end, and to the first end when the trials in flight are mirrored (ignoring them, both cases would
    pick the same end)."""
    obs = [Observation({"x": x}, {"y": y}) for x, y in [(0.2, 0.8), (0.4, 0.0), (0.6, 0.0), (0.8, 0.8)]]
    left = [{"x": 0.05}, {"x": 0.1}, {"x": 0.15}]
    right = [{"x": 1 - p["x"]} for p in left]
    for seed in range(3):
        assert make_strategy(_spec(seed, selection)).ask(1, obs, left)[0].params["x"] > 0.8
        assert make_strategy(_spec(seed, selection)).ask(1, obs, right)[0].params["x"] < 0.2


def test_believing_keeps_the_mean_and_collapses_the_variance_at_the_trials_in_flight():
    torch.manual_seed(0)
    X = torch.rand(8, 2, dtype=torch.float64)
    Y = torch.sin(6 * X).sum(-1, keepdim=True)
    model = ModelListGP(SingleTaskGP(X, Y), SingleTaskGP(X, -Y))
    model.eval()
    pending = torch.tensor([[0.9, 0.1], [0.5, 0.95]], dtype=torch.float64)
    same, base = believe_in_flight(model, None, X)
    assert same is model and base is X
    believing, base = believe_in_flight(model, pending, X)
    assert base.shape == (10, 2) and torch.equal(base[8:], pending)
    with torch.no_grad():
        for before, after in zip(model.models, believing.models):
            b, a = before.posterior(pending), after.posterior(pending)
            assert torch.allclose(a.mean, b.mean, atol=1e-4)  # believed at its own mean
            assert (a.variance < 0.5 * b.variance).all()  # and no longer uncertain there
            far = torch.tensor([[0.1, 0.5]], dtype=torch.float64)  # away from them: the model is as it was
            assert torch.allclose(after.posterior(far).mean, before.posterior(far).mean, atol=1e-2)


def test_the_record_says_how_many_trials_in_flight_a_proposal_believed():
    obs = [Observation({"x": x}, {"y": x}) for x in (0.0, 0.3, 0.6, 0.9)]
    pending = [{"x": 0.95}, {"x": 0.5}]
    believed = make_strategy(_spec(0, "believer")).ask(1, obs, pending)[0]
    assert believed.info["in_flight_believed"] == 2
    assert "in_flight_believed" not in make_strategy(_spec(0, "believer")).ask(1, obs, [])[0].info
    assert "in_flight_believed" not in make_strategy(_spec(0, "fantasy")).ask(1, obs, pending)[0].info
