"""Human knowledge in the strategy: prior data (a CSV of past experiments, another stored campaign) and an
expert's belief about where the optimum lies (piBO)."""

from __future__ import annotations

import csv
import math

import pytest
from campaign_files import thinfilm, write
from typer.testing import CliRunner

from labloop.cli import app
from labloop.errors import LabloopError, SpecError
from labloop.run.campaign import prepare
from labloop.spec import (
    CampaignSpec,
    CategoricalParameter,
    ContinuousParameter,
    ObjectiveSpec,
    StrategySpec,
)
from labloop.store import Store
from labloop.strategy import Observation
from labloop.strategy.priors import AUDIT_ACTION, csv_observations

FAST_OPTS = {"mc_samples": 32, "raw_samples": 64, "num_restarts": 2}
TIME_SCALE = "2000000"
PARAMS = ["o2_pressure", "substrate_temperature", "nb_fraction", "rf_power", "duration"]


def _past_rows(n: int) -> list[dict]:
    """Plausible past thin-film recipes (inside the demo's bounds) with made-up sheet resistances."""
    rows = []
    for i in range(n):
        u = (i + 0.5) / n
        rows.append(
            {
                "o2_pressure": 0.05 * (100**u),
                "substrate_temperature": 25 + 650 * u,
                "nb_fraction": 0.2 * ((7 * i) % n) / n,
                "rf_power": 50 + 350 * ((3 * i) % n) / n,
                "duration": 10 + 110 * u,
                "sheet_resistance": 10 + 100 * abs(u - 0.6),
            }
        )
    return rows


def _write_csv(path, rows, columns=None):
    columns = columns or list(rows[0])
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    return path


# ------------------------------------------------------------------------------------------------ prior data
def test_csv_prior_warm_starts_the_model_and_never_counts_as_a_trial(tmp_path):
    past = _write_csv(tmp_path / "past.csv", _past_rows(8))
    data = thinfilm(stopping={"max_trials": 3, "target_reached": False})
    data["strategy"]["prior_data"] = [{"csv": str(past)}]
    data["strategy"]["options"] = FAST_OPTS
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    r = CliRunner().invoke(
        app, ["run", str(write(tmp_path, data)), "--store", url, "--time-scale", TIME_SCALE], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    store = Store(url)
    c = store.campaign()
    trials = store.trials(c.id)
    # 8 past experiments >= initial_design (6): the very first trial is already a model proposal
    assert len(trials) == 3 and all(t.source == "model" for t in trials)
    assert trials[0].info["n_train"] == 8
    recorded = [a for a in store.audit_log(c.id) if a.action == AUDIT_ACTION]
    assert len(recorded) == 1 and len(recorded[0].detail["observations"]) == 8
    store.close()
    # the operator sees what the model thought at its latest proposal: importance and predicted best
    r = CliRunner().invoke(app, ["status", "--store", url], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "model (at trial 3): importance" in r.output and "model's predicted best" in r.output
    assert "sheet_resistance" in r.output.split("model's predicted best")[1]


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda rows, cols: (rows, [c for c in cols if c != "rf_power"]), r"columns \['rf_power'\] are missing"),
        (
            lambda rows, cols: ([{**rows[0], "sheet_resistance": "high"}] + rows[1:], cols),
            r"line 2: objective 'sheet_resistance' is 'high'",
        ),
        (lambda rows, cols: (rows[:2] + [{**rows[2], "substrate_temperature": 900}] + rows[3:], cols), r"line 4: "),
        (lambda rows, cols: ([{**rows[0], "sheet_resistance": ""}] + rows[1:], cols), r"line 2: no objective value"),
        (lambda rows, cols: ([{**r, "failed": "maybe"} for r in rows], cols + ["failed"]), r"'failed' is 'maybe'"),
    ],
)
def test_bad_prior_csv_is_refused_before_anything_is_stored(tmp_path, edit, match):
    rows, cols = edit(_past_rows(4), list(_past_rows(1)[0]))
    past = tmp_path / "past.csv"
    with past.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    data = thinfilm()
    data["strategy"]["prior_data"] = [{"csv": str(past)}]
    with pytest.raises(SpecError, match=match):
        prepare(write(tmp_path, data))
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    r = CliRunner().invoke(app, ["run", str(write(tmp_path, data)), "--store", url])
    assert r.exit_code == 2 and "strategy.prior_data[0]" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "lab.db").exists() or not Store(url).campaigns()


