"""A balance speaking MT-SICS over serial (issue 22): pyserial's ``socket://`` against a simulated balance process.

The weight drifts and settles; ``S`` waits for stability, ``SI`` answers at once, ``Z``/``T`` zero and tare;
a refused command, garbage, a stall, a killed balance mid-measurement: the step fails with the reason and the
device works again once the balance is back. No wall-clock assertions.
"""

from __future__ import annotations

import pytest
from instrument_helpers import example, simulated, simulated_device, wait_for, wait_status

from labloop.devkit.instruments import check_file
from labloop.transports.base import RefusedError, ReplyError, TransportError
from labloop.transports.serial import SerialCommand, SerialTransport

BALANCE = "balance_mtsics.yaml"


def test_the_balance_passes_the_conformance_kit_through_pyserial():
    report = check_file(example(BALANCE), simulated=True)
    report.assert_ok()
    assert report["trigger_completes"].passed and report["errors_fail_status"].passed
    assert report["reconnect"].passed


def test_a_placed_load_swings_then_settles_and_trigger_reports_the_stable_weight():
    with simulated_device(BALANCE, settle=3.0) as (bal, sim):
        bal.sample.put("s1")
        sim.inject("place", mass=12.5)
        assert bal.stable_now.get() == "D"  # just placed: dynamic
        assert wait_status(bal.trigger()) is None
        assert bal.weight.get() == pytest.approx(12.5, abs=1e-3)
        assert bal.read()["dut_weight"]["value"] == bal.weight.get()  # read() gives what trigger() measured
        assert "S" in sim.state()["requests"]


def test_zero_and_tare_are_commands_that_wait_for_stability():
    with simulated_device(BALANCE, load=3.0) as (bal, sim):
        assert float(bal.run_command("tare")) == pytest.approx(3.0, abs=1e-3)
        assert abs(bal.weight_now.get()) < 1e-3
        assert sim.state()["tare"] == pytest.approx(3.0, abs=1e-3)
        bal.run_command("zero")
        assert "Z" in sim.state()["requests"]


def test_an_unknown_command_is_refused_with_the_reply_and_garbage_shows_the_raw_reply():
    with simulated(BALANCE) as sim:
        t = SerialTransport(sim.address, timeout=1.0)
        with pytest.raises(RefusedError, match="'ES'"):
            t.command(SerialCommand(send="XYZ", pattern="OK", refused="^ES"))
        assert t.connected  # a refusal keeps the connection
        sim.inject("garbage", text="\x15#?garbled reply\r\n")
        with pytest.raises(ReplyError, match="garbled reply") as err:
            t.command(SerialCommand(send="SI", pattern=r"S [SD]\s+(-?\d+\.\d+) g"))
        assert err.value.transport == "serial" and err.value.address == sim.address
        assert t.command(SerialCommand(send="SI", pattern=r"S [SD]\s+(-?\d+\.\d+) g")) is not None
        sim.inject("slow", delay=3.0)
        with pytest.raises(TransportError, match="no reply in time"):
            t.command(SerialCommand(send="SI", pattern=r"S [SD]\s+(-?\d+\.\d+) g"), timeout=1.0)
        assert t.command(SerialCommand(send="SI", pattern=r"S [SD]\s+(-?\d+\.\d+) g")) is not None
        t.close()


def test_balance_killed_mid_measurement_fails_the_step_then_the_next_one_works():
    with simulated_device(BALANCE, settle=600.0) as (bal, sim):  # it will not settle while we watch
        bal.sample.put("s1")
        sim.inject("place", mass=5.0)
        sim.inject("slow", delay=30.0)  # the reply to S is held back: the balance dies before it can answer
        status = bal.trigger()
        wait_for(lambda: sim.state()["requests"][-1:] == ["S"], what="S to be asked")
        sim.kill()
        exc = wait_status(status)
        assert isinstance(exc, TransportError) and exc.transport == "serial", exc
        assert "weigh" in str(exc) or "command" in exc.operation
        sim.start()  # rebooted: the new balance is settled at its power-on load
        assert wait_status(bal.trigger()) is None
        assert bal.weight.get() == pytest.approx(0.0, abs=1e-3)
