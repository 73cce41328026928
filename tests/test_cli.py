"""One end-to-end test per operator command (validate, run, status, export, demo) and the bad-input contract:
a bad campaign file exits non-zero naming the file, the field and the fix, without a traceback and without
touching the store."""

from __future__ import annotations

import csv
import io
import json

import pytest
from campaign_files import THINFILM, thinfilm, write
from typer.testing import CliRunner

from labloop.cli import app
from labloop.store import Store

runner = CliRunner()
FAST = 2e6  # time scale for tests: a 2-hour simulated trial takes a few milliseconds of device time


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_validate_accepts_the_demo_campaign():
    r = invoke("validate", str(THINFILM))
    assert r.exit_code == 0, r.output
    assert "ok" in r.output and "thinfilm-nb-tio2" in r.output


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"stopping": {"max_trails": 3}}, ["stopping.max_trails: unknown field", "fix:"]),
        (
            {"parameters": [{"name": "o2_pressure", "type": "continuous", "lower": 5, "upper": 1}]},
            ["parameters[0]: lower (5.0) must be below upper (1.0)"],
        ),
        (
            {"objectives": [{"name": "r", "direction": "minimize", "plugin": "no_such_plugin"}]},
            ["objectives[0].plugin: no plugin called 'no_such_plugin'", "fix:"],
        ),
        (
            {"objectives": [{"name": "r", "direction": "minimize", "plugin": "nowhere.module:thing"}]},
            ["objectives[0].plugin: cannot import module 'nowhere.module'"],
        ),
        (
            {"objectives": [{"name": "r", "direction": "lower", "plugin": "sheet_resistance"}]},
            ["objectives[0].direction: Input should be 'maximize', 'minimize' or 'band' (fix: use one of the listed"],
        ),
        ({"stopping": {"max_trials": "forty"}}, ["stopping.max_trials:", "(fix: give a whole number)"]),
    ],
)
def test_bad_campaign_files_are_explained_and_store_nothing(tmp_path, change, expected):
    path = write(tmp_path, thinfilm(**change))
    db = tmp_path / "labloop.db"
    for cmd in (["validate", str(path)], ["run", str(path), "--store", f"sqlite:///{db}"]):
        r = invoke(*cmd)
        assert r.exit_code == 2, r.output
        assert str(path) in r.output
        for text in expected:
            assert text in r.output
        assert "Traceback" not in r.output
    assert not db.exists()


def test_bound_outside_the_device_limit_is_refused_before_anything_moves(tmp_path):
    data = thinfilm()
    data["parameters"][1]["upper"] = 900  # the chamber heater stops at 800 degC
    path = write(tmp_path, data)
    r = invoke("run", str(path), "--store", f"sqlite:///{tmp_path / 'x.db'}")
    assert r.exit_code == 2
    assert "parameters[1]: bounds [25, 900] of 'substrate_temperature' exceed the limits of chamber." in r.output
    assert "fix: keep the bounds within the device limits" in r.output
    assert not (tmp_path / "x.db").exists()


