"""A SCPI source-measure unit over VISA (issue 22): pyvisa + pyvisa-py's TCPIP SOCKET resource against a simulated
instrument process (the SMU physics: four-point probe on a film, integration time, SCPI error queue).

Faults: the instrument refusing a value (SCPI error queue), garbage, a stall, a killed instrument mid-measurement:
the step fails with the reason; the device works again once the instrument is back. No wall-clock assertions.
"""

from __future__ import annotations

import math

import pytest
from instrument_helpers import example, simulated, simulated_device, wait_for, wait_status

from labloop.devkit.instruments import check_file
from labloop.transports.base import RefusedError, ReplyError, TransportError
from labloop.transports.visa import VisaPoint, VisaTransport

SMU = "smu_visa.yaml"


def test_the_smu_passes_the_conformance_kit_through_pyvisa_py():
    report = check_file(example(SMU), simulated=True)
    report.assert_ok()
    for name in ("trigger_completes", "stop_mid_action", "errors_fail_status", "slow_reply_times_out", "reconnect"):
        assert report[name].passed, report.summary()


def test_the_measured_sheet_resistance_is_the_films_and_the_python_hook_computed_it():
    with simulated_device(SMU) as (smu, sim):
        smu.sample.put("s1")
        assert type(smu).__mro__[1].__name__ == "FourPointSmu"
        assert wait_status(smu.trigger()) is None
        assert smu.sheet_resistance.get() == pytest.approx(125.0, rel=0.01)
        state = sim.state()
        assert state["four_wire"] and state["output"] and state["source_func"] == "CURR" and not state["errors"]
        sim.inject("film", sheet_resistance=480.0)
        assert wait_status(smu.trigger()) is None
        assert smu.sheet_resistance.get() == pytest.approx(480.0, rel=0.01)
        assert smu.read()["dut_sheet_resistance"]["value"] == smu.sheet_resistance.get()


def test_a_value_the_instrument_refuses_is_a_refusal_naming_its_scpi_error():
    with simulated(SMU) as sim:
        t = VisaTransport(sim.address, timeout=2.0)
        with pytest.raises(RefusedError, match="-222") as err:
            t.write(VisaPoint(write=":SOUR:CURR {value:g}"), 5.0)  # beyond the instrument's 1.05 A
        assert err.value.transport == "visa" and err.value.address == sim.address and "write" in err.value.operation
        assert t.connected
        assert t.read(VisaPoint(query="*IDN?")).startswith("KEITHLEY")
        t.close()


def test_garbage_and_a_stall_fail_with_what_came_back_and_the_next_query_works():
    with simulated(SMU) as sim:
        t = VisaTransport(sim.address, timeout=1.0)
        point = VisaPoint(query=":OUTP?", pattern=r"(?P<value>[01])")
        sim.inject("garbage", text="\x15#?garbled reply")
        with pytest.raises(ReplyError, match="garbled reply"):
            t.read(point)
        assert t.read(point) == "0"
        sim.inject("slow", delay=3.0)
        with pytest.raises(TransportError, match=r"(?i)timeout|no reply in time"):
            t.read(point)
        assert t.read(point) == "0"
        t.close()


def test_instrument_killed_mid_measurement_fails_the_step_then_the_next_one_works():
    with simulated_device(SMU, read_time=30.0) as (smu, sim):  # a 30 s integration: killed while it runs
        smu.sample.put("s1")
        status = smu.trigger()
        wait_for(lambda: sim.state()["output"], what="the measurement to start")
        sim.kill()
        exc = wait_status(status)
        assert isinstance(exc, TransportError) and exc.transport == "visa" and exc.address == sim.address, exc
        sim.options["read_time"] = 0.05
        sim.start()
        assert wait_status(smu.trigger()) is None
        assert not math.isnan(smu.sheet_resistance.get())
