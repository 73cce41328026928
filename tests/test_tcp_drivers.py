"""The TCP transport and the two TCP drivers (SCPI source-measure unit, collaborative arm) against their simulated
endpoints on loopback: real sockets, injected faults, and a real bluesky RunEngine running a step."""

from __future__ import annotations

import math
import socket
import time

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.utils import FailedStatus
from labloop_devices.base import Move
from labloop_devices.robot_arm import RobotArm
from labloop_devices.scpi_smu import FOUR_POINT_FACTOR, ScpiSmu
from labloop_devices.tcp import LineTransport, ReplyError, TransportError
from labloop_simulators.endpoints.base import LineServer
from labloop_simulators.endpoints.robot_arm_server import RobotArmServer
from labloop_simulators.endpoints.scpi_smu_server import ScpiSmuServer

from labloop.errors import LimitError
from labloop.run import plans

FAST = 0.4  # reply timeout of the drivers under test (loopback answers in well under a millisecond)


def wait_failed(status, timeout=3.0) -> BaseException:
    """Wait for a Status that must fail; return its exception."""
    with pytest.raises(Exception) as info:
        status.wait(timeout)
    assert status.done and not status.success
    return info.value if status.exception() is None else status.exception()


class Echo(LineServer):
    """A tiny endpoint for transport tests: replies 'echo <line>'."""

    def handle(self, line: str) -> str | None:
        return None if line.startswith("nop") else f"echo {line}"


# -- transport -------------------------------------------------------------------------------------------------------
def test_transport_connects_lazily_and_answers():
    with Echo() as sim:
        t = LineTransport(sim.host, sim.port, timeout=FAST)
        time.sleep(0.05)
        assert sim.connections_accepted == 0 and not t.connected  # constructing never touches the network
        assert t.query("hello") == "echo hello"
        t.write("nop")
        assert t.query("again") == "echo again"
        assert sim.connections_accepted == 1 and t.generation == 1
        t.close()


def test_transport_reconnects_after_the_endpoint_dropped_an_idle_connection():
    with Echo() as sim:
        t = LineTransport(sim.host, sim.port, timeout=FAST)
        assert t.query("one") == "echo one"
        sim.drop_clients()
        time.sleep(0.05)
        assert t.query("two") == "echo two"
        assert t.generation == 2 and sim.connections_accepted == 2
        t.close()


def test_transport_timeout_drops_the_connection_so_a_late_reply_is_never_misread():
    with Echo() as sim:
        t = LineTransport(sim.host, sim.port, timeout=0.2)
        sim.inject("slow", delay=0.35, on="first")
        with pytest.raises(TransportError, match=r"no reply to 'first' .* within 0.2 s"):
            t.query("first")
        assert not t.connected
        time.sleep(0.25)  # the late 'echo first' is sent now, to the closed connection
        assert t.query("second") == "echo second"
        t.close()


def test_transport_request_in_flight_when_the_endpoint_hangs_up_fails_and_the_next_reconnects():
    with Echo() as sim:
        t = LineTransport(sim.host, sim.port, timeout=FAST)
        sim.inject("disconnect", on="doomed")
        with pytest.raises(TransportError, match="closed the connection while the reply to 'doomed'"):
            t.query("doomed")
        assert t.query("fine") == "echo fine"
        assert sim.requests.count("doomed") == 1  # never re-sent blindly
        t.close()


def test_transport_unreachable_endpoint_names_the_address_and_the_fix():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        t = LineTransport("127.0.0.1", port, timeout=FAST, name="probe")
        with pytest.raises(TransportError) as info:
            t.query("x")
    assert f"probe: cannot connect to 127.0.0.1:{port}" in info.value.problem
    assert "host/port" in info.value.fix


def test_transport_flood_without_terminator_is_a_reply_error_not_a_memory_leak():
    with Echo() as sim:
        t = LineTransport(sim.host, sim.port, timeout=FAST, max_line=64)
        sim.inject("garbage", text="x" * 5000)  # latin-1 text, sent with one newline at the very end
        with pytest.raises(ReplyError, match="shorter than 64 bytes"):
            t.query("flood")
        t.close()


# -- SCPI source-measure unit ----------------------------------------------------------------------------------------
@pytest.fixture
def smu_sim():
    with ScpiSmuServer(sheet_resistance=250.0, read_time=0.01) as sim:
        yield sim


