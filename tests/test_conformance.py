"""The conformance kit: it passes the bundled drivers against their simulators, and it fails deliberately broken
drivers with the check that catches them named - through the Python API, the ``labloop devices`` CLI and the
pytest plugin."""

from __future__ import annotations

import asyncio
import json
import re
import time
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import typer
from labloop_devices.base import Instrument, Station, check_limits
from labloop_devices.examples.hotplate import Hotplate
from labloop_devices.tcp import LineTransport, TransportError
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status
from typer.testing import CliRunner

from labloop import plugins
from labloop.cli.devices import register
from labloop.devkit import conformance
from labloop.devkit.pytest_plugin import labloop_conformance  # noqa: F401 - the plugin's fixture, as integrators get it

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
HERE = __name__  # broken drivers below are named to the CLI as f"{HERE}:Class"
FAST = {"grace": 0.3}
SMU = {"timeout": 0.3, "status_timeout": 3}
ARM = {"timeout": 0.3, "move_timeout": 1, "status_timeout": 3, "simulator_options": {"move_time": 0.02}}
HOTPLATE = {"timeout": 0.3, "status_timeout": 3, "poll": 0.01, "simulator_options": {"rate": 5000}}
BUNDLED = [
    ("labloop_devices.scpi_smu:ScpiSmu", SMU),
    ("labloop_devices.robot_arm:RobotArm", ARM),
    ("labloop_devices.examples.hotplate:Hotplate", HOTPLATE),
]


# -- deliberately broken drivers -------------------------------------------------------------------------------------
class WrongReadKeys(Instrument):
    """read() returns a key describe() does not declare."""

    default_timeout = 1.0
    value = Cpt(Signal, value=0.0, kind="hinted")

    def measure(self) -> None:
        self.value.put(1.0)

    def read(self):
        out = super().read()
        out[f"{self.name}_extra"] = {"value": 2.0, "timestamp": time.time()}
        return out


class NeverCompletes(Station):
    """set() returns a Status nobody ever finishes (and that has no timeout)."""

    limits = {"temperature": (0.0, 100.0)}
    default_timeout = 0.3

    def set(self, recipe):
        check_limits(self.limits, recipe, self.name)
        return Status()


class NoLimitsNeverCompletes(Device):
    """A plain bluesky Movable with no limits and no hints whose set() returns a Status nobody finishes."""

    readback = Cpt(Signal, value=1.5, kind="hinted")
    default_timeout = 0.3

    def set(self, value):
        return Status()


class RaisesInSet(Station):
    """set() has a bug and raises instead of returning a Status."""

    limits = {"temperature": (0.0, 100.0)}
    default_timeout = 1.0

    def set(self, recipe):
        return recipe["temperature"] / 0


class IgnoresLimits(Station):
    """Declares limits but never checks them."""

    limits = {"temperature": (0.0, 100.0)}
    default_timeout = 1.0

    def set(self, recipe):
        return self._run_status(lambda: None)


class IgnoresStop(Station):
    """stop() does nothing: the recipe runs to its end."""

    limits = {"temperature": (0.0, 100.0)}
    default_timeout = 2.0

    def run_recipe(self, recipe):
        time.sleep(0.3)


class SloppyHotplate(Hotplate):
    """Takes any reply to a command as a yes."""

    def _command(self, line):
        self.transport.query(line)


class _OneShotTransport(LineTransport):
    def connect(self):
        if self.generation and (self._sock is None or self._peer_closed()):
            raise TransportError(f"{self.name}: connection lost", "restart the driver")
        super().connect()


