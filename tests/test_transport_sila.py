"""SiLA 2 (issue 22): the declarative plate reader against a sila2 server in its own process.

The reader passes the conformance kit through the sila2 client, in-process and served by `labloop agent`, except
the check that a garbled reply's raw bytes appear in the error: gRPC parses replies in its C core and hands Python
only its own description, so a garbled reply fails as a connection error (tested below: the step fails naming the
transport, address and operation, and the next works). Faults: server killed mid-read and mid-command, SiLA
defined and undefined execution errors, a stall. No wall-clock assertions.
"""

from __future__ import annotations

import pytest
from instrument_helpers import (
    assert_description_refused,
    example,
    garbage_then_stall,
    killed_mid_read,
    simulated,
    simulated_device,
    wait_for,
    wait_status,
)
from typer.testing import CliRunner

from labloop.cli import app
from labloop.devkit.conformance import check_names
from labloop.devkit.instruments import check_file
from labloop.errors import LimitError
from labloop.transports.base import RefusedError, TransportError
from labloop.transports.sila import SilaPoint, SilaTransport

READER = "platereader_sila.yaml"
CHECKS = [c for c in check_names() if c != "errors_fail_status"]  # gRPC never shows the raw bytes (see above)


def test_the_plate_reader_passes_the_conformance_kit_against_its_simulator_through_sila2():
    report = check_file(example(READER), simulated=True, only=CHECKS)
    report.assert_ok()
    for name in ("trigger_completes", "slow_reply_times_out", "reconnect", "stop_mid_action"):
        assert report[name].passed, report.summary()


def test_cli_devices_check_file_simulated_through_labloop_agent():
    only = [a for c in ("trigger_completes", "reconnect", "stop_mid_action") for a in ("--only", c)]
    result = CliRunner().invoke(app, ["devices", "check", str(example(READER)), "--simulated", "--remote", *only])
    assert result.exit_code == 0, result.output
    assert "all checks passed" in result.output and "PlateReader" in result.output and "labloop agent" in result.output


def test_a_read_is_an_observable_command_whose_result_depends_on_the_chamber_temperature():
    with simulated_device(READER) as (reader, sim):
        reader.sample.put("s1")
        assert wait_status(reader.trigger()) is None
        cool = reader.read()[reader.absorbance.name]["value"]
        assert sim.state()["reads"] == 1 and cool == pytest.approx(
            reader.transport.read(SilaPoint(feature="PlateReaderControl", property="LastAbsorbance"))
        )
        reader.temperature.put(40.0)
        wait_for(lambda: reader.temperature.get() > 37.0, what="the chamber to warm (it lags its setpoint)")
        assert wait_status(reader.trigger()) is None
        warm = reader.read()[reader.absorbance.name]["value"]
        assert warm < cool * 0.95, (cool, warm)  # the dye degrades when warm: the reading changed with the state
        with pytest.raises(LimitError):
            reader.temperature.put(60.0)


def test_sila_errors_are_refusals_naming_them_and_the_channel_is_kept():
    with simulated(READER) as sim:
        t = SilaTransport(sim.address, timeout=2.0)
        temp = SilaPoint(feature="PlateReaderControl", property="Temperature", setter="SetTemperature")
        with pytest.raises(RefusedError, match=r"defined execution error OutOfRange: 50\.0 degC") as err:
            t.write(temp, 50.0)  # beyond what the reader accepts
        assert err.value.transport == "sila" and err.value.address == sim.address and "write" in err.value.operation
        generation = t.generation
        assert 20.0 < t.read(temp) < 24.0 and t.generation == generation
        with pytest.raises(TransportError, match=r"has no PlateReaderControl\.Humidity"):
            t.read(SilaPoint(feature="PlateReaderControl", property="Humidity"))
        t.close()


def test_an_undefined_execution_error_fails_the_measurement_and_the_next_one_works():
    with simulated_device(READER) as (reader, sim):
        reader.sample.put("s1")
        sim.inject("bad_status")
        exc = wait_status(reader.trigger())
        assert isinstance(exc, RefusedError) and "UndefinedExecutionError" in str(exc) and "0x2F" in str(exc), exc
        assert exc.operation.startswith("command") and "MeasurePlate" in exc.operation
        assert wait_status(reader.trigger()) is None


def test_garbage_and_a_stall_fail_the_read_naming_it_and_the_next_read_works():
    with simulated_device(READER) as (reader, sim):
        reader.temperature.get()
        garbled, stalled = garbage_then_stall(reader.temperature, sim)
        assert garbled.transport == "sila" and garbled.address == sim.address and garbled.operation.startswith("read")
        assert "no reply in time" in str(stalled) and "Temperature" in stalled.operation


def test_server_killed_mid_measurement_fails_the_step_then_the_device_reconnects():
    with simulated_device(READER, read_time=600) as (reader, sim):  # a long read: ten simulated minutes
        reader.sample.put("s1")
        status = reader.trigger()
        wait_for(lambda: sim.state()["measuring"], what="the read to start")
        sim.kill()
        exc = wait_status(status)
        assert isinstance(exc, TransportError) and exc.address == sim.address, exc
        assert exc.operation.startswith("command") and "MeasurePlate" in exc.operation
        sim.start()
        assert reader.health().ok
        assert reader.temperature.get() > 0


def test_server_killed_mid_read_fails_the_read_and_the_next_read_reconnects():
    with simulated_device(READER) as (reader, sim):
        reader.temperature.get()
        error = killed_mid_read(reader.temperature, sim)
        assert isinstance(error, TransportError) and error.operation.startswith("read"), error
        assert not reader.health().ok and "sila" in reader.health().message
        sim.start()
        assert reader.health().ok


def test_a_lamp_failure_makes_the_reader_unhealthy_and_fails_a_read_in_progress():
    with simulated_device(READER, read_time=600) as (reader, sim):
        assert reader.health().ok
        reader.sample.put("s1")
        status = reader.trigger()
        wait_for(lambda: sim.state()["measuring"], what="the read to start")
        sim.inject("sensor_break")
        exc = wait_status(status)
        assert isinstance(exc, RefusedError) and "flash lamp failed" in str(exc), exc
        assert not reader.health().ok and "lamp_failure" in reader.health().message


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["signals"]["temperature"]["point"].pop("feature"), "feature"),
        (lambda d: d["commands"]["measure_plate"]["point"].update(cmd="MeasurePlate"), "cmd"),
        (lambda d: d["commands"]["measure_plate"]["point"].update(args=["Wavelength"]), "args"),
    ],
)
def test_a_bad_description_is_refused_with_the_field_named(change, message):
    assert_description_refused(READER, change, message)
