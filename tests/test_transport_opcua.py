"""A PLC-run reactor over OPC UA (issue 22): asyncua's sync client against asyncua's own server in its own process.

The jacket follows its setpoint with a lag; a timed program is an OPC UA method whose call returns when it is done;
bad statuses (a read-only node, an invalid argument) are refusals naming the status; a killed server mid-method
fails the step, and the device works again once the server is back. No wall-clock assertions.
"""

from __future__ import annotations

import pytest
from instrument_helpers import example, set_watching, simulated, simulated_device, wait_for, wait_status

from labloop.devkit.instruments import check_file
from labloop.transports.base import RefusedError, TransportError
from labloop.transports.opcua import OpcuaCommand, OpcuaPoint, OpcuaTransport

REACTOR = "reactor_opcua.yaml"
RUN = OpcuaCommand(object="ns=2;s=Reactor", method="ns=2;s=Reactor.RunProgram", args=["{value}"])


def test_the_reactor_passes_the_conformance_kit_through_asyncua():
    report = check_file(example(REACTOR), simulated=True)
    report.assert_ok()
    for name in ("set_completes", "stop_mid_action", "errors_fail_status", "slow_reply_times_out", "reconnect"):
        assert report[name].passed, report.summary()


def test_a_recipe_heats_with_a_lag_then_runs_the_timed_program_as_a_method():
    with simulated_device(REACTOR) as (reactor, sim):
        seen = set_watching(reactor, "temperature", {"temperature": 60, "stirrer_speed": 400, "hold_minutes": 0.5})
        assert abs(reactor.temperature.get() - 60) < 2.0
        assert any(30 < v < 55 for v in seen), "the jacket jumped instead of following with a lag"
        assert sim.state()["calls"] == [0.5] and reactor.state.get() == "Idle"
        assert reactor.stirrer_speed.get() == 400


def test_bad_statuses_are_refusals_naming_the_status_and_keep_the_connection():
    with simulated(REACTOR) as sim:
        t = OpcuaTransport(sim.address, timeout=2.0)
        with pytest.raises(RefusedError, match="bad status Bad") as err:
            t.write(OpcuaPoint(node="ns=2;s=Reactor.Temperature", type="Double"), 5.0)  # measured: read-only
        assert err.value.transport == "opcua" and "write" in err.value.operation
        with pytest.raises(RefusedError, match="bad status Bad"):
            t.command(RUN, {"value": -1.0})
        with pytest.raises(RefusedError, match="BadNodeIdUnknown"):
            t.read(OpcuaPoint(node="ns=2;s=Reactor.NoSuchNode"))
        assert t.connected and t.read(OpcuaPoint(node="ns=2;s=Reactor.State")) == "Idle"
        t.close()


def test_server_killed_mid_method_fails_the_step_then_the_device_works_again():
    with simulated_device(REACTOR) as (reactor, sim):
        reactor.sample.put("s1")
        status = reactor.set({"temperature": 25, "hold_minutes": 50})  # 50 s of program at time_scale 60
        wait_for(lambda: sim.state()["running"], what="the program to start")
        sim.kill()
        exc = wait_status(status)
        assert isinstance(exc, TransportError) and exc.transport == "opcua" and exc.address == sim.address, exc
        assert "command" in exc.operation
        sim.start()
        assert wait_status(reactor.set({"temperature": 25, "hold_minutes": 0.1})) is None
        assert reactor.health().ok


def test_an_alarm_on_the_plc_makes_the_reactor_unhealthy():
    with simulated_device(REACTOR) as (reactor, sim):
        assert reactor.health().ok
        sim.inject("alarm")
        wait_for(lambda: not reactor.health().ok, what="the alarm to show")
        assert "alarm" in reactor.health().message
