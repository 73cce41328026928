"""EPICS Channel Access (issue 22): the declarative stage motor against a caproto IOC in its own process.

The IOC answers CA searches on 127.0.0.1 only, on a free port (never the shared 5064), and names the fault proxy's
port in its search replies, so every circuit goes through the proxy. The stage passes the conformance kit through
caproto's threading client (in-process and served by `labloop agent`); faults (IOC killed mid-read and mid-move,
INVALID alarm, refused put, garbage, a stall, an unknown PV) fail the step naming the transport, address,
operation and what came back, and the device works again once the IOC is back. No wall-clock assertions.
"""

from __future__ import annotations

import pytest

from labloop.errors import DeviceError, LimitError
from labloop.transports.base import RefusedError, TransportError
from labloop.transports.epics import EpicsPoint, EpicsTransport
from instrument_helpers import (assert_conformant, assert_conformant_through_agent, assert_description_refused,
                                garbage_then_stall, killed_mid_read, raises_device_error, simulated,
                                simulated_device, wait_for, wait_status)

STAGE = "stage_epics.yaml"


def test_the_stage_passes_the_conformance_kit_against_its_ioc_through_caproto():
    assert_conformant(STAGE)


def test_cli_devices_check_file_simulated_through_labloop_agent():
    assert_conformant_through_agent(STAGE, "MotorIOC")


def test_the_readback_follows_the_move_and_done_moving_ends_it():
    with simulated_device(STAGE) as (stage, sim):
        stage.sample.put("s1")
        seen: list[float] = []
        stage.x_position.subscribe(lambda value, **_: seen.append(value), run=False)
        assert wait_status(stage.set({"x": 6.0, "speed": 2.0})) is None
        assert stage.x_position.get() == pytest.approx(6.0, abs=1e-3) and stage.done_moving.get() is True
        assert [v for v in seen if 0.5 < v < 5.5], "the readback jumped instead of moving at the set speed"
        state = sim.state()
        assert state["pos"] == 6.0 and not state["moving"] and state["velo"] == 2.0


def test_limits_are_refused_before_anything_is_written():
    with simulated_device(STAGE) as (stage, sim):
        stage.sample.put("s1")
        with pytest.raises(LimitError):
            stage.set({"x": 49})
        assert sim.state()["target"] == 0.0


def test_the_ioc_refusing_a_put_and_an_unknown_pv_are_named():
    with simulated(STAGE) as sim:
        t = EpicsTransport(sim.address, timeout=1.0)
        velo = EpicsPoint(pv="SIM:m1.VELO")
        with pytest.raises(RefusedError, match="ECA_PUTFAIL") as err:
            t.write(velo, 100.0)  # beyond the record's control limits: the IOC says no
        assert err.value.transport == "epics" and err.value.address == sim.address
        assert "write 100.0" in err.value.operation and "20.0" in err.value.got
        generation = t.generation
        assert t.read(velo) == 2.0  # nothing changed, the same circuit answers
        assert t.generation == generation
        with pytest.raises(TransportError, match="no IOC answered the search for PV SIM:nope"):
            t.read(EpicsPoint(pv="SIM:nope"))
        t.close()


def test_an_invalid_alarm_fails_the_step_naming_it_and_the_next_step_works():
    with simulated_device(STAGE) as (stage, sim):
        stage.sample.put("s1")
        sim.inject("bad_status")
        wait_for(lambda: raises_device_error(stage.x_position.get), what="the INVALID alarm to be posted")
        exc = wait_status(stage.set({"x": 1.0}))
        assert isinstance(exc, RefusedError) and "INVALID alarm (status READ)" in str(exc), exc
        assert exc.operation.startswith("read") and "SIM:m1.RBV" in exc.operation and exc.address == sim.address
        sim.clear_faults()
        wait_for(lambda: not raises_device_error(stage.x_position.get), what="the alarm to clear")
        assert wait_status(stage.set({"x": 1.0})) is None


def test_garbage_and_a_stall_fail_with_what_came_back_and_the_next_read_works():
    with simulated_device(STAGE) as (stage, sim):
        stage.x_position.get()
        garbled, stalled = garbage_then_stall(stage.x_position, sim)
        assert "garbled reply" in str(garbled) and garbled.operation.startswith("read")
        assert "no reply in time" in str(stalled) and "SIM:m1.RBV" in stalled.operation


def test_ioc_killed_mid_move_fails_the_step_then_the_device_reconnects_to_the_restarted_one():
    with simulated_device(STAGE) as (stage, sim):
        stage.sample.put("s1")
        status = stage.set({"speed": 0.2, "x": 40.0})  # a slow move (speed written first): minutes of simulated time
        wait_for(lambda: sim.state()["moving"], what="the move to start")
        sim.kill()
        exc = wait_status(status)
        assert isinstance(exc, TransportError), exc
        assert exc.transport == "epics" and exc.address == sim.address
        assert exc.operation.startswith("read"), exc.operation  # the done poll found it dead
        sim.start()  # the IOC rebooted on the same ports
        assert wait_status(stage.set({"x": 1.0, "speed": 5.0})) is None
        assert stage.health().ok


def test_ioc_killed_mid_read_fails_the_read_and_the_next_read_reconnects():
    with simulated_device(STAGE) as (stage, sim):
        stage.x_position.get()
        error = killed_mid_read(stage.x_position, sim)
        assert isinstance(error, TransportError) and error.operation.startswith("read"), error
        assert not stage.health().ok and "epics" in stage.health().message
        sim.start()
        assert stage.health().ok


def test_stop_halts_the_motor_where_it_is():
    with simulated_device(STAGE) as (stage, sim):
        stage.sample.put("s1")
        status = stage.set({"x": 40.0, "speed": 0.5})
        wait_for(lambda: stage.x_position.get() > 0.1, what="the carriage to move")
        stage.stop()
        exc = wait_status(status)
        assert isinstance(exc, DeviceError) and "stopped" in str(exc)
        wait_for(lambda: not sim.state()["moving"], what="the motor to halt")
        state = sim.state()
        assert 0.1 < state["pos"] < 40.0 and state["target"] == state["pos"]


def test_a_limit_switch_makes_the_device_unhealthy():
    with simulated_device(STAGE) as (stage, sim):
        assert stage.health().ok
        sim.inject("sensor_break")
        wait_for(lambda: not stage.health().ok, what="the limit switch to be posted")
        assert "high_limit_switch" in stage.health().message


@pytest.mark.parametrize("change, message", [
    (lambda d: d["signals"]["target"]["point"].update(pv=""), "pv"),
    (lambda d: d["signals"]["target"]["point"].update(name="SIM:m1"), "name"),
    (lambda d: d["signals"]["target"]["point"].update(put_callback="sometimes"), "put_callback"),
    (lambda d: d.update(commands={"home": {"point": {"pv": "SIM:m1.HOMF"}}}), "no commands"),
])
def test_a_bad_description_is_refused_with_the_field_named(change, message):
    assert_description_refused(STAGE, change, message)