@pytest.fixture
def smu(smu_sim):
    dev = ScpiSmu(
        name="smu", host=smu_sim.host, port=smu_sim.port, timeout=FAST, status_timeout=3.0, source_current=1e-3
    )
    dev.sample.put("S-1")
    yield dev
    dev.disconnect()


def test_smu_measures_sheet_resistance_four_wire_with_the_real_command_set(smu, smu_sim):
    smu.trigger().wait(3)
    reading = smu.read()
    assert reading["smu_sheet_resistance"]["value"] == pytest.approx(250.0, rel=1e-5)
    assert reading["smu_current"]["value"] == pytest.approx(1e-3)
    assert reading["smu_voltage"]["value"] == pytest.approx(1e-3 * 250.0 / FOUR_POINT_FACTOR, rel=1e-5)
    assert smu_sim.requests == [
        "*IDN?",
        "*RST",
        "*CLS",
        ":SYST:RSEN ON",
        ":SOUR:FUNC CURR",
        ':SENS:FUNC "VOLT"',
        ":SENS:VOLT:PROT 2",
        ":SOUR:CURR 0.001",
        ":SYST:ERR?",
        ":OUTP ON",
        ":READ?",
        ":OUTP OFF",
        ":SYST:ERR?",
    ]
    assert not smu_sim.output and smu_sim.four_wire  # output only on while reading; 4-wire sensing
    assert set(smu.describe()) == set(reading)


def test_smu_without_four_wire_would_read_the_contacts_too(smu_sim):
    """The simulated physics is honest: 2-wire adds the contact resistance, so 4-wire sensing is what we test."""
    smu_sim.four_wire, smu_sim.output, smu_sim.source_func, smu_sim.sense_func = False, True, "CURR", "VOLT"
    smu_sim.source_current = 1e-3
    v = float(smu_sim.handle(":READ?").split(",")[0])
    assert FOUR_POINT_FACTOR * v / 1e-3 > 250.0 * 1.5


def test_smu_refuses_setpoints_outside_its_limits_before_sending_anything(smu, smu_sim):
    with pytest.raises(LimitError, match=r"source_current=0.5 is outside the device limits \[-0.01, 0.01\]"):
        smu.set({"source_current": 0.5})
    with pytest.raises(LimitError):
        smu.set({"voltage_compliance": 500})
    assert smu_sim.requests == []
    smu.set({"source_current": 2e-3}).wait(3)
    assert smu_sim.source_current == pytest.approx(2e-3)


def test_smu_garbage_reply_fails_the_status_with_the_raw_reply(smu, smu_sim):
    smu_sim.inject("garbage", on=":READ?", text="+1.0E-3,GARBAGE")
    exc = wait_failed(smu.trigger())
    assert isinstance(exc, ReplyError)
    assert exc.raw == "+1.0E-3,GARBAGE" and "'+1.0E-3,GARBAGE'" in str(exc)
    assert math.isnan(smu.read()["smu_sheet_resistance"]["value"])  # no stale value left behind
    smu.trigger().wait(3)  # and the next reading works
    assert smu.read()["smu_sheet_resistance"]["value"] == pytest.approx(250.0, rel=1e-5)


def test_smu_bad_identity_is_a_reply_error(smu, smu_sim):
    smu_sim.inject("garbage", on="*IDN?", text="hello")
    exc = wait_failed(smu.trigger())
    assert isinstance(exc, ReplyError) and "MANUFACTURER,MODEL,SERIAL,FIRMWARE" in str(exc)


def test_smu_slow_reply_fails_within_the_timeout_and_the_next_reading_is_not_the_late_one(smu, smu_sim):
    smu.trigger().wait(3)
    smu_sim.sheet_resistance = 100.0
    smu_sim.inject("slow", on=":READ?", delay=0.6)
    exc = wait_failed(smu.trigger())
    # only the driver's own timeout (shorter than the 0.6 s delay) can end the reading with "no reply": had it waited,
    # the late reply would have been read
    assert "no reply to ':READ?'" in str(exc)
    smu_sim.sheet_resistance = 300.0
    time.sleep(0.3)  # the late reply (R_s = 100) goes to the dropped connection
    smu.trigger().wait(3)
    assert smu.read()["smu_sheet_resistance"]["value"] == pytest.approx(300.0, rel=1e-5)


