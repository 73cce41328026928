"""Shared by the transport tests: start an example's simulator, build its declarative device, wait on Statuses."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from labloop.declarative import device, load_spec
from labloop.transports.simulation import SimulatorProcess

EXAMPLES = Path(__file__).resolve().parent.parent / "devices" / "examples"


def example(name: str) -> Path:
    return EXAMPLES / name


@contextmanager
def simulated(name: str, **options: Any) -> Iterator[SimulatorProcess]:
    spec = load_spec(example(name))
    assert spec.simulation is not None
    with SimulatorProcess(spec.simulation.server, {**spec.simulation.options, **options}) as sim:
        yield sim


@contextmanager
def simulated_device(name: str, dev_name: str = "dut", **options: Any) -> Iterator[tuple[Any, SimulatorProcess]]:
    with simulated(name, **options) as sim:
        dev = device(dev_name, file=example(name), address=sim.address)
        try:
            yield dev, sim
        finally:
            dev.disconnect()


def wait_status(status: Any, timeout: float = 30.0) -> BaseException | None:
    """The Status' exception (None when it succeeded); fails the test if it never finishes."""
    done = threading.Event()
    status.add_callback(lambda *_: done.set())
    assert done.wait(timeout), "the Status never finished (a hang)"
    return None if status.success else status.exception()


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def killed_mid_read(signal: Any, sim: SimulatorProcess) -> BaseException | None:
    """Read ``signal`` while its simulator swallows the request, kill the simulator with the request in flight
    (the instrument losing power mid-read), and return what the read raised (None if it returned)."""
    transport = signal.root.transport
    sim.inject("silent")
    box: dict[str, BaseException] = {}

    def read() -> None:
        try:
            signal.get()
        except Exception as exc:  # noqa: BLE001 - returned to the test, which says what it expects
            box["error"] = exc

    t = threading.Thread(target=read)
    t.start()
    wait_for(lambda: not _free(transport._lock), what="the read to be in flight")
    sim.kill()
    t.join(10)
    assert not t.is_alive(), "the read never ended after its server was killed"
    return box.get("error")


def _free(lock: Any) -> bool:
    if lock.acquire(blocking=False):
        lock.release()
        return True
    return False


def garbage_then_stall(signal: Any, sim: SimulatorProcess) -> tuple[BaseException, BaseException]:
    """Read ``signal`` once behind a garbled reply and once behind a reply 3 timeouts late; after each, the next
    read must work (the device reconnected). Returns the two errors for the test to inspect."""
    from labloop.transports.base import TransportError

    errors = []
    for kind, kw in (("garbage", {"text": "\x15#?garbled reply"}),
                     ("slow", {"delay": 3 * signal.root.transport.timeout})):
        sim.inject(kind, **kw)
        try:
            signal.get()
        except TransportError as exc:
            errors.append(exc)
        else:
            raise AssertionError(f"a read behind a '{kind}' fault succeeded")
        signal.get()  # the next read works
    return errors[0], errors[1]


FAULT_CHECKS = ("set_completes", "errors_fail_status", "slow_reply_times_out", "reconnect", "stop_mid_action")


def assert_conformant(name: str) -> None:
    """The example ``name`` passes the conformance kit against its simulator, fault checks included (not skipped)."""
    from labloop.devkit.instruments import check_file

    report = check_file(example(name), simulated=True)
    report.assert_ok()
    for check in FAULT_CHECKS:
        assert report[check].passed, report.summary()


def assert_conformant_through_agent(name: str, simulator: str) -> None:
    """`labloop devices check FILE --simulated --remote`: served by a real agent process, checked through its proxy."""
    from typer.testing import CliRunner

    from labloop.cli import app

    only = [a for c in ("set_completes", "reconnect", "errors_fail_status") for a in ("--only", c)]
    result = CliRunner().invoke(app, ["devices", "check", str(example(name)), "--simulated", "--remote", *only])
    assert result.exit_code == 0, result.output
    assert "all checks passed" in result.output and simulator in result.output and "labloop agent" in result.output


def assert_description_refused(name: str, change: Any, message: str) -> None:
    """``change`` (a function editing the parsed YAML) makes the description fail to load, naming ``message``."""
    import pytest
    import yaml

    from labloop.errors import SpecError

    data = yaml.safe_load(example(name).read_text())
    change(data)
    with pytest.raises(SpecError, match=message):
        load_spec(data)
    with pytest.raises(SpecError):
        device("x", spec=data)


def raises_device_error(fn: Any) -> bool:
    from labloop.errors import DeviceError

    try:
        fn()
    except DeviceError:
        return True
    return False
