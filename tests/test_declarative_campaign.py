"""A campaign whose instruments are described in YAML (issue 22): ``lab.devices.NAME: {file: PATH.yaml}``, run
against their simulators (real protocol servers in their own processes); and a described instrument served by a
real ``labloop agent`` process, where a killed simulator fails the step with the transport's reason and the next
step works once it is back."""

from __future__ import annotations

import shutil
from contextlib import ExitStack

import pytest
import yaml
from instrument_helpers import example, simulated, wait_status
from labloop_simulators.endpoints.robot_arm_server import RobotArmServer
from typer.testing import CliRunner

from labloop.cli import app
from labloop.control.agent_process import AgentProcess
from labloop.devkit.instruments import check_file
from labloop.errors import SpecError
from labloop.run.campaign import CampaignRunner, prepare_text
from labloop.store import Store

POSITIONS = ["load_lock", "furnace", "reactor", "tc", "smu", "balance", "reader", "storage"]
#: one described instrument per transport: device -> (example file, simulator options for the test)
INSTRUMENTS = {
    "furnace": ("furnace_modbus.yaml", {}),
    "reactor": ("reactor_opcua.yaml", {}),
    "tc": ("temperature_epics.yaml", {}),
    "smu": ("smu_visa.yaml", {"sheet_resistance": 210.0}),
    "balance": ("balance_mtsics.yaml", {"load": 2.5}),
    "reader": ("platereader_sila.yaml", {}),
}


def _campaign(tmp_path, arm, addresses: dict[str, str]) -> dict:
    return {
        "name": f"declared-{tmp_path.name}",
        "parameters": [
            {"name": "anneal_t", "type": "continuous", "lower": 40, "upper": 120, "setpoint": "furnace.temperature"},
            {"name": "reactor_t", "type": "continuous", "lower": 30, "upper": 50, "setpoint": "reactor.temperature"},
            {"name": "dry_t", "type": "continuous", "lower": 30, "upper": 50, "setpoint": "tc.temperature"},
        ],
        "objectives": [
            {
                "name": "sheet_resistance",
                "plugin": "reading",
                "options": {"field": "smu_sheet_resistance"},
                "direction": "minimize",
                "unit": "ohm/sq",
            }
        ],
        "stopping": {"max_trials": 2, "target_reached": False},
        "strategy": {"name": "random", "initial_design": 1},
        "lab": {
            "devices": {
                "robot": {
                    "driver": "robot_arm",
                    "config": {**arm.connection_kwargs(), "positions": POSITIONS, "timeout": 1, "move_timeout": 5},
                },
                # relative paths: from the campaign file's folder
                **{
                    name: {"file": file, "config": {"address": addresses[name]}}
                    for name, (file, _) in INSTRUMENTS.items()
                },
            }
        },
        "workflow": [
            {"kind": "transfer", "to": "furnace"},
            {"kind": "synthesize", "device": "furnace"},
            {"kind": "transfer", "to": "reactor"},
            {"kind": "synthesize", "device": "reactor"},
            {"kind": "transfer", "to": "tc"},
            {"kind": "synthesize", "device": "tc"},
            {"kind": "transfer", "to": "smu"},
            {"kind": "measure", "device": "smu"},
            {"kind": "transfer", "to": "balance"},
            {"kind": "measure", "device": "balance"},
            {"kind": "transfer", "to": "reader"},
            {"kind": "measure", "device": "reader"},
            {"kind": "transfer", "to": "storage"},
        ],
    }


def _copy_examples(tmp_path) -> None:
    for file, _ in INSTRUMENTS.values():
        shutil.copy(example(file), tmp_path / file)


