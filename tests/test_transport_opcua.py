"""OPC UA tools (issue 22): the declarative reactor against asyncua's own server in its own process.

The PLC-run jacketed reactor of devices/examples passes the conformance kit through asyncua's client (in-process
and served by `labloop agent`); faults on the wire (server killed mid-read, mid-move and mid-method, a bad status,
garbage, a stall) fail the step naming the transport, address, operation and what came back, and the device works
again once the server is back. No wall-clock assertions: behaviour only.
"""

from __future__ import annotations

import pytest

from labloop.errors import DeviceError, LimitError
from labloop.transports.base import RefusedError, TransportError
from labloop.transports.opcua import OpcUaPoint, OpcUaTransport
from instrument_helpers import (assert_conformant, assert_conformant_through_agent, assert_description_refused,
                                garbage_then_stall, killed_mid_read, raises_device_error, simulated,
                                simulated_device, wait_for, wait_status)

REACTOR = "reactor_opcua.yaml"
NS = "nsu=urn:labloop:sim:reactor;s=Reactor."


def test_the_reactor_passes_the_conformance_kit_against_its_simulator_through_asyncua():
    assert_conformant(REACTOR)


def test_cli_devices_check_file_simulated_through_labloop_agent():
    assert_conformant_through_agent(REACTOR, "JacketedReactor")


def test_the_temperature_follows_its_setpoint_with_a_lag_and_a_dose_takes_simulated_time():
    with simulated_device(REACTOR) as (reactor, sim):
        reactor.sample.put("s1")
        seen: list[float] = []
        reactor.temperature.subscribe(lambda value, **_: seen.append(value), run=False)
        assert wait_status(reactor.set({"temperature": 60, "ramp_rate": 0, "stirrer": 400})) is None
        assert abs(reactor.temperature.get() - 60) <= 1.0 and abs(reactor.stirrer_speed.get() - 400) <= 10
        assert [v for v in seen if 30 < v < 55], "the temperature jumped instead of following with a lag"
        assert reactor.heater_output.get() > 0
        before = reactor.dosed_volume.get()
        assert wait_status(reactor.set({"dose": 12.5})) is None
        assert reactor.dosed_volume.get() - before == pytest.approx(12.5, abs=1e-6)
        assert sim.state()["DoseVolume"] == 12.5 and sim.state()["dosed"] == pytest.approx(12.5)
        assert reactor.state.get() in ("Heating", "Holding")


def test_limits_are_refused_before_anything_is_written():
    with simulated_device(REACTOR) as (reactor, sim):
        reactor.sample.put("s1")
        with pytest.raises(LimitError):
            reactor.set({"temperature": 400})
        assert sim.state()["TemperatureSetpoint"] == 22.0


def test_the_server_refusing_a_value_and_a_read_only_node_are_bad_statuses_and_the_session_is_kept():
    with simulated(REACTOR) as sim:
        t = OpcUaTransport(sim.address, timeout=1.0)
        sp = OpcUaPoint(node=NS + "TemperatureSetpoint")
        with pytest.raises(RefusedError, match="BadOutOfRange") as err:
            t.write(sp, 500.0)  # beyond what the PLC accepts (the device's own limits are narrower still)
        assert err.value.transport == "opcua" and err.value.address == sim.address and "write" in err.value.operation
        with pytest.raises(RefusedError, match="BadUserAccessDenied|BadNotWritable"):
            t.write(OpcUaPoint(node=NS + "Temperature"), 1.0)
        generation = t.generation
        assert t.read(sp) == 22.0  # nothing changed, and the same session answers
        assert t.generation == generation
        with pytest.raises(TransportError, match="no namespace 'urn:nowhere'"):
            t.read(OpcUaPoint(node="nsu=urn:nowhere;s=Reactor.Temperature"))
        t.close()


def test_a_bad_status_fails_the_step_naming_it_and_the_next_step_works():
    with simulated_device(REACTOR) as (reactor, sim):
        reactor.sample.put("s1")
        sim.inject("bad_status")
        wait_for(lambda: raises_device_error(reactor.temperature.get), what="the sensor's bad status to be published")
        exc = wait_status(reactor.set({"temperature": 30}))
        assert isinstance(exc, RefusedError) and "BadSensorFailure" in str(exc)
        assert exc.transport == "opcua" and exc.address == sim.address and exc.operation.startswith("read")
        assert "Temperature" in exc.operation
        sim.clear_faults()
        wait_for(lambda: not raises_device_error(reactor.temperature.get), what="the next scan to publish a good value")
        assert wait_status(reactor.set({"temperature": 30})) is None


