"""bluesky plans for the steps of a trial: plain plans a bluesky user recognizes.

Each step is one run, tagged (by one wrapper, :func:`tagged`) with campaign, trial, sample and step ids, so every
document can be traced to the sample it describes. Process streams are ``monitor``-ed signals of the run; steps
that consume a sample (synthesis) run with ``rewindable=False`` so a pause or a suspender never replays a
deposition. ``timeout`` (wall seconds) turns a device that never answers into a failed step instead of a hang.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Mapping
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import Msg

Plan = Generator[Msg, Any, Any]


def tagged(plan: Plan, md: Mapping[str, Any]) -> Plan:
    """Add ``md`` (campaign/trial/sample/step ids) to the start document of every run in ``plan``."""
    return (yield from bpp.inject_md_wrapper(plan, dict(md)))


def _set_and_wait(obj: Any, value: Any, timeout: float | None) -> Plan:
    group = str(uuid.uuid4())
    yield from bps.abs_set(obj, value, group=group)
    yield from bps.wait(group=group, timeout=timeout)


def _trigger_and_read(device: Any, timeout: float | None) -> Plan:
    group = str(uuid.uuid4())
    yield from bps.trigger(device, group=group)
    yield from bps.wait(group=group, timeout=timeout)
    yield from bps.create("primary")
    yield from bps.read(device)
    yield from bps.save()


def transfer(robot: Any, move: Any, source: Any = None, destination: Any = None,
             timeout: float | None = None) -> Plan:
    """Move a sample with the robot, then record where it is: the stations' ``sample`` signals follow the move."""

    @bpp.run_decorator(md={"plan_name": "transfer", "source": move.source, "destination": move.destination})
    def inner() -> Plan:
        yield from _set_and_wait(robot, move, timeout)
        if source is not None and hasattr(source, "sample"):
            yield from bps.abs_set(source.sample, "", wait=True)
        if destination is not None and hasattr(destination, "sample"):
            yield from bps.abs_set(destination.sample, move.sample, wait=True)
        yield from bps.trigger_and_read([robot])

    return (yield from inner())


def synthesize(station: Any, recipe: Mapping[str, Any], timeout: float | None = None) -> Plan:
    """Run a recipe on a station, recording its process streams; never rewound (it consumes the sample)."""
    signals = [getattr(station, n) for n in getattr(station, "process_signals", ())]

    @bpp.run_decorator(md={"plan_name": "synthesize", "recipe": dict(recipe), "station": station.name})
    def inner() -> Plan:
        for sig in signals:
            yield from bps.monitor(sig, name=sig.name)
        yield from _set_and_wait(station, dict(recipe), timeout)
        for sig in signals:
            yield from bps.unmonitor(sig)
        yield from bps.trigger_and_read([station])

    return (yield from bpp.rewindable_wrapper(inner(), False))


def measure(instrument: Any, timeout: float | None = None) -> Plan:
    """Trigger the instrument on the sample it holds and read it (one event in the 'primary' stream)."""

    @bpp.run_decorator(md={"plan_name": "measure", "instrument": instrument.name})
    def inner() -> Plan:
        yield from _trigger_and_read(instrument, timeout)

    return (yield from inner())