def test_a_campaign_naming_one_described_instrument_per_transport_runs_against_their_simulators(tmp_path):
    _copy_examples(tmp_path)
    with ExitStack() as stack:
        arm = stack.enter_context(RobotArmServer(positions=POSITIONS, move_time=0.01))
        sims = {name: stack.enter_context(simulated(file, **opts)) for name, (file, opts) in INSTRUMENTS.items()}
        campaign = tmp_path / "campaign.yaml"
        campaign.write_text(yaml.safe_dump(_campaign(tmp_path, arm, {n: s.address for n, s in sims.items()})))
        result = CliRunner().invoke(app, ["validate", str(campaign)])
        assert result.exit_code == 0, result.output
        store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
        runner = CampaignRunner.start(prepare_text(campaign.read_text(), str(campaign)), store)
        runner.run()
        trials = store.trials(runner.campaign.id)
        assert [t.state for t in trials] == ["done", "done"], [t.failure_reason for t in trials]
        assert all(abs(t.values["sheet_resistance"] - 210.0) < 5 for t in trials)  # the simulated film
        steps = store.steps(campaign_id=runner.campaign.id)
        by_id = {t.id: t for t in trials}

        def last_on(device: str) -> dict:  # the recipe the device holds: the trial whose step there started last
            step = max((s for s in steps if s.device == device and s.kind == "synthesize"), key=lambda s: s.started_at)
            return by_id[step.trial_id].params

        last = {
            **last_on("furnace"),
            **{k: v for k, v in last_on("tc").items() if k == "dry_t"},
            **{k: v for k, v in last_on("reactor").items() if k == "reactor_t"},
        }
        assert abs(sims["furnace"].state()["sp"] - last["anneal_t"]) < 1e-3  # over Modbus
        assert abs(sims["tc"].state()["sp"] - last["dry_t"]) < 1e-3  # over Channel Access
        assert abs(sims["reactor"].state()["temperature"] - last["reactor_t"]) < 2  # over OPC UA
        assert "S" in sims["balance"].state()["requests"]  # MT-SICS over serial
        assert sims["reader"].state()["reads"] == 2  # one plate read per trial, an observable command over SiLA 2
        assert {s.device for s in steps if s.kind == "measure"} == {"smu", "balance", "reader"}
        assert all(s.state == "done" for s in steps)


def test_a_bad_instrument_file_in_a_campaign_fails_validation_naming_the_field(tmp_path):
    data = yaml.safe_load(example("furnace_modbus.yaml").read_text())
    data["signals"]["setpoint"]["point"]["tabel"] = "holding"
    _copy_examples(tmp_path)
    (tmp_path / "furnace_modbus.yaml").write_text(yaml.safe_dump(data))
    with RobotArmServer(positions=POSITIONS) as arm:
        campaign = tmp_path / "campaign.yaml"
        addresses = {
            "furnace": "tcp://127.0.0.1:1",
            "reactor": "opc.tcp://127.0.0.1:1",
            "tc": "ca://127.0.0.1:1",
            "smu": "TCPIP0::127.0.0.1::1::SOCKET",
            "balance": "socket://127.0.0.1:1",
            "reader": "sila://127.0.0.1:1",
        }
        campaign.write_text(yaml.safe_dump(_campaign(tmp_path, arm, addresses)))
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


@pytest.mark.parametrize(
    "file", ["mfc_modbus.yaml", "smu_visa.yaml", "balance_mtsics.yaml", "reactor_opcua.yaml", "temperature_epics.yaml"]
)
def test_the_kit_passes_each_transport_through_labloop_agent_faults_included(file):
    """Garbage, late replies, hang-ups mid-request and dropped connections, injected on the wire between the agent
    and the simulator, fail the step through the proxy with the raw reply, and the next step works."""
    report = check_file(example(file), simulated=True, remote=True)
    report.assert_ok()
    assert report["reconnect"].passed
    if file != "temperature_epics.yaml":  # CA: no proxy on its wire (see test_transport_epics)
        assert report["errors_fail_status"].passed and report["slow_reply_times_out"].passed


def test_the_guide_shows_the_instrument_files_that_are_tested():
    import re

    root = example("x").parent.parent.parent
    guide = (root / "docs" / "drivers.md").read_text()
    blocks = re.findall(r"<!-- file: (\S+) -->\n```(?:yaml|python)\n(.*?)```", guide, flags=re.S)
    assert {"devices/examples/furnace_modbus.yaml", "devices/examples/smu_film.py"} <= {p for p, _ in blocks}
    for path, text in blocks:
        assert text == (root / path).read_text(), f"docs/drivers.md shows an outdated {path}"
    assert "labloop devices check devices/examples/furnace_modbus.yaml --simulated" in guide


def test_instrument_file_errors_read_as_sentences(tmp_path):
    """`labloop devices check FILE.yaml` shows these: no pydantic prefix, and a path hint true outside campaigns."""
    from labloop.declarative.schema import load_spec

    data = yaml.safe_load(example("furnace_modbus.yaml").read_text())
    del data["setpoints"]
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as err:
        load_spec(tmp_path / "f.yaml")
    assert "a station needs setpoints" in err.value.problem and "Value error" not in err.value.problem
    with pytest.raises(SpecError) as err:
        load_spec(tmp_path / "missing.yaml")
    assert "does not exist" in err.value.problem and "in a campaign file" in err.value.fix
