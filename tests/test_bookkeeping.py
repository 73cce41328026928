"""The public strategy base (labloop/strategy/bookkeeping.py): what a plugin strategy gets without writing it,
tested through the example of docs/research/optimizer.md ("Writing a strategy plugin"), run as that page shows it."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

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

DOC = Path(__file__).resolve().parents[1] / "docs" / "research" / "optimizer.md"
OBJ = [ObjectiveSpec(name="y", direction="maximize", plugin="reading")]


@pytest.fixture
def coin(monkeypatch):
    """The docs' example strategy, executed from the page and registered as the plugin ``docplugin:Coin``."""
    section = DOC.read_text().split("## Writing a strategy plugin", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    module = types.ModuleType("docplugin")
    exec(compile(code, str(DOC), "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "docplugin", module)
    return module.Coin


def _spec(params, **strategy):
    return CampaignSpec(
        name="b", parameters=params, objectives=OBJ, seed=5, strategy=StrategySpec(name="docplugin:Coin", **strategy)
    )


def test_a_plugin_gets_seed_points_first_and_never_repeats_a_point(coin):
    from labloop.strategy.bookkeeping import StrategyBase

    spec = _spec(
        [ContinuousParameter(name="x", lower=0, upper=1)], initial_design=1, seed_points=[{"x": 0.5}, {"x": 0.25}]
    )
    strat = make_strategy(spec)
    assert isinstance(strat, coin) and isinstance(strat, StrategyBase)
    obs = [Observation({"x": 0.25}, {"y": 1.0})]
    # the initial design runs while fewer than two trials succeeded, then the plugin's own draws
    assert [p.source for p in strat.ask(3, obs, [])] == ["seed", "sobol", "sobol"]
    obs.append(Observation({"x": 0.9}, {"y": 0.5}))
    out = strat.ask(4, obs, [{"x": 0.75}])
    assert [p.source for p in out] == ["seed", "coin", "coin", "coin"]  # the measured seed point is not rerun
    assert out[0].params == {"x": 0.5}
    xs = [p.params["x"] for p in out]
    assert len(set(xs)) == 4 and not {0.25, 0.75, 0.9} & set(xs)
    assert out[1].info == {"note": "evidence stored with the trial"}
    # the same store gives the same proposals: the draw is seeded by the trial count
    assert [p.params for p in make_strategy(spec).ask(4, obs, [{"x": 0.75}])] == [p.params for p in out]


def test_a_plugin_draws_pool_rows_without_replacement_and_names_them(coin):
    # a small fully discrete space is enumerated as a pool (grid_limit), rows drawn until none is left
    spec = _spec([IntegerParameter(name="k", lower=0, upper=4), CategoricalParameter(name="c", choices=["a", "b"])])
    strat = make_strategy(spec)
    assert strat.pool is not None and len(strat.pool) == 10
    obs = [Observation({"k": 0, "c": "a"}, {"y": 1.0}), Observation({"k": 1, "c": "b"}, {}, failed=True)]
    out = strat.ask(20, obs, [{"k": 2, "c": "a"}])
    rows = [p.info["row"] for p in out]
    assert len(out) == 7 and len(set(rows)) == 7  # 10 rows - 2 observed - 1 pending
    assert all(strat.pool.rows[r] == p.params for r, p in zip(rows, out))
    seen = {(o.params["k"], o.params["c"]) for o in obs} | {(2, "a")}
    assert not seen & {(p.params["k"], p.params["c"]) for p in out}


def test_bookkeeping_keeps_related_campaigns_apart_and_conditions_on_what_is_in_flight():
    import torch

    from labloop.strategy.bookkeeping import Bookkeeping, StrategyBase

    spec = CampaignSpec(name="b", parameters=[ContinuousParameter(name="x", lower=0, upper=1)], objectives=OBJ)
    base = StrategyBase(spec)
    obs = [
        Observation({"x": 0.1}, {"y": 1.0}),
        Observation({"x": 0.2}, {}, failed=True),
        Observation({"x": 0.3}, {"y": 2.0}, task="older"),
    ]
    book = base.bookkeeping(obs, [{"x": 0.4}])
    assert isinstance(book, Bookkeeping)
    assert [o.params["x"] for o in book.obs] == [0.1, 0.2] and list(book.related) == ["older"]
    assert book.n_ok == 1 and book.count == 3
    assert book.is_taken(torch.tensor([0.1], dtype=torch.float64))
    assert not book.is_taken(torch.tensor([0.3], dtype=torch.float64))  # a related campaign's point is not ours
    p = book.take(torch.tensor([0.6], dtype=torch.float64), "mine", {"why": "test"})
    assert p.params == {"x": pytest.approx(0.6)} and p.source == "mine" and book.count == 4
    assert book.in_flight().reshape(-1).tolist() == pytest.approx([0.4, 0.6])
    with pytest.raises(NotImplementedError):
        base.ask(1, [], [])
    with pytest.raises(LabloopError, match="a pending point does not fit the search space"):
        base.bookkeeping([], [{"x": "high"}])


def test_the_base_and_the_random_strategy_do_not_need_the_bayesian_strategy():
    """Random search and plugins built on the base no longer borrow the botorch strategy's internals."""
    code = (
        "import sys, labloop.strategy.bookkeeping, labloop.strategy.random; "
        "print(sorted(m for m in ('labloop.strategy.bayes', 'labloop.strategy.acquisition') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