class NoReconnectHotplate(Hotplate):
    """Never reconnects once its connection is gone."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        t = self.transport
        self.transport = _OneShotTransport(t.host, t.port, timeout=t.timeout, name=self.name)
        self._transports = (self.transport,)


BROKEN = [
    ("WrongReadKeys", {}, "describe_read_agree", "read but not described: ['dut_extra']"),
    ("NeverCompletes", {}, "set_completes", "was not done 0.6 s after the call (declared timeout 0.3 s)"),
    (
        "NoLimitsNeverCompletes",
        {},
        "set_completes",
        "the Status of set(1.5) (its own current reading: it declares no limits and no conformance_hints()['setpoint'])"
        " was not done 0.6 s after the call (declared timeout 0.3 s)",
    ),
    ("RaisesInSet", {}, "set_completes", "raised ZeroDivisionError"),
    ("IgnoresLimits", {}, "limits_refused", "lies outside the declared limits but succeeded"),
    ("IgnoresStop", {}, "stop_mid_action", "stop() did not stop"),
    ("SloppyHotplate", HOTPLATE, "errors_fail_status", "answered garbage"),
    ("NoReconnectHotplate", HOTPLATE, "reconnect", "reconnect before the next request"),
]


# -- an ophyd-async style device: async read/describe/stop, set() returns a Status wrapping an asyncio task ----------
class TaskStatus:
    """The shape of ophyd_async.core.AsyncStatus."""

    def __init__(self, coro):
        self.task = asyncio.ensure_future(coro)  # needs the running loop, as ophyd-async does

    def add_callback(self, callback):
        self.task.add_done_callback(lambda _: callback(self))

    @property
    def done(self):
        return self.task.done()

    @property
    def success(self):
        return self.task.done() and not self.task.cancelled() and self.task.exception() is None

    def exception(self, timeout=0.0):
        return self.task.exception() if self.task.done() else None


class AsyncMotor:
    def __init__(self, name="amotor"):
        self.name, self.parent, self.position = name, None, 0.0
        self._halt: asyncio.Event | None = None

    async def read(self):
        return {self.name: {"value": self.position, "timestamp": time.time()}}

    async def describe(self):
        return {self.name: {"source": "sim://amotor", "dtype": "number", "shape": []}}

    def set(self, value):
        async def move():
            if not -10 <= value <= 10:
                raise ValueError(f"{value} is outside [-10, 10]")
            self._halt = asyncio.Event()
            try:
                await asyncio.wait_for(self._halt.wait(), 0.2)
            except TimeoutError:
                self.position = value
                return
            raise RuntimeError("stopped")

        return TaskStatus(move())

    async def stop(self, success=True):
        if self._halt is not None:
            self._halt.set()

    def conformance_hints(self):
        return {"setpoint": 1.0, "out_of_limits": [11.0, -11.0]}


# -- API -------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target,config", BUNDLED, ids=lambda x: x if isinstance(x, str) else "")
def test_bundled_drivers_pass_every_check_against_their_simulators(target, config):
    report = conformance.check_device(target, dict(config), **FAST)
    report.assert_ok()
    outcomes = {r.name: r.outcome for r in report.results}
    assert list(outcomes) == ["construct", *conformance.check_names()]
    assert all(o == "pass" for o in outcomes.values()), report.summary()  # nothing skipped: all faults exercised


@pytest.mark.parametrize("cls,config,check,words", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_drivers_fail_the_check_that_catches_them(cls, config, check, words):
    report = conformance.check_device(f"{HERE}:{cls}", dict(config), **FAST)
    assert check in [r.name for r in report.failures], report.summary()
    with pytest.raises(AssertionError, match=check):
        report.assert_ok()
    alone = conformance.check_device(f"{HERE}:{cls}", dict(config), only=[check], **FAST)[check]
    assert alone.outcome == "fail" and words in alone.message and "fix" in alone.message


def test_an_ophyd_async_style_device_is_checked_in_the_bluesky_event_loop():
    report = conformance.run_conformance(AsyncMotor(), grace=0.5)
    outcomes = {r.name: r.outcome for r in report.results}
    assert report.ok, report.summary()
    for name in ("protocols", "describe_read_agree", "set_completes", "limits_refused", "stop_mid_action"):
        assert outcomes[name] == "pass", report.summary()
    assert "no default_timeout declared" in report["protocols"].message
    assert outcomes["reconnect"] == outcomes["errors_fail_status"] == "skip"


class NoLimitsMotor(Device):
    """A well-behaved Movable that declares no limits and no hints: set() moves the readback and finishes."""

    readback = Cpt(Signal, value=1.5, kind="hinted")
    setpoint = Cpt(Signal, value=1.5, kind="normal")
    default_timeout = 1.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sets = []

    def set(self, value):
        self.sets.append(value)
        self.setpoint.put(float(value))
        self.readback.put(float(value))
        status = Status(obj=self, timeout=self.default_timeout)
        status.set_finished()
        return status


class NoLimitsStation(Station):
    """A station that declares no limits: it is set to its own hinted reading, as a recipe."""

    temperature = Cpt(Signal, value=21.5, kind="hinted")
    default_timeout = 1.0
    limits = {}

    def set(self, recipe):
        self.recipes = getattr(self, "recipes", []) + [dict(recipe)]
        return self._run_status(lambda: self.temperature.put(float(recipe["temperature"])))


def test_a_device_without_limits_or_hints_is_set_to_its_own_reading():
    motor = NoLimitsMotor(name="motor")
    report = conformance.run_conformance(motor, **FAST)
    assert report.ok, report.summary()
    assert report["set_completes"].outcome == "pass"
    assert "set(1.5) (its own current reading" in report["set_completes"].message
    assert motor.sets and all(v == 1.5 for v in motor.sets)
    assert report["limits_refused"].outcome == "skip"  # nothing declared: nothing to refuse

    station = NoLimitsStation(name="oven")
    report = conformance.run_conformance(station, only=["set_completes"], **FAST)
    assert report.ok, report.summary()
    assert station.recipes == [{"temperature": 21.5}]


def test_a_movable_without_limits_hints_or_a_current_value_fails_set_completes():
    class Opaque(NoLimitsMotor):
        def read(self):
            return {}

        def describe(self):
            return {}

    report = conformance.run_conformance(Opaque(name="opaque"), only=["set_completes"], **FAST)
    msg = report["set_completes"].message
    assert report["set_completes"].outcome == "fail" and "set() cannot be exercised" in msg and "fix" in msg


def test_a_device_call_that_blocks_fails_its_check_instead_of_hanging_the_kit(monkeypatch):
    class Blocks(IgnoresStop):
        def describe(self):
            time.sleep(5)

    monkeypatch.setattr(conformance, "_run_one", _bounded(conformance._run_one, 0.5))
    report = conformance.run_conformance(Blocks(name="blocks"), only=["describe_read_agree"], grace=0.1)
    assert report.failures[0].name == "describe_read_agree"
    assert "a device call blocks" in report.failures[0].message


def _bounded(run_one, bound):
    return lambda chk, subject, _bound: run_one(chk, subject, bound)


def test_unknown_check_names_are_refused_with_the_known_ones():
    with pytest.raises(conformance.LabloopError, match="unknown conformance check"):
        conformance.check_device("labloop_devices.scpi_smu:ScpiSmu", only=["no_such_check"])


def test_a_driver_that_cannot_be_built_fails_construct_readably():
    report = conformance.check_device("labloop_devices.scpi_smu:ScpiSmu", {"no_such_option": 1})
    assert [r.name for r in report.failures] == ["construct"]
    assert "unexpected keyword argument 'no_such_option'" in report.failures[0].message


def test_the_fixture_checks_a_device_built_by_hand(labloop_conformance):  # noqa: F811 - pytest injects the fixture imported above
    from labloop_devices.scpi_smu import ScpiSmu
    from labloop_simulators.endpoints.scpi_smu_server import ScpiSmuServer

    with ScpiSmuServer() as sim:
        smu = ScpiSmu(name="smu", host=sim.host, port=sim.port, timeout=0.3, status_timeout=2)
        report = labloop_conformance(smu, only=["describe_read_agree", "trigger_completes", "reconnect"])
        smu.disconnect()
    report.assert_ok()
    assert report["reconnect"].message.startswith("the connections were cut")  # no endpoint given: cut the driver's


# -- CLI -------------------------------------------------------------------------------------------------------------
def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """labloop (test harness for the devices sub-app)."""

    register(app)
    return app


def test_cli_check_passes_the_bundled_drivers(tmp_path):
    (tmp_path / "smu.yaml").write_text("timeout: 0.3\nstatus_timeout: 3\n")
    (tmp_path / "arm.json").write_text(json.dumps(ARM))
    runner = CliRunner()
    for target, cfg in [
        ("labloop_devices.scpi_smu:ScpiSmu", "smu.yaml"),
        ("labloop_devices.robot_arm:RobotArm", "arm.json"),
    ]:
        result = runner.invoke(_cli(), ["devices", "check", target, "--config", str(tmp_path / cfg), "--grace", "0.3"])
        assert result.exit_code == 0, result.output
        for name in conformance.check_names():
            assert re.search(rf"{name}\s+│ pass", result.output), (name, result.output)
        assert "all checks passed" in result.output


CLI_BROKEN = [b for b in BROKEN if b[0] in ("WrongReadKeys", "RaisesInSet", "IgnoresLimits")]


@pytest.mark.parametrize("cls,config,check,words", CLI_BROKEN, ids=[b[0] for b in CLI_BROKEN])
def test_cli_check_fails_broken_drivers_naming_the_check(tmp_path, cls, config, check, words):
    result = CliRunner().invoke(_cli(), ["devices", "check", f"{HERE}:{cls}", "--grace", "0.3"])
    assert result.exit_code == 1, result.output
    assert re.search(rf"{check}\s+│ FAIL", result.output), result.output
    failed_line = next(line for line in result.output.splitlines() if "check(s) failed" in line)
    assert check in failed_line


def test_cli_check_bad_config_is_an_error_message_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    result = CliRunner().invoke(_cli(), ["devices", "check", "labloop_devices.scpi_smu:ScpiSmu", "-c", str(bad)])
    assert result.exit_code == 2
    assert "expected a mapping of constructor options, got list" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(_cli(), ["devices", "check", "no_such_pkg.mod:Driver"])
    assert result.exit_code == 2 and "cannot import module 'no_such_pkg.mod'" in result.output


def test_cli_list_shows_installed_drivers_with_their_simulators(monkeypatch):
    eps = [
        EntryPoint("scpi_smu", "labloop_devices.scpi_smu:ScpiSmu", "labloop.devices"),
        EntryPoint("robot_arm", "labloop_devices.robot_arm:RobotArm", "labloop.devices"),
        EntryPoint("broken", "no_such_pkg:Driver", "labloop.devices"),
        EntryPoint("thinfilm", "labloop_simulators.thinfilm.lab:build_lab", "labloop.simulators"),
    ]
    monkeypatch.setattr(plugins, "entry_points", lambda group: [e for e in eps if e.group == group])
    result = CliRunner().invoke(_cli(), ["devices", "list"])
    assert result.exit_code == 0, result.output
    assert re.search(r"scpi_smu .*instrument .*scpi_smu_server:ScpiSmuServer", result.output)
    assert re.search(r"robot_arm .*robot .*robot_arm_server:RobotArmServer", result.output)
    assert re.search(r"broken .*failed to load", result.output)
    assert "broken: cannot import module 'no_such_pkg'" in result.output
    assert "thinfilm" in result.output
    # the hint names both ways to check a device, the YAML one included (declarative instruments are not listed)
    hint = " ".join(result.output.split())
    assert "labloop devices check NAME_OR_MODULE:CLASS [--config FILE]" in hint
    assert "labloop devices check FILE.yaml --simulated" in hint


# -- pytest plugin ---------------------------------------------------------------------------------------------------
def test_pytest_plugin_runs_one_test_per_check_in_an_integrators_suite(pytester, request):
    pytester.makepyfile(
        f"""
        from labloop.devkit.pytest_plugin import conformance_test
        from {HERE} import IgnoresLimits

        test_smu = conformance_test("labloop_devices.scpi_smu:ScpiSmu", {SMU!r}, grace=0.3,
                                    checks=["describe_read_agree", "trigger_completes", "reconnect"])
        test_broken = conformance_test(IgnoresLimits, checks=["describe_read_agree", "limits_refused"], grace=0.3)

        def test_fixture(labloop_conformance):
            labloop_conformance("labloop_devices.scpi_smu:ScpiSmu", {SMU!r}, only=["health"]).assert_ok()
        """
    )
    import labloop.devkit.pytest_plugin

    registered = request.config.pluginmanager.is_registered(labloop.devkit.pytest_plugin)
    result = pytester.runpytest_inprocess(*([] if registered else ["-p", "labloop.devkit.pytest_plugin"]), "-q")
    result.assert_outcomes(passed=3 + 1 + 1, failed=1)
    result.stdout.fnmatch_lines(["*test_broken*limits_refused*"])


# -- the guide -------------------------------------------------------------------------------------------------------
def test_the_driver_guide_shows_the_code_that_is_tested():
    guide = (ROOT / "docs" / "drivers.md").read_text()
    blocks = re.findall(r"<!-- file: (\S+) -->\n```python\n(.*?)```", guide, flags=re.S)
    assert {path for path, _ in blocks} >= {"devices/examples/hotplate.py", "simulators/endpoints/hotplate_server.py"}
    for path, code in blocks:
        assert code == (ROOT / path).read_text(), f"docs/drivers.md shows an outdated {path}"
    assert "labloop devices check labloop_devices.examples.hotplate:Hotplate" in guide


def test_the_guides_example_runs():
    from labloop_devices.tcp import ReplyError
    from labloop_simulators.endpoints.hotplate_server import HotplateServer

    with HotplateServer(rate=1000) as sim:
        plate = Hotplate(name="plate", host=sim.host, port=sim.port)
        plate.sample.put("S-1")
        plate.set({"temperature": 120, "hold_s": 0.1}).wait(10)
        assert plate.read()["plate_temperature"]["value"] == 120.0
        sim.inject("garbage", on="SETP")
        status = plate.set({"temperature": 80})
        with pytest.raises(ReplyError, match=r"malformed reply to 'SETP 80'.*got raw reply '\\x15#þ\?garbled reply"):
            status.wait(10)
        plate.disconnect()