def test_failed_past_experiments_train_the_feasibility_model(tmp_path):
    rows = _past_rows(6)
    rows = [{**r, "failed": "0"} for r in rows] + [{**rows[0], "sheet_resistance": "", "failed": "yes"}]
    data = thinfilm()
    obs = csv_observations(CampaignSpec.model_validate(data), _write_csv(tmp_path / "p.csv", rows))
    assert [o.failed for o in obs] == [False] * 6 + [True]
    assert obs[-1].values["sheet_resistance"] is None


def test_another_campaign_in_the_store_is_prior_data_and_resume_uses_the_record(tmp_path):
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    cli = CliRunner()
    first = thinfilm(name="first-run", stopping={"max_trials": 7, "target_reached": False})
    first["strategy"]["options"] = FAST_OPTS
    r = cli.invoke(
        app,
        ["run", str(write(tmp_path, first, "a.yaml")), "--store", url, "--time-scale", TIME_SCALE],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    second = thinfilm(name="second-run", stopping={"max_trials": 2, "target_reached": False})
    second["strategy"]["prior_data"] = [{"campaign": "first-run"}]
    second["strategy"]["options"] = FAST_OPTS
    r = cli.invoke(
        app,
        ["run", str(write(tmp_path, second, "b.yaml")), "--store", url, "--time-scale", TIME_SCALE],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    store = Store(url)
    c2 = store.campaign("second-run")
    trials = store.trials(c2.id)
    assert len(trials) == 2 and trials[0].source == "model" and trials[0].info["n_train"] == 7
    first_params = [t.params for t in store.trials(store.campaign("first-run").id)]
    assert all(t.params not in first_params for t in trials)  # measured before: never re-run
    store.close()
    # a campaign that names a campaign the store does not hold is refused before it is stored
    bad = thinfilm(name="third-run")
    bad["strategy"]["prior_data"] = [{"campaign": "no-such-run"}]
    r = cli.invoke(app, ["run", str(write(tmp_path, bad, "c.yaml")), "--store", url])
    assert r.exit_code == 2 and "no-such-run" in r.output and "Traceback" not in r.output
    store = Store(url)
    assert [c.name for c in store.campaigns()] == ["first-run", "second-run"]
    store.close()


def test_resume_reads_the_recorded_prior_not_the_file(tmp_path):
    from labloop.run.campaign import CampaignRunner

    past = _write_csv(tmp_path / "past.csv", _past_rows(8))
    data = thinfilm(stopping={"max_trials": 2, "target_reached": False})
    data["strategy"]["prior_data"] = [{"csv": str(past)}]
    store = Store(f"sqlite:///{tmp_path / 'lab.db'}")
    runner = CampaignRunner.start(prepare(write(tmp_path, data)), store)
    past.unlink()  # the file is gone by the time the campaign is resumed
    resumed, _ = CampaignRunner.resume(store, store.campaign(runner.campaign.id))
    assert resumed.prior == runner.prior and len(resumed.prior) == 8
    store.close()


# ---------------------------------------------------------------------------------------------- expert prior
def _spec(params, initial_design=6, **strategy):
    return CampaignSpec(
        name="t",
        parameters=params,
        objectives=[ObjectiveSpec(name="y", direction="maximize", plugin="reading")],
        strategy=StrategySpec(initial_design=initial_design, options=FAST_OPTS, **strategy),
    )


def test_initial_design_is_drawn_from_the_expert_belief():
    from labloop.strategy import BotorchStrategy

    params = [
        ContinuousParameter(name="x", lower=0, upper=100),
        ContinuousParameter(name="z", lower=0, upper=1),
        CategoricalParameter(name="c", choices=list("abcdef")),
    ]
    believed = BotorchStrategy(
        _spec(params, expert_prior={"x": {"center": 80, "width": 5}, "c": {"prefer": ["b", "e"]}})
    ).ask(6, [], [])
    plain = BotorchStrategy(_spec(params)).ask(6, [], [])
    assert all(p.source == "sobol" for p in believed)
    assert all(abs(p.params["x"] - 80) <= 20 for p in believed)
    assert {p.params["c"] for p in believed} <= {"b", "e"}
    assert max(abs(p.params["x"] - 80) for p in plain) > 30 and len({p.params["c"] for p in plain}) > 2
    assert len({round(p.params["z"], 3) for p in believed}) == 6  # columns without a belief stay space-filling


def test_belief_pulls_model_proposals_early_and_fades_with_data():
    from labloop.strategy import BotorchStrategy
    from labloop.strategy.space import CandidatePool

    spec = _spec(
        [ContinuousParameter(name="x", lower=0, upper=1)],
        initial_design=3,
        expert_prior={"x": {"center": 0.9, "width": 0.05}},
    )
    rows = [{"x": i / 99} for i in range(100)]
    pool = CandidatePool(BotorchStrategy(spec).space, rows)

    def obs(xs):  # a flat objective: the model has no preference of its own
        return [Observation({"x": x}, {"y": 1.0 + 0.01 * math.sin(40 * x)}) for x in xs]

    few = obs([rows[i]["x"] for i in (5, 30, 50, 70)])
    p = BotorchStrategy(spec, pool).ask(1, few, [])[0]
    assert p.source == "model" and abs(p.params["x"] - 0.9) <= 0.1
    assert p.info["expert_prior_exponent"] == pytest.approx(10 / 4)
    many = obs([rows[i]["x"] for i in range(0, 100, 3)])
    q = BotorchStrategy(spec, pool).ask(1, many, [])[0]
    assert q.info["expert_prior_exponent"] == pytest.approx(10 / len(many))


def test_belief_guides_continuous_optimization_too():
    from labloop.strategy import BotorchStrategy

    spec = _spec(
        [ContinuousParameter(name="x", lower=0, upper=1), ContinuousParameter(name="w", lower=0, upper=1)],
        initial_design=3,
        expert_prior={"x": {"center": 0.15, "width": 0.03}},
    )
    flat = [
        Observation({"x": x, "w": w}, {"y": 0.5 + 0.001 * x})
        for x, w in ((0.1, 0.2), (0.5, 0.9), (0.9, 0.4), (0.3, 0.6), (0.7, 0.1), (0.45, 0.35))
    ]
    p = BotorchStrategy(spec).ask(1, flat, [])[0]
    assert p.source == "model" and abs(p.params["x"] - 0.15) < 0.1


@pytest.mark.parametrize(
    "belief, match",
    [
        ({"nope": {"center": 1, "width": 1}}, "'nope' is not a continuous"),
        ({"x": {"center": 5, "width": 1}}, r"center 5.0 is outside the bounds \[0.0, 1.0\]"),
        ({"x": {"prefer": ["a"]}}, "numeric: give 'center' and 'width'"),
        ({"c": {"center": 1, "width": 1}}, "categorical: give 'prefer"),
        ({"c": {"prefer": ["zz"]}}, r"\['zz'\] are not choices"),
        ({"x": {"center": 0.5}}, "needs both 'center' and 'width'"),
    ],
)
def test_bad_beliefs_are_refused(belief, match):
    with pytest.raises(ValueError, match=match):
        _spec(
            [ContinuousParameter(name="x", lower=0, upper=1), CategoricalParameter(name="c", choices=["a", "b"])],
            expert_prior=belief,
        )


def test_prior_data_entry_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one of 'csv' or 'campaign'"):
        StrategySpec(prior_data=[{"csv": "a.csv", "campaign": "b"}])
    with pytest.raises(LabloopError, match="no such file"):
        csv_observations(_spec([ContinuousParameter(name="x", lower=0, upper=1)]), "/nonexistent/past.csv")


def test_the_docs_strategy_example_is_a_valid_strategy_section():
    """docs/research/optimizer.md's strategy block (once README's) is a working strategy section, not prose."""
    import re
    from pathlib import Path

    import yaml

    page = (Path(__file__).resolve().parents[1] / "docs" / "research" / "optimizer.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", page, re.S) if "expert_prior" in b)
    data = yaml.safe_load(block)
    spec = StrategySpec.model_validate(data["strategy"])
    assert spec.expert_prior["substrate_temperature"].center == 450
    assert [p.csv or p.campaign for p in spec.prior_data] == ["last_month.csv", "thinfilm-2026-11"]
    # and it fits the demo campaign's parameters
    CampaignSpec.model_validate({**thinfilm(), "strategy": data["strategy"]})
