"""The solid-state campaign (experiments/solid_state.yaml, issue 24 item 7) against the served lab's real protocol
servers: the file validates as shipped; a short run of it (4 trials, random proposals, time scale 20000) pointed
at a lab on free ports does every step through Modbus, OPC UA, serial and VISA; each trial's objective is the
target-phase fraction fitted from its measured pattern and agrees with what the furnace made (the world's truth);
the store holds the steps per station, all four furnaces among them; the two robots hand the crucible over at the
balance. The adapters' translations (recipe -> doses, names -> taught positions) are checked without a lab.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from labloop_devices.solid_state.cell import CellRobot, furnace, masses
from labloop_simulators.solid_state_lab.campaign import ServedLab, point_at
from labloop_simulators.solid_state_lab.world import World
from typer.testing import CliRunner

from labloop.cli import app
from labloop.errors import LabloopError
from labloop.run.campaign import CampaignRunner, prepare_text
from labloop.store import Store

CAMPAIGN = Path(__file__).resolve().parent.parent / "experiments" / "solid_state.yaml"


def test_the_campaign_file_validates_with_its_devices_and_stations() -> None:
    result = CliRunner().invoke(app, ["validate", str(CAMPAIGN)])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(CAMPAIGN.read_text())
    assert data["scheduling"]["mode"] == "async" and len(data["lab"]["stations"]["furnace"]) == 4
    assert data["objectives"][0]["plugin"] == "target_phase_fraction"
    assert data["outcome_constraints"][0]["plugin"] == "impurity_fraction" and data["outcome_constraints"][0]["upper"]
    assert data["stopping"]["max_trials"] <= 24  # one crucible of the rack per trial


def test_the_adapters_translate_recipes_and_places() -> None:
    grams = masses("Li2O", "MnO2", 1.0)  # the 5 mmol LiMn2O4 charge tests/test_solid_state_lab.py doses by hand
    assert grams == pytest.approx({"Li2O": 0.0747, "MnO2": 0.8694}, abs=2e-4)
    assert CellRobot.crucible("solid-state-limn2o4-0007") == "CR0007"
    robot = CellRobot(name="r", address="opc.tcp://127.0.0.1:1/labloop/robot")
    assert robot.taught("x-0012", "load_lock") == robot.taught("x-0012", "storage") == "rack12"
    assert robot.taught("x-0012", "furnace3") == "f3s1" and robot.taught("x-0012", "xrd") == "xrd"
    robot.disconnect()
    # a firing may last 100 h: the furnace's completion timeout is in its own seconds, divided by a served lab's
    # time scale (at 600 a 25 h firing takes 150 s: the old 120 s timeout failed it)
    assert furnace(name="f", address="tcp://127.0.0.1:1").default_timeout == 360000
    assert furnace(name="f", address="tcp://127.0.0.1:1", time_scale=600).default_timeout == 600
    served = {"time_scale": 600.0, "devices": {"furnace1": {"address": "tcp://h:1", "file": "furnace.yaml"}}}
    pointed = point_at({"lab": {"devices": {"furnace1": {"driver": "x"}, "robot1": {"driver": "y"}}}}, served)
    assert pointed["lab"]["devices"]["furnace1"]["config"] == {"address": "tcp://h:1", "time_scale": 600.0}
    assert "config" not in pointed["lab"]["devices"]["robot1"]  # not served here: left as it was


def test_a_short_campaign_runs_against_the_protocol_servers(tmp_path: Path) -> None:
    with ServedLab(tmp_path / "lab", time_scale=20000) as lab:
        assert set(lab.endpoints["faults"].values()) == {0.0}  # served --no-faults: no random fault in this run
        data = point_at(yaml.safe_load(CAMPAIGN.read_text()), lab.endpoints)
        assert (
            data["lab"]["devices"]["furnace2"]["config"]["address"] == lab.endpoints["devices"]["furnace2"]["address"]
        )
        data["strategy"] = {"name": "random", "initial_design": 1}  # no optimizer import: the run, not the model
        data["stopping"] = {"max_trials": 4, "target_reached": False}
        data["lab"].pop("batching")  # one crucible per firing: four furnaces in use (batches: test_solid_state_batch)
        path = tmp_path / "campaign.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
        runner = CampaignRunner.start(prepare_text(path.read_text(), str(path)), store)
        runner.run()
        trials = store.trials(runner.campaign.id)
        steps = store.steps(campaign_id=runner.campaign.id)
        world = World(lab.endpoints["world"]).read()
    assert [t.state for t in trials] == ["done"] * 4, [t.failure_reason for t in trials]
    for t in trials:
        fraction, impurity = t.values["target_phase_fraction"], t.values["impurity_ceiling"]
        assert 0.0 <= fraction <= 1.0 and 0.0 <= impurity <= 1.0 and fraction + impurity <= 1.0 + 1e-9
        crucible = world["crucibles"][CellRobot.crucible(t.sample_id)]
        assert crucible["location"] == f"rack{int(crucible_code(t.sample_id)):02d}"  # back in its slot
        assert set(crucible["powders"]) == {t.params["li_source"], t.params["mn_source"]}
        firing = crucible["firings"][-1]
        assert firing["atmosphere"] == t.params["atmosphere"]
        truth = crucible["product"]["fractions"]["LiMn2O4"]
        assert fraction == pytest.approx(truth, abs=0.06), (t.params, crucible["product"])  # fitted from the pattern
    assert all(s.state == "done" for s in steps)
    by_station: dict[str, int] = {}
    for s in steps:
        by_station[s.device] = by_station.get(s.device, 0) + 1
    assert {by_station[d] for d in ("dispenser", "balance", "xrd")} == {4}
    assert sum(by_station.get(f"furnace{n}", 0) for n in range(1, 5)) == 4
    assert by_station["robot1"] == 2 * 4 and by_station["robot2"] == 3 * 4  # the hand-off at the balance
    furnaces = {s.device for s in steps if s.kind == "synthesize" and s.device.startswith("furnace")}
    assert len(furnaces) >= 2  # async: a second crucible fires while the first is still in a furnace


def crucible_code(sample_id: str) -> str:
    return CellRobot.crucible(sample_id)[2:]


def test_the_demo_serves_the_lab_runs_the_campaign_and_stops_the_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a relative --dir, as the demo's default is: the servers run in its lab folder and must find their ports file
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--lab", "solid_state", "--dir", "demo", "--time-scale", "20000"])
    assert result.exit_code == 0, result.output
    assert "instrument servers stopped" in result.output and "stopped:" in result.output
    here = tmp_path / "demo"
    assert (here / "lab" / "serve.log").exists() and not (here / "lab" / "demo").exists()
    assert not (here / "lab" / "solid_state_lab.json").exists()  # the ports file goes with the servers
    store = Store(f"sqlite:///{here / 'labloop.db'}")
    (campaign,) = store.campaigns()
    trials = store.trials(campaign.id)
    done = [t for t in trials if t.state == "done"]
    assert len(done) >= 6 and all(0 <= t.values["target_phase_fraction"] <= 1 for t in done)
    assert {s.device for s in store.steps(campaign_id=campaign.id) if s.kind == "synthesize"} >= {"dispenser"}


@pytest.mark.parametrize(("flags", "faults"), [([], True), (["--no-faults"], False), (["--faults"], True)])
def test_the_demo_serves_the_lab_with_its_faults_unless_told_not_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], faults: bool
) -> None:
    """A real lab has faults, so the demo's has them by default; ``--no-faults`` serves a clean one. What reaches
    the lab is the command that serves it (``labloop sim serve``, whose ports file then states the rates: see
    tests/test_solid_state_goal.py); the demo is stopped before it starts the servers."""
    import labloop_simulators.solid_state_lab.campaign as served

    commands: list[list[str]] = []

    class Recorded(served.ServedLab):
        def __enter__(self) -> served.ServedLab:
            commands.append(self.command())
            raise LabloopError("the lab was not started (recorded)", "nothing to fix: a test")

    monkeypatch.setattr(served, "ServedLab", Recorded)
    result = CliRunner().invoke(app, ["demo", "--lab", "solid_state", "--dir", str(tmp_path), *flags])
    said = " ".join(result.output.split())  # the console wraps lines
    assert result.exit_code == 2 and "recorded" in said, result.output  # the LabloopError, as an operator sees it
    assert f"faults {'on' if faults else 'off'}" in said
    (cmd,) = commands
    assert cmd[cmd.index("serve") + 1] == "solid_state"
    assert ("--faults" in cmd, "--no-faults" in cmd) == (faults, not faults)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--no-faults", "--fault-rate", "furnace_trip=0.5"], "--fault-rate needs --faults"),
        (["--fault-rate", "furnace=0.5"], "furnace_trip"),  # names the rates there are
        (["--fault-rate", "furnace_trip=2"], "must be a probability"),
    ],
)
def test_sim_serve_refuses_a_bad_fault_rate_before_starting_anything(
    tmp_path: Path, args: list[str], said: str
) -> None:
    ports = tmp_path / "lab.json"
    result = CliRunner().invoke(
        app, ["sim", "serve", "solid_state", "--base-port", "0", "--ports-file", str(ports), *args]
    )
    assert result.exit_code == 2 and said in " ".join(result.output.split()), result.output
    assert not ports.exists()


def test_the_demo_names_the_labs_it_knows() -> None:
    result = CliRunner().invoke(app, ["demo", "--lab", "glassblowing"])
    assert result.exit_code == 2
    assert "glassblowing" in result.output and "solid_state" in result.output


def test_a_crucible_in_the_wrong_rack_slot_is_stopped_at_the_balance_by_its_barcode(tmp_path: Path) -> None:
    """Item 6 on this lab: the reader at the balance (serial) reads the label before the weighing. An operator put
    crucible CR0002 in slot 1, so trial 1's robot fetches CR0002: the read names sample 2, the trial fails there
    with an alert and an audit entry, nothing is weighed, and the crucible stays at the balance for an operator
    (the balance is out of service). Without the campaign's reader the wrong crucible would be weighed and fired
    as trial 1."""
    with ServedLab(tmp_path / "lab", time_scale=20000) as lab:
        data = point_at(yaml.safe_load(CAMPAIGN.read_text()), lab.endpoints)
        assert data["lab"]["identity"]["readers"] == {"balance": "barcode"}
        data["strategy"] = {"name": "random", "initial_design": 1}
        data["stopping"] = {"max_trials": 1, "target_reached": False}
        path = tmp_path / "campaign.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        with World(lab.endpoints["world"]).transaction() as w:  # the two crucibles swapped in the rack
            w["crucibles"]["CR0001"]["location"], w["crucibles"]["CR0002"]["location"] = "rack02", "rack01"
        store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
        runner = CampaignRunner.start(prepare_text(path.read_text(), str(path)), store)
        runner.run()
        (trial,) = store.trials(runner.campaign.id)
        steps = store.steps(campaign_id=runner.campaign.id)
        world = World(lab.endpoints["world"]).read()
    neighbour = trial.sample_id[:-1] + "2"
    assert trial.state == "failed" and "balance" in trial.failure_reason and neighbour in trial.failure_reason
    [mismatch] = [a.detail for a in store.audit_log(runner.campaign.id) if a.action == "sample.mismatch"]
    assert (mismatch["station"], mismatch["expected"], mismatch["read"]) == ("balance", trial.sample_id, neighbour)
    assert not [s for s in steps if s.kind == "measure" and s.state == "done"]  # nothing was weighed
    assert world["crucibles"]["CR0002"]["location"] == "balance" and not world["crucibles"]["CR0002"]["firings"]
    assert world["crucibles"]["CR0001"]["location"] == "rack02" and not world["crucibles"]["CR0001"]["powders"]
    store.close()


def test_a_lab_that_does_not_start_in_time_is_an_operator_error_naming_its_log(tmp_path: Path) -> None:
    with pytest.raises(LabloopError) as err, ServedLab(tmp_path / "lab", start_timeout=0.0):
        pass
    assert "did not start in 0 s" in err.value.problem and str(tmp_path / "lab" / "serve.log") in err.value.fix
