"""Modbus TCP instruments (issue 22): declarative devices against pymodbus' own server in its own process.

The furnace controller and the mass-flow controller of devices/examples pass the conformance kit through the real
client; faults on the wire (killed server mid-read and mid-move, exception replies, garbage, stalls) fail the step
with the transport, address, operation and what came back, and the device works again once the server is back.
No wall-clock assertions: behaviour only.
"""

from __future__ import annotations

import threading

import pytest
from instrument_helpers import (
    assert_description_refused,
    example,
    set_watching,
    simulated,
    simulated_device,
    wait_for,
    wait_status,
)
from typer.testing import CliRunner

from labloop.cli import app
from labloop.devkit.instruments import check_file
from labloop.errors import DeviceError, LimitError
from labloop.transports.base import RefusedError, TransportError
from labloop.transports.modbus import ModbusPoint, ModbusTransport

FURNACE, MFC = "furnace_modbus.yaml", "mfc_modbus.yaml"


def test_the_furnace_passes_the_conformance_kit_against_its_simulator_through_pymodbus():
    report = check_file(example(FURNACE), simulated=True)
    report.assert_ok()
    for name in ("set_completes", "errors_fail_status", "slow_reply_times_out", "reconnect", "stop_mid_action"):
        assert report[name].passed, report.summary()


def test_cli_devices_check_file_simulated_runs_the_mfc_and_stops_its_simulator():
    result = CliRunner().invoke(app, ["devices", "check", str(example(MFC)), "--simulated"])
    assert result.exit_code == 0, result.output
    assert "all checks passed" in result.output and "MassFlowController" in result.output


def test_without_a_simulation_block_simulated_is_a_clear_error(tmp_path):
    text = (
        example(MFC).read_text().split("simulation:")[0] + "signals:" + example(MFC).read_text().split("signals:", 1)[1]
    )
    f = tmp_path / "mfc.yaml"
    f.write_text(text)
    result = CliRunner().invoke(app, ["devices", "check", str(f), "--simulated"])
    assert result.exit_code == 2 and "no 'simulation:' block" in result.output


def test_the_process_value_follows_the_setpoint_with_a_lag_and_the_mfc_completes_on_its_done_bit():
    with simulated_device(FURNACE) as (furnace, sim):
        seen = set_watching(furnace, "temperature", {"temperature": 150, "ramp_rate": 0})
        assert abs(furnace.temperature.get() - 150) <= 2.0
        assert sim.state()["sp"] == 150
        rising = [v for v in seen if 30 < v < 140]
        assert rising, "the process value jumped instead of following the setpoint with a lag"
        assert furnace.output.get() > 0
    with simulated_device(MFC) as (mfc, sim):
        mfc.sample.put("s1")
        assert wait_status(mfc.set({"flow": 120})) is None
        assert mfc.stable.get() is True and abs(mfc.flow.get() - 120) < 5
        assert mfc.valve.get() == pytest.approx(100 * sim.state()["flow"] / 500, abs=1.0)


def test_limits_are_refused_before_anything_is_written():
    with simulated_device(FURNACE) as (furnace, sim):
        furnace.sample.put("s1")
        with pytest.raises(LimitError):
            furnace.set({"temperature": 5000})
        assert sim.state()["sp"] == 25.0


def test_an_exception_reply_fails_the_step_naming_the_code_and_the_next_step_works():
    with simulated_device(FURNACE) as (furnace, sim):
        furnace.sample.put("s1")
        sim.inject("exception", code=4)
        exc = wait_status(furnace.set({"temperature": 60}))
        assert isinstance(exc, RefusedError)
        assert "modbus" in str(exc) and sim.address in str(exc) and "exception code 4" in str(exc)
        assert "write" in exc.operation
        assert wait_status(furnace.set({"temperature": 60})) is None


def test_the_instrument_refusing_a_value_and_a_read_only_register_are_errors_with_the_code():
    with simulated("furnace_modbus.yaml") as sim:
        t = ModbusTransport(sim.address, timeout=1.0)
        with pytest.raises(RefusedError, match="exception code 3"):
            t.write(ModbusPoint(table="holding", register=2, type="float32"), 5000.0)  # beyond the controller
        with pytest.raises(RefusedError, match="exception code 2"):
            t.write(ModbusPoint(table="holding", register=0, type="float32"), 1.0)  # PV is read-only
        assert t.read(ModbusPoint(table="holding", register=2, type="float32")) == 25.0  # nothing changed
        t.close()