def test_smu_reconnects_and_reconfigures_after_the_endpoint_drops(smu, smu_sim):
    smu.trigger().wait(3)
    smu_sim.drop_clients()
    smu_sim.reset()  # as if the instrument rebooted: back to 2-wire, voltage source
    time.sleep(0.05)
    smu.trigger().wait(3)
    assert smu_sim.requests.count("*RST") == 2 and smu_sim.four_wire
    assert smu.read()["smu_sheet_resistance"]["value"] == pytest.approx(250.0, rel=1e-5)


def test_smu_hang_up_mid_reading_fails_then_recovers(smu, smu_sim):
    smu.trigger().wait(3)
    smu_sim.inject("disconnect", on=":READ?")
    exc = wait_failed(smu.trigger())
    assert "closed the connection" in str(exc)
    smu.trigger().wait(3)


def test_smu_compliance_and_instrument_errors_fail_with_the_instruments_words(smu, smu_sim):
    smu_sim.sheet_resistance = 1e6  # 1 mA through 220 kOhm: far beyond 2 V compliance
    exc = wait_failed(smu.trigger())
    assert "hit the voltage compliance (2 V)" in str(exc) and "raw reply" in str(exc)
    smu_sim.sheet_resistance = 250.0
    smu_sim.errors.append('-113,"Undefined header"')
    exc = wait_failed(smu.trigger())
    assert 'instrument reports error -113,"Undefined header"' in str(exc)


def test_smu_stop_mid_reading_fails_the_status_and_switches_the_output_off(smu, smu_sim):
    smu_sim.read_time = 0.3
    status = smu.trigger()
    time.sleep(0.1)
    smu.stop()
    exc = wait_failed(status, 1.0)
    assert "stopped" in str(exc)
    time.sleep(0.3)
    assert smu_sim.requests[-1] == ":OUTP OFF" and not smu_sim.output
    smu_sim.read_time = 0.01
    smu.trigger().wait(3)


def test_smu_health_reports_identity_or_the_unreachable_endpoint():
    with ScpiSmuServer() as sim:
        smu = ScpiSmu(name="smu", host=sim.host, port=sim.port, timeout=FAST)
        assert smu.health().ok and "MODEL 2400" in smu.health().message
        port = sim.port
    smu.disconnect()
    down = ScpiSmu(name="smu", host="127.0.0.1", port=port, timeout=FAST).health()
    assert not down.ok and "cannot connect" in down.message


def test_smu_measure_step_runs_through_a_real_run_engine(smu, smu_sim):
    RE = RunEngine(context_managers=[])
    docs = []
    RE(plans.measure(smu), lambda name, doc: docs.append((name, doc)))
    events = [d for n, d in docs if n == "event"]
    assert [n for n, _ in docs] == ["start", "descriptor", "event", "stop"]
    assert events[0]["data"]["smu_sheet_resistance"] == pytest.approx(250.0, rel=1e-5)
    assert docs[-1][1]["exit_status"] == "success"


def test_smu_malformed_reply_fails_the_step_not_the_run_engine(smu, smu_sim):
    RE = RunEngine(context_managers=[])
    smu_sim.inject("garbage", on=":READ?", text="nonsense")
    docs = []
    with pytest.raises(FailedStatus) as info:
        RE(plans.measure(smu), lambda name, doc: docs.append((name, doc)))
    assert isinstance(info.value.__cause__, ReplyError) and "'nonsense'" in str(info.value.__cause__)
    assert docs[-1][0] == "stop" and docs[-1][1]["exit_status"] == "fail"
    RE(plans.measure(smu))  # the same RunEngine carries on


# -- robot arm -------------------------------------------------------------------------------------------------------
@pytest.fixture
def arm_sim():
    with RobotArmServer(move_time=0.03) as sim:
        yield sim


@pytest.fixture
def arm(arm_sim):
    dev = RobotArm(name="arm", timeout=FAST, move_timeout=1.0, status_timeout=4.0, **arm_sim.connection_kwargs())
    yield dev
    dev.disconnect()


def test_arm_moves_a_sample_between_taught_positions(arm, arm_sim):
    arm.set(Move("S-1", "rack", "smu")).wait(3)
    assert arm.at.get() == "smu" and arm.holding.get() == ""
    assert arm_sim.command.requests == ["movej rack", "gripper close", "movej smu", "gripper open"]
    assert arm_sim.dashboard.requests[:2] == ["safetystatus", "robotmode"]
    assert arm.dashboard.greeting == "Connected: Universal Robots Dashboard Server"
    assert arm_sim.position == "smu" and arm_sim.gripper == "open"


