"""Shared by the transport tests: start an example's simulator, build its declarative device, wait on Statuses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from test_agent import wait_for

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


def set_watching(dev: Any, signal: str, recipe: dict[str, Any]) -> list[float]:
    """Run ``dev.set(recipe)`` to completion (with a sample loaded) and return the values ``signal`` took meanwhile
    (the process values a monitor records)."""
    dev.sample.put("s1")
    seen: list[float] = []
    getattr(dev, signal).subscribe(lambda value, **_: seen.append(value), run=False)
    exc = wait_status(dev.set(recipe))
    assert exc is None, exc
    return seen


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
    for kind, kw in (
        ("garbage", {"text": "\x15#?garbled reply"}),
        ("slow", {"delay": 3 * signal.root.transport.timeout}),
    ):
        sim.inject(kind, **kw)
        try:
            signal.get()
        except TransportError as exc:
            errors.append(exc)
        else:
            raise AssertionError(f"a read behind a '{kind}' fault succeeded")
        signal.get()  # the next read works
    return errors[0], errors[1]


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
