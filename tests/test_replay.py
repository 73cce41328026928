"""Lookup-table labs and ``labloop replay``: inference of inputs, bad tables, and the CLI end to end."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from labloop.cli.replay import register
from labloop.errors import LabloopError
from labloop.spec import CategoricalParameter, ContinuousParameter, DiscreteParameter
from labloop.strategy.replay import run_replay
from labloop.strategy.tables import infer_parameters, read_table, table_lab

ROWS = [
    (i % 4, f"cat{i % 3}", round(0.05 * i, 2), float((i % 4) * 2 + (i % 3 == 1) * 3 - abs(i - 12) * 0.1))
    for i in range(24)
]


@pytest.fixture()
def table(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b,c,y,note\n" + "".join(f"{a},{b},{c},{y},n{i}\n" for i, (a, b, c, y) in enumerate(ROWS)))
    return p


def _app():
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps typer in multi-command mode, as in the real CLI
        pass

    return app


def test_inputs_are_inferred_numeric_discrete_and_categorical(table):
    t = read_table(table)
    a, b, c = infer_parameters(t, ["a", "b", "c"])
    assert isinstance(a, DiscreteParameter) and a.values == [0, 1, 2, 3]
    assert isinstance(b, CategoricalParameter) and sorted(b.choices) == ["cat0", "cat1", "cat2"]
    assert isinstance(c, ContinuousParameter)


def test_replay_measures_each_row_at_most_once_and_finds_the_best(tmp_path):
    from labloop.strategy import BotorchStrategy

    p = tmp_path / "t.csv"
    p.write_text("a,b,c,y\n" + "".join(f"{a},{b},{c},{y}\n" for a, b, c, y in ROWS[:14]))
    lab = table_lab(p, "y", "max", seed=1, initial_design=4)
    r = run_replay(lab, 14, strategy=BotorchStrategy(lab.spec, lab.pool, mc_samples=32))
    assert sorted(r.rows) == list(range(14))  # a measured row is never proposed again
    assert r.best == max(y for *_, y in ROWS[:14])
    assert r.history[:4] and r.sources[:4] == ["sobol"] * 4 and "model" in r.sources


def test_cli_replay_json(table):
    res = CliRunner().invoke(
        _app(),
        [
            "replay",
            str(table),
            "--objective",
            "y",
            "--direction",
            "max",
            "--exclude",
            "note",
            "--seed",
            "3",
            "--budget",
            "10",
            "--batch-size",
            "2",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out["history"]) == 10 and out["best"] == max(out["history"])
    ys = [y for *_, y in ROWS]
    assert all(h in ys for h in out["history"])


def test_cli_replay_with_campaign_file(table, tmp_path):
    camp = tmp_path / "c.yaml"
    camp.write_text(
        "name: t\nparameters:\n  - {name: a, type: continuous, lower: 0, upper: 3}\n"
        "  - {name: b, type: categorical, choices: [cat0, cat1, cat2]}\n"
        "objectives:\n  - {name: y, direction: minimize, plugin: table}\n"
        "strategy: {initial_design: 3}\n"
    )
    res = CliRunner().invoke(_app(), ["replay", str(table), "--campaign", str(camp), "--budget", "6", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["direction"] == "minimize" and out["best"] == min(out["history"])


@pytest.mark.parametrize(
    "text,match",
    [
        ("a,b,y\n1,2,3\nx,2,4\n1,3,5\n", "numeric but has 'x'"),
        ("a,b,y\n1,2,3\n2,nan,4\n", "numeric but has 'nan'"),
        ("a,a,y\n1,2,3\n", "duplicate column"),
        ("", "empty"),
        ("a,b,y\n", "no data rows"),
        ("a,b,y\n1,2,high\n", "objective column 'y'"),
        ("a,b,y\n1,2\n", "cells"),
    ],
)
def test_bad_tables_are_clear_errors(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(LabloopError, match=match):
        table_lab(p, "y", "max")
    res = CliRunner().invoke(_app(), ["replay", str(p), "--objective", "y", "--direction", "max"])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_cli_reports_unknown_objective_without_traceback(table):
    res = CliRunner().invoke(_app(), ["replay", str(table), "--objective", "nope", "--direction", "max"])
    assert res.exit_code == 2 and "no column 'nope'" in res.output


def test_campaign_candidates_csv_restricts_proposals_and_bad_rows_are_named(tmp_path):
    from labloop.spec import CampaignSpec, ObjectiveSpec, StrategySpec
    from labloop.strategy import make_strategy

    good = tmp_path / "cands.csv"
    good.write_text("a,b\n0.1,x\n0.5,y\n0.9,x\n")
    params = [ContinuousParameter(name="a", lower=0, upper=1), CategoricalParameter(name="b", choices=["x", "y"])]
    spec = CampaignSpec(
        name="c",
        parameters=params,
        candidates=str(good),
        strategy=StrategySpec(initial_design=2),
        objectives=[ObjectiveSpec(name="y", direction="maximize", plugin="reading")],
    )
    props = make_strategy(spec).ask(3, [], [])
    assert sorted((p.params["a"], p.params["b"]) for p in props) == [(0.1, "x"), (0.5, "y"), (0.9, "x")]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n0.1,x\n1.5,y\n")
    with pytest.raises(LabloopError, match="line 3"):
        make_strategy(spec.model_copy(update={"candidates": str(bad)}))