def test_arm_starts_the_program_when_it_is_not_playing():
    with RobotArmServer(move_time=0.01, playing=False) as sim:
        sim.loaded = None
        arm = RobotArm(name="arm", timeout=FAST, move_timeout=1.0, **sim.connection_kwargs())
        arm.set(Move("S-1", "home", "rack")).wait(3)
        assert ["load labloop.urp", "play"] == [r for r in sim.dashboard.requests if r in ("load labloop.urp", "play")]
        arm.disconnect()


def test_arm_refuses_untaught_positions_at_once(arm, arm_sim):
    with pytest.raises(LimitError, match="cannot reach position 'roof'"):
        arm.set(Move("S-1", "rack", "roof"))
    assert arm_sim.requests == []


def test_arm_protective_stop_fails_the_move_with_a_clear_reason_until_released(arm, arm_sim):
    arm_sim.inject("protective_stop")
    exc = wait_failed(arm.set(Move("S-1", "rack", "chamber")))
    assert "protective stop during 'movej rack'" in exc.problem
    assert "unlock_protective_stop" in exc.fix
    assert not arm.health().ok and "PROTECTIVE_STOP" in arm.health().message
    exc = wait_failed(arm.set(Move("S-1", "rack", "chamber")))  # refused before anything moves
    assert "is in protective stop" in exc.problem
    assert "unlock protective stop" not in arm_sim.dashboard.requests  # the driver never releases it by itself
    arm.unlock_protective_stop()
    arm.set(Move("S-1", "rack", "chamber")).wait(3)
    assert arm.at.get() == "chamber" and arm.health().ok


def test_arm_stop_mid_move_fails_the_status_and_the_next_move_restarts_the_program(arm, arm_sim):
    arm_sim.move_time = 60.0  # the move cannot end by itself while the test runs: only the stop can end it
    status = arm.set(Move("S-1", "rack", "chamber"))
    time.sleep(0.15)
    arm.stop()
    exc = wait_failed(status, 10.0)
    assert "move stopped" in str(exc) and arm.at.get() == "unknown"
    assert arm_sim.position == "between"
    arm_sim.move_time = 0.01
    arm.set(Move("S-1", "rack", "chamber")).wait(3)
    assert arm_sim.dashboard.requests.count("play") == 1 and arm.at.get() == "chamber"


def test_arm_garbage_from_the_dashboard_fails_with_the_raw_reply(arm, arm_sim):
    arm_sim.inject("garbage", on="safetystatus", text="Safety?? 42")
    exc = wait_failed(arm.set(Move("S-1", "rack", "smu")))
    assert isinstance(exc, ReplyError) and exc.raw == "Safety?? 42"
    arm_sim.inject("garbage", on="movej", text="okay-ish")
    exc = wait_failed(arm.set(Move("S-1", "rack", "smu")))
    assert "malformed reply to 'movej rack'" in str(exc) and "'okay-ish'" in str(exc)


def test_arm_controller_errors_are_reported_verbatim(arm, arm_sim):
    arm.positions = (*arm.positions, "shelf")  # taught in the driver config, not on the controller
    exc = wait_failed(arm.set(Move("S-1", "rack", "shelf")))
    assert "error unknown position 'shelf'" in str(exc)


def test_arm_reconnects_both_channels_after_the_controller_drops_them(arm, arm_sim):
    arm.set(Move("S-1", "rack", "smu")).wait(3)
    arm_sim.drop_clients()
    time.sleep(0.05)
    arm.set(Move("S-1", "smu", "rack")).wait(3)
    assert arm.dashboard.generation == 2 and arm.command.generation == 2
    arm_sim.inject("slow", on="safetystatus", delay=0.6)
    exc = wait_failed(arm.set(Move("S-1", "rack", "smu")))
    assert "no reply to 'safetystatus'" in str(exc)
    arm.set(Move("S-1", "rack", "smu")).wait(3)


def test_arm_transfer_step_runs_through_a_real_run_engine(arm, arm_sim):
    RE = RunEngine(context_managers=[])
    RE(bps.mv(arm, Move("S-1", "rack", "smu")))
    assert arm.at.get() == "smu"
    docs = []
    RE(plans.transfer(arm, Move("S-1", "smu", "chamber")), lambda name, doc: docs.append((name, doc)))
    event = next(d for n, d in docs if n == "event")
    assert event["data"]["arm_at"] == "chamber"
    assert docs[-1][1]["exit_status"] == "success"
    assert arm_sim.moves == ["rack", "smu", "chamber"]