def test_garbage_and_a_stall_fail_with_what_came_back_and_the_next_read_works():
    with simulated_device(FURNACE) as (furnace, sim):
        sim.inject("garbage", text="\x15#?garbled reply")
        with pytest.raises(TransportError) as err:
            furnace.temperature.get()
        assert "garbled reply" in str(err.value) and "read" in err.value.operation
        assert furnace.temperature.get() > 0
        sim.inject("slow", delay=3 * furnace.transport.timeout)
        with pytest.raises(TransportError, match="no reply in time"):
            furnace.temperature.get()
        assert furnace.temperature.get() > 0


def test_server_killed_mid_move_fails_the_step_then_the_device_reconnects_to_the_restarted_one():
    with simulated_device(FURNACE) as (furnace, sim):
        furnace.sample.put("s1")
        status = furnace.set({"temperature": 900, "ramp_rate": 60})  # a slow ramp: minutes of simulated time
        # every write of the move has arrived (the ramp rate is written after the setpoint): what dies is the poll
        wait_for(lambda: (sim.state()["sp"], sim.state()["ramp_rate"]) == (900, 60), what="the move's writes")
        sim.kill()
        exc = wait_status(status)
        assert isinstance(exc, TransportError), exc
        assert exc.transport == "modbus" and exc.address == sim.address
        assert exc.operation.startswith(("read", "connect")), exc.operation  # the poll found it dead, either way
        sim.start()  # the controller rebooted on the same address
        assert wait_status(furnace.set({"temperature": 40, "ramp_rate": 0})) is None
        assert furnace.health().ok


def test_server_killed_mid_read_fails_the_read_and_the_next_read_reconnects():
    with simulated_device(FURNACE) as (furnace, sim):
        furnace.temperature.get()
        sim.inject("silent")  # the request is in flight when the power goes
        box: dict = {}

        def read() -> None:
            try:
                box["value"] = furnace.temperature.get()
            except DeviceError as exc:
                box["error"] = exc

        t = threading.Thread(target=read)
        t.start()
        wait_for(lambda: _busy(furnace.transport._lock), what="the read to be in flight")
        sim.kill()
        t.join(10)
        assert "error" in box and box["error"].operation.startswith("read"), box
        assert not furnace.health().ok and "modbus" in furnace.health().message
        sim.start()
        assert furnace.health().ok


def _busy(lock) -> bool:
    if lock.acquire(blocking=False):
        lock.release()
        return False
    return True


def test_alarm_bits_make_the_device_unhealthy():
    with simulated_device(FURNACE) as (furnace, sim):
        assert furnace.health().ok
        sim.inject("sensor_break")
        health = furnace.health()
        assert not health.ok and "sensor_break" in health.message


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["signals"]["setpoint"]["point"].update(regster=2), "regster"),
        (lambda d: d["signals"]["setpoint"].pop("limits"), "needs limits"),
        (lambda d: d["setpoints"]["temperature"].update(readback="temprature"), "temprature"),
        (lambda d: d["transport"].update(kind="profibus"), "unknown transport 'profibus'"),
        (lambda d: d["signals"].update(set={"point": {"register": 3}}), "taken by the device"),
    ],
)
def test_a_bad_description_is_refused_with_the_field_named(change, message):
    assert_description_refused(FURNACE, change, message)


def test_modbus_rtu_frames_through_a_gateway_pass_the_kit_too():
    """RTU framing (CRC, no MBAP header) over TCP, as a serial-to-Ethernet gateway carries it: same device file,
    address rtu+tcp://, a pymodbus server speaking RTU frames."""
    from labloop.devkit.conformance import run_conformance

    with simulated_device(MFC, framer="rtu") as (mfc, sim):
        assert sim.address.startswith("rtu+tcp://")
        report = run_conformance(mfc, endpoint=sim)
        report.assert_ok()
        assert report["set_completes"].passed and report["reconnect"].passed


def test_poll_delivers_values_and_then_the_failure_when_the_controller_dies():
    import threading

    with simulated(FURNACE) as sim:
        t = ModbusTransport(sim.address, timeout=0.5)
        got: list = []
        stop = threading.Event()
        thread = t.poll(
            ModbusPoint(table="input", register=0, type="float32"), 0.01, lambda value, when: got.append(value), stop
        )
        wait_for(lambda: len([v for v in got if isinstance(v, float)]) >= 3, what="three polled values")
        sim.kill()
        wait_for(lambda: any(isinstance(v, TransportError) for v in got), what="the failure to be polled")
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
        assert all(20 < v < 30 for v in got if isinstance(v, float))  # the furnace at ambient
        t.close()
