"""Shared by the transport tests: start an example's simulator, build its declarative device, wait on Statuses."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from labloop.declarative import device, load_spec
from labloop.transports.simulation import SimulatorProcess
from test_agent import wait_for  # noqa: F401 - re-exported for the transport tests

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
