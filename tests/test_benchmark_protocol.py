"""The shared benchmark protocol (issue 13) and batches on pools: the same starting rows for every method, one
top-1% rule, the paired Wilcoxon helper, batch and pending-point proposals on a candidate pool."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from labloop.benchmark_protocol import experiments_to, geometric_mean, paired_wilcoxon, start_rows, target_rows
from labloop.cli.replay import register
from labloop.strategy.base import Observation
from labloop.strategy.replay import run_replay
from labloop.strategy.tables import table_lab

# a 2-d grid with a smooth bump: a tiny pool where batches have somewhere to go
ROWS = [
    (a, b, round(math.exp(-((a - 3) ** 2 + (b - 5) ** 2) / 6.0) + 0.01 * ((a * 7 + b * 3) % 5), 4))
    for a in range(7)
    for b in range(8)
]


@pytest.fixture()
def table(tmp_path):
    p = tmp_path / "bump.csv"
    p.write_text("a,b,y\n" + "".join(f"{a},{b},{y}\n" for a, b, y in ROWS))
    return p


def _app():
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:
        pass

    return app


def test_start_rows_are_the_numpy_draw_every_method_uses(table):
    assert start_rows(56, 3) == [int(i) for i in np.random.default_rng(3).choice(56, 5, replace=False)]
    assert start_rows(56, 3) != start_rows(56, 4)
    res = CliRunner().invoke(
        _app(),
        [
            "replay",
            str(table),
            "--objective",
            "y",
            "--direction",
            "max",
            "--seed",
            "3",
            "--random-start",
            "5",
            "--budget",
            "8",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["rows"][:5] == start_rows(56, 3) and out["sources"][:5] == ["initial"] * 5
    assert out["sources"][5:] == ["model"] * 3  # the starting rows replace the strategy's own initial design


def test_start_rows_given_explicitly_and_refused_when_bad(table):
    ok = CliRunner().invoke(
        _app(),
        [
            "replay",
            str(table),
            "--objective",
            "y",
            "--direction",
            "max",
            "--start-rows",
            "4,40,17",
            "--budget",
            "5",
            "--json",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["rows"][:3] == [4, 40, 17]
    for bad, said in (("4,56", "row 56 is not in the table"), ("4,4", "given twice"), ("4,x", "not a row index")):
        res = CliRunner().invoke(
            _app(), ["replay", str(table), "--objective", "y", "--direction", "max", "--start-rows", bad]
        )
        assert res.exit_code != 0 and said in res.output and "Traceback" not in res.output
    both = CliRunner().invoke(
        _app(),
        ["replay", str(table), "--objective", "y", "--direction", "max", "--start-rows", "1", "--random-start", "2"],
    )
    assert both.exit_code != 0 and "pass one of them" in both.output


def test_top_one_percent_counts_ties_on_the_threshold():
    values = [float(v) for v in range(150)] + [148.0, 148.0]  # N = 152 -> ceil(1.52) = 2nd best = 148, tied x3
    best, top = target_rows(values, maximize=True)
    assert best == {149} and top == {148, 149, 150, 151}
    best, top = target_rows([-v for v in values], maximize=False)
    assert best == {149} and top == {148, 149, 150, 151}


@given(st.lists(st.integers(0, 20), min_size=1, max_size=300))
@settings(max_examples=50, deadline=None)
def test_top_rows_are_at_least_ceil_one_percent_and_exactly_those_as_good_as_it(vals):
    best, top = target_rows([float(v) for v in vals], maximize=True)
    k = math.ceil(0.01 * len(vals))
    threshold = sorted(vals, reverse=True)[k - 1]
    assert len(top) >= k and top == {i for i, v in enumerate(vals) if v >= threshold} and best <= top


def test_experiments_count_whole_rounds_after_the_starting_rows():
    assert experiments_to([1, 2, 3], [[4, 5], [6, 7]], {2}) == (2, 0)
    assert experiments_to([1, 2, 3], [[4, 5], [6, 7]], {6}) == (7, 2)
    assert experiments_to([1, 2, 3], [[4, 5], [6]], {9}) is None


def test_wilcoxon_helper_on_a_known_example():
    # six positive differences: the exact two-sided p of the signed-rank test is 2 / 2**6
    r = paired_wilcoxon([11, 12, 13, 14, 15, 16], [10, 10, 10, 10, 10, 10])
    assert r["p"] == pytest.approx(2 / 64) and r["y_better"] == 6 and r["median_diff"] == 3.5
    # zero differences are dropped (Wilcoxon's rule): the same p, and they are counted
    z = paired_wilcoxon([11, 12, 13, 14, 15, 16, 7, 151], [10, 10, 10, 10, 10, 10, 7, 151])
    assert z["zeros"] == 2 and z["p"] == pytest.approx(2 / 64)
    assert paired_wilcoxon([5, 6], [5, 6])["p"] == 1.0
    with pytest.raises(ValueError):
        paired_wilcoxon([1, 2], [1])
    assert geometric_mean([0.5, 2.0]) == pytest.approx(1.0)


@pytest.mark.parametrize("selection", ["fantasy", "believer"])
def test_batches_are_distinct_unmeasured_rows_in_counted_rounds(table, selection):
    from labloop.strategy import BotorchStrategy

    lab = table_lab(table, "y", "max", seed=2, initial_design=4, budget=40, batch_size=4)
    strat = BotorchStrategy(lab.spec, lab.pool, mc_samples=32, small_pool=0, batch_selection=selection)
    r = run_replay(lab, 20, batch_size=4, strategy=strat, initial_rows=start_rows(56, 2, 4))
    assert len(r.rows) == 20 and len(set(r.rows)) == 20  # never a row twice, within or across rounds
    assert r.round_of == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4
    assert all(s == "model" for s in r.sources[4:])


def _observations(lab, rows):
    return [Observation(dict(lab.pool.rows[i]), {"y": lab.values[i]}) for i in rows]


@pytest.mark.parametrize("selection", ["fantasy", "believer"])
def test_pending_rows_are_not_proposed_again(table, selection):
    from labloop.strategy import BotorchStrategy

    lab = table_lab(table, "y", "max", seed=1, initial_design=4, budget=40)
    strat = BotorchStrategy(lab.spec, lab.pool, mc_samples=32, small_pool=0, batch_selection=selection)
    obs = _observations(lab, [0, 9, 30, 47, 55])
    first = strat.ask(1, obs, [])[0].params
    pending = [first] + [dict(lab.pool.rows[i]) for i in (20, 21)]
    props = strat.ask(3, obs, pending)
    keys = [tuple(sorted(p.params.items())) for p in props]
    assert len(set(keys)) == 3
    assert not {tuple(sorted(p.items())) for p in pending} & set(keys)
    assert not {tuple(sorted(o.params.items())) for o in obs} & set(keys)


def test_one_proposal_is_the_same_whatever_the_batch_selection_and_opens_a_believer_batch(table):
    from labloop.strategy import BotorchStrategy

    lab = table_lab(table, "y", "max", seed=1, initial_design=4, budget=40)
    obs = _observations(lab, [0, 9, 30, 47, 55, 12])
    one = {
        sel: BotorchStrategy(lab.spec, lab.pool, small_pool=0, batch_selection=sel).ask(1, obs, [])[0]
        for sel in ("fantasy", "believer")
    }
    assert one["fantasy"].params == one["believer"].params
    assert one["fantasy"].info["acquisition"] == pytest.approx(one["believer"].info["acquisition"])
    batch = BotorchStrategy(lab.spec, lab.pool, small_pool=0, batch_selection="believer").ask(4, obs, [])
    assert batch[0].params == one["believer"].params
