"""A campaign whose instruments are described in YAML (issue 22): ``lab.devices.NAME: {file: PATH.yaml}``, run
against their simulators (real protocol servers in their own processes); and a described instrument served by a
real ``labloop agent`` process, where a killed simulator fails the step with the transport's reason and the next
step works once it is back."""

from __future__ import annotations

import shutil

import yaml
from typer.testing import CliRunner

from labloop.cli import app
from labloop.control.agent_process import AgentProcess
from labloop.devkit.instruments import check_file
from labloop.run.campaign import CampaignRunner, prepare_text
from labloop.store import Store
from labloop.transports.base import TransportError
from labloop_simulators.endpoints.robot_arm_server import RobotArmServer
from instrument_helpers import example, simulated, wait_status

POSITIONS = ["load_lock", "furnace", "balance", "storage"]


def _campaign(tmp_path, arm, furnace_addr, balance_addr) -> dict:
    return {
        "name": f"declared-{tmp_path.name}",
        "parameters": [{"name": "temperature", "type": "continuous", "lower": 40, "upper": 120}],
        "objectives": [{"name": "mass", "plugin": "reading", "options": {"field": "balance_weight"},
                        "direction": "maximize", "unit": "g"}],
        "stopping": {"max_trials": 2, "target_reached": False},
        "strategy": {"name": "random", "initial_design": 1},
        "lab": {"devices": {
            "robot": {"driver": "robot_arm", "config": {**arm.connection_kwargs(), "positions": POSITIONS,
                                                        "timeout": 1, "move_timeout": 5}},
            # relative to the campaign file's folder
            "furnace": {"file": "furnace_modbus.yaml", "config": {"address": furnace_addr}},
            "balance": {"file": "balance_mtsics.yaml", "config": {"address": balance_addr}},
        }},
        "workflow": [
            {"kind": "transfer", "to": "furnace"},
            {"kind": "synthesize", "device": "furnace"},
            {"kind": "transfer", "to": "balance"},
            {"kind": "measure", "device": "balance"},
            {"kind": "transfer", "to": "storage"},
        ],
    }


def test_a_campaign_naming_described_instruments_validates_and_runs_against_their_simulators(tmp_path):
    for f in ("furnace_modbus.yaml", "balance_mtsics.yaml"):
        shutil.copy(example(f), tmp_path / f)
    with RobotArmServer(positions=POSITIONS, move_time=0.01) as arm, simulated("furnace_modbus.yaml") as furnace, \
            simulated("balance_mtsics.yaml", load=2.5) as balance:
        campaign = tmp_path / "campaign.yaml"
        campaign.write_text(yaml.safe_dump(_campaign(tmp_path, arm, furnace.address, balance.address)))
        result = CliRunner().invoke(app, ["validate", str(campaign)])
        assert result.exit_code == 0, result.output
        store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
        runner = CampaignRunner.start(prepare_text(campaign.read_text(), str(campaign)), store)
        runner.run()
        trials = store.trials(runner.campaign.id)
        assert [t.state for t in trials] == ["done", "done"], [t.failure_reason for t in trials]
        assert all(abs(t.values["mass"] - 2.5) < 0.01 for t in trials)  # what the simulated pan holds
        last = trials[-1].params["temperature"]
        assert abs(furnace.state()["sp"] - last) < 1e-3  # the furnace controller got the recipe over Modbus
        assert "S" in balance.state()["requests"]  # the balance was asked for a stable weight (MT-SICS S)


def test_a_bad_instrument_file_in_a_campaign_fails_validation_naming_the_field(tmp_path):
    data = yaml.safe_load(example("furnace_modbus.yaml").read_text())
    data["signals"]["setpoint"]["point"]["tabel"] = "holding"
    (tmp_path / "furnace_modbus.yaml").write_text(yaml.safe_dump(data))
    shutil.copy(example("balance_mtsics.yaml"), tmp_path / "balance_mtsics.yaml")
    with RobotArmServer(positions=POSITIONS) as arm:
        campaign = tmp_path / "campaign.yaml"
        campaign.write_text(yaml.safe_dump(_campaign(tmp_path, arm, "tcp://127.0.0.1:1", "socket://127.0.0.1:1")))
        result = CliRunner().invoke(app, ["validate", str(campaign)])
    assert result.exit_code == 2
    assert "signals.setpoint.point" in result.output and "tabel" in result.output
    assert "Traceback" not in result.output


def test_the_agent_serves_a_described_instrument_and_a_killed_simulator_fails_then_heals(tmp_path):
    with simulated("furnace_modbus.yaml") as sim:
        cfg = {"file": str(example("furnace_modbus.yaml")), "address": sim.address}
        with AgentProcess("labloop.declarative:device", cfg, name="furnace", folder=tmp_path) as agent:
            proxy = agent.connect()
            try:
                proxy.sample.put("s1")
                assert wait_status(proxy.set({"temperature": 60})) is None
                status = proxy.set({"temperature": 900, "ramp_rate": 60})
                sim.kill()
                exc = wait_status(status)
                assert exc is not None and "modbus" in str(exc) and sim.address in str(exc)
                sim.start()
                assert wait_status(proxy.set({"temperature": 50, "ramp_rate": 0})) is None
                sim.inject("exception", code=6)
                exc = wait_status(proxy.set({"temperature": 55}))
                assert exc is not None and "exception code 6" in str(exc)
                assert wait_status(proxy.set({"temperature": 55})) is None
            finally:
                proxy.disconnect()


def test_the_kit_passes_a_described_instrument_through_labloop_agent():
    report = check_file(example("balance_mtsics.yaml"), simulated=True, remote=True)
    report.assert_ok()
    assert report["errors_fail_status"].passed and report["reconnect"].passed


def test_the_guide_shows_the_instrument_files_that_are_tested():
    import re

    root = example("x").parent.parent.parent
    guide = (root / "docs" / "drivers.md").read_text()
    blocks = re.findall(r"<!-- file: (\S+) -->\n```(?:yaml|python)\n(.*?)```", guide, flags=re.S)
    assert {"devices/examples/furnace_modbus.yaml", "devices/examples/smu_film.py"} <= {p for p, _ in blocks}
    for path, text in blocks:
        assert text == (root / path).read_text(), f"docs/drivers.md shows an outdated {path}"
    assert "labloop devices check devices/examples/furnace_modbus.yaml --simulated" in guide
