"""A temperature controller IOC over EPICS Channel Access (issue 22): caproto's threading client against caproto's
own server in its own process, on its own search port.

Channel Access announces its TCP port in search replies, so no fault proxy can stand in front of an IOC: the wire
faults here are the IOC refusing a put, a PV that never connects, and the IOC killed mid-move and rebooted. The
step fails with the reason and the device reconnects. No wall-clock assertions.
"""

from __future__ import annotations

import pytest
from instrument_helpers import example, set_watching, simulated, simulated_device, wait_for, wait_status

from labloop.devkit.instruments import check_file
from labloop.transports.base import RefusedError, TransportError
from labloop.transports.epics import EpicsPoint, EpicsTransport

TC = "temperature_epics.yaml"


def test_the_ioc_passes_the_conformance_kit_through_caproto_and_reconnects_after_a_reboot():
    report = check_file(example(TC), simulated=True)
    report.assert_ok()
    assert report["set_completes"].passed and report["stop_mid_action"].passed and report["reconnect"].passed
    assert report["errors_fail_status"].outcome == "skip"  # no proxy can stand in front of CA: said, not faked


def test_a_move_completes_on_the_done_pv_after_the_temperature_followed_with_a_lag():
    with simulated_device(TC) as (tc, sim):
        seen = set_watching(tc, "temperature", {"temperature": 80, "ramp_rate": 0})
        assert tc.at_setpoint.get() is True and abs(tc.temperature.get() - 80) < 0.6
        assert any(35 < v < 75 for v in seen), "the temperature jumped instead of following with a lag"
        assert sim.state()["sp"] == 80


def test_a_refused_put_and_an_unknown_pv_name_the_pv_and_what_happened():
    with simulated(TC) as sim:
        t = EpicsTransport(sim.address, timeout=1.0)
        with pytest.raises(RefusedError, match="SIM:TC1:T:SP") as err:
            t.write(EpicsPoint(pv="SIM:TC1:T:SP"), 5000.0)  # the IOC's putter refuses beyond [0, 400]
        assert err.value.transport == "epics" and "write" in err.value.operation
        assert t.read(EpicsPoint(pv="SIM:TC1:T:SP")) == 25.0
        with pytest.raises(TransportError, match="SIM:TC1:NOPE did not connect"):
            t.read(EpicsPoint(pv="SIM:TC1:NOPE"))
        assert t.read(EpicsPoint(pv="SIM:TC1:T")) > 0
        t.close()


def test_ioc_killed_mid_move_fails_the_step_then_the_device_reconnects_to_the_rebooted_ioc():
    with simulated_device(TC) as (tc, sim):
        tc.sample.put("s1")
        status = tc.set({"temperature": 350, "ramp_rate": 0.5})  # a slow ramp
        wait_for(lambda: sim.state()["sp"] == 350, what="the setpoint to arrive")
        sim.kill()
        exc = wait_status(status)
        assert isinstance(exc, TransportError) and exc.transport == "epics" and exc.address == sim.address, exc
        sim.start()
        assert wait_status(tc.set({"temperature": 30, "ramp_rate": 0})) is None
        assert tc.health().ok