def test_garbage_and_a_stall_fail_with_what_came_back_and_the_next_read_works():
    with simulated_device(REACTOR) as (reactor, sim):
        reactor.temperature.get()
        garbled, stalled = garbage_then_stall(reactor.temperature, sim)
        assert "garbled reply" in str(garbled) and garbled.operation.startswith("read")
        assert "no reply in time" in str(stalled) and "Temperature" in stalled.operation


def test_server_killed_mid_move_fails_the_step_then_the_device_reconnects_to_the_restarted_one():
    with simulated_device(REACTOR) as (reactor, sim):
        reactor.sample.put("s1")
        status = reactor.set({"ramp_rate": 10, "temperature": 150})  # a slow ramp (rate written first)
        wait_for(lambda: sim.state()["TemperatureSetpoint"] == 150, what="the setpoint to arrive")
        sim.kill()
        exc = wait_status(status)
        assert isinstance(exc, TransportError), exc
        assert exc.transport == "opcua" and exc.address == sim.address
        assert exc.operation.startswith(("read", "connect")), exc.operation  # the poll found it dead, either way
        sim.start()  # the PLC rebooted on the same address
        assert wait_status(reactor.set({"temperature": 30, "ramp_rate": 0})) is None
        assert reactor.health().ok


def test_server_killed_mid_dose_fails_the_step_and_a_refused_method_is_a_bad_status():
    with simulated_device(REACTOR, dose_rate=0.02) as (reactor, sim):  # a slow pump: the dose takes a while
        reactor.sample.put("s1")
        status = reactor.set({"dose": 40})
        wait_for(lambda: sim.state()["dosing"], what="the dose to start")
        assert reactor.state.get() == "Dosing"
        with pytest.raises(RefusedError, match="BadInvalidState") as err:  # the PLC refuses a second dose
            reactor.run_command("dose", {"value": 1.0})
        assert err.value.operation.startswith("command") and "Dose" in err.value.operation
        sim.kill()
        exc = wait_status(status)
        assert isinstance(exc, TransportError) and exc.address == sim.address, exc
        assert exc.operation.startswith(("read", "connect")), exc.operation
        sim.start()
        assert wait_status(reactor.set({"dose": 0.5})) is None
        assert sim.state()["dose_complete"] and sim.state()["dosed"] == pytest.approx(0.5)


def test_stop_aborts_a_dose_on_the_plc():
    with simulated_device(REACTOR, dose_rate=0.02) as (reactor, sim):
        reactor.sample.put("s1")
        status = reactor.set({"dose": 40})
        wait_for(lambda: reactor.state.get() == "Dosing", what="the dose to start")
        reactor.stop()
        exc = wait_status(status)
        assert isinstance(exc, DeviceError) and "stopped" in str(exc), exc
        state = sim.state()
        assert state["dosed"] < 40 and not state["dosing"] and not state["dose_complete"] and state["Run"] is False
        assert wait_status(reactor.set({"temperature": 30})) is None  # start: Run again
        assert sim.state()["Run"] is True


def test_server_killed_mid_read_fails_the_read_and_the_next_read_reconnects():
    with simulated_device(REACTOR) as (reactor, sim):
        reactor.temperature.get()
        error = killed_mid_read(reactor.temperature, sim)
        assert isinstance(error, TransportError) and error.operation.startswith("read"), error
        assert not reactor.health().ok and "opcua" in reactor.health().message
        sim.start()
        assert reactor.health().ok


def test_alarms_make_the_device_unhealthy():
    with simulated_device(REACTOR) as (reactor, sim):
        assert reactor.health().ok
        sim.inject("sensor_break")
        wait_for(lambda: not reactor.health().ok, what="the alarm to be published")
        assert "sensor_fault" in reactor.health().message


@pytest.mark.parametrize("change, message", [
    (lambda d: d["signals"]["setpoint"]["point"].update(node="Reactor.TemperatureSetpoint"), "not an OPC UA node"),
    (lambda d: d["signals"]["setpoint"]["point"].update(nodeid="ns=2;s=X"), "nodeid"),
    (lambda d: d["commands"]["dose"]["point"].update(types=["Real"]), "types"),
    (lambda d: d["commands"]["dose"]["point"].pop("object"), "object"),
])
def test_a_bad_description_is_refused_with_the_field_named(change, message):
    assert_description_refused(REACTOR, change, message)