def test_unreadable_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nparameters: [\n")
    r = invoke("validate", str(bad))
    assert r.exit_code == 2 and f"{bad}: not valid YAML" in r.output and "Traceback" not in r.output
    r = invoke("validate", str(tmp_path / "nope.yaml"))
    assert r.exit_code == 2 and "no such file" in r.output


def test_run_status_export_round_trip(tmp_path):
    data = thinfilm(stopping={"max_trials": 4, "target_reached": False})
    data["strategy"]["initial_design"] = 3
    del data["description"]  # a campaign without one: its header is the name alone, no dangling ': '
    path = write(tmp_path, data)
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    r = invoke("run", str(path), "--store", url, "--time-scale", str(FAST))
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "thinfilm-nb-tio2"
    assert "stopped: budget spent: 4 trials (max_trials = 4)" in r.output
    assert r.output.count("sheet_resistance=") == 4

    r = invoke("status", "--store", url)
    assert r.exit_code == 0, r.output
    assert "4 done" in r.output and "best: trial" in r.output and "budget spent" in r.output

    r = invoke("export", "--store", url, "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert list(rows[0]) == [
        "trial",
        "state",
        "o2_pressure",
        "substrate_temperature",
        "nb_fraction",
        "rf_power",
        "duration",
        "sheet_resistance",
        "failure_reason",
        "started",
        "finished",
    ]
    assert [row["trial"] for row in rows] == ["1", "2", "3", "4"]
    assert all(row["state"] == "done" and float(row["sheet_resistance"]) > 0 for row in rows)

    r = invoke("export", "--store", url, "--format", "json")
    as_json = json.loads(r.output)
    store = Store(url)
    trials = store.trials(store.campaign().id)
    store.close()
    assert [t["sheet_resistance"] for t in as_json] == [t.values["sheet_resistance"] for t in trials]
    assert [t["o2_pressure"] for t in as_json] == [t.params["o2_pressure"] for t in trials]
    for t, row in zip(trials, as_json):
        assert float(row["sheet_resistance"]) == pytest.approx(
            float(next(r for r in rows if r["trial"] == str(t.number))["sheet_resistance"])
        )
    out = tmp_path / "trials.json"
    assert invoke("export", "--store", url, "--format", "json", "--output", str(out)).exit_code == 0
    assert json.loads(out.read_text()) == as_json


def test_status_and_export_explain_an_empty_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    for cmd in (["status", "--store", url], ["export", "--store", url, "--format", "csv"]):
        r = invoke(*cmd)
        assert r.exit_code == 2
        assert "no store at" in r.output and "fix: run `labloop run FILE` in this folder first" in r.output
        assert not (tmp_path / "empty.db").exists()  # reading commands create no store
    Store(url).close()
    for cmd in (["status", "--store", url], ["export", "--store", url, "--format", "csv"]):
        r = invoke(*cmd)
        assert r.exit_code == 2
        assert "holds no campaign yet" in r.output and "fix: run `labloop run FILE` first" in r.output


def test_an_objective_plugin_that_raises_fails_only_its_trial(tmp_path):
    data = thinfilm(stopping={"max_trials": 5, "target_reached": False})
    data["strategy"] = {"name": "random", "initial_design": 1}
    data["objectives"][0]["plugin"] = "objective_plugins:refuses_hot_films"
    data["objectives"][0]["options"] = {"limit": 360.0}
    path = write(tmp_path, data)
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    r = invoke("run", str(path), "--store", url, "--time-scale", str(FAST))
    assert r.exit_code == 0, r.output
    store = Store(url)
    trials = store.trials(store.campaign().id)
    store.close()
    assert len(trials) == 5
    hot = [t for t in trials if t.params["substrate_temperature"] > 360.0]
    cold = [t for t in trials if t.params["substrate_temperature"] <= 360.0]
    assert hot and cold, "seed 0 draws both kinds of recipe"
    assert all(t.state == "failed" and "QC rejected: deposited above 360.0 degC" in t.failure_reason for t in hot)
    assert all(t.state == "done" and t.values["sheet_resistance"] > 0 for t in cold)


def test_demo_runs_the_bundled_campaign_to_its_goal(tmp_path):
    r = invoke("demo", "--dir", str(tmp_path / "demo"), "--time-scale", str(FAST))
    assert r.exit_code == 0, r.output
    assert "stopped: target reached at trial" in r.output or "stopped: budget spent" in r.output
    assert (tmp_path / "demo" / "labloop.db").exists()
    store = Store(f"sqlite:///{tmp_path / 'demo' / 'labloop.db'}")
    c = store.campaign()
    trials = store.trials(c.id)
    store.close()
    assert c.state == "finished" and c.stop_reason.startswith("target reached at trial")
    assert min(t.values["sheet_resistance"] for t in trials if t.state == "done") <= 5.0


def test_verify_of_a_store_without_assets_says_there_is_nothing_to_check(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(url).close()
    r = CliRunner().invoke(app, ["verify", "--store", url])
    assert r.exit_code == 0, r.output
    assert "no asset files yet" in r.output and "all 0" not in r.output


def test_a_plugin_module_beside_the_campaign_file_says_how_to_make_it_importable(tmp_path, monkeypatch):
    """docs/integrate/objectives.md: `plugin: mylab.objectives:f` with mylab/ in the campaign's folder."""
    (tmp_path / "mylab_beside").mkdir()
    (tmp_path / "mylab_beside" / "__init__.py").write_text("")
    (tmp_path / "mylab_beside" / "objectives.py").write_text("def f(trial):\n    return 1.0\n")
    data = thinfilm()
    data["objectives"][0]["plugin"] = "mylab_beside.objectives:f"
    path = write(tmp_path, data)
    monkeypatch.chdir(tmp_path)
    r = invoke("validate", str(path))
    assert r.exit_code == 2, r.output
    assert "'mylab_beside' is in this folder" in r.output and "PYTHONPATH=." in r.output
