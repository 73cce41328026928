"""bluesky plans for the steps of a trial: plain plans a bluesky user recognizes.

Each step is one run, tagged with campaign, trial, sample and step ids (``md``, or the :func:`tagged` wrapper for
plans from elsewhere), so every document can be traced to the sample it describes. Process streams are
``monitor``-ed signals of the run; steps that consume a sample (synthesis) run with ``rewindable=False`` so a pause
or a suspender never replays a deposition. ``timeout`` (wall seconds) turns a device that never answers into a
failed step instead of a hang.

Why bare ``Msg`` objects instead of ``bluesky.plan_stubs``: every stub and preprocessor builds a ``Plan`` wrapper
that formats the whole call stack (for its "never iterated" warning), milliseconds per step that a lab pays on
every step; the messages, and so the documents, are the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Mapping
from typing import Any, cast

import bluesky.preprocessors as bpp
from bluesky.utils import Msg, RequestAbort, RequestStop, RunEngineControlException, RunEngineInterrupted
from ophyd.utils import StatusTimeoutError
from ophyd.utils.errors import UnknownStatusFailure

from labloop.errors import LabloopError

Plan = Generator[Msg, Any, Any]


def tagged(plan: Plan, md: Mapping[str, Any]) -> Plan:
    """Add ``md`` (campaign/trial/sample/step ids) to the start document of every run in ``plan``."""
    return (yield from bpp.inject_md_wrapper(plan, dict(md)))


def _run(body: Plan, md: Mapping[str, Any]) -> Plan:
    """One run around ``body``, closed with the right exit status if it fails (what ``run_wrapper`` does)."""
    yield Msg("open_run", **md)
    try:
        ret = yield from body
    except RunEngineControlException as exc:
        # its subclasses (RequestAbort, RequestStop) carry the exit status; the base class does not declare it
        yield Msg("close_run", exit_status=cast("RequestAbort | RequestStop", exc).exit_status, reason=None)
        raise
    except Exception as exc:
        # the reason the store records too (not the repr of a failed Status): the stream's step_end carries it
        yield Msg("close_run", exit_status="fail", reason=describe_failure(exc))
        raise
    yield Msg("close_run", exit_status=None, reason=None)
    return ret


def describe_failure(exc: BaseException) -> str:
    """A one-line reason from whatever a plan raised (FailedStatus wraps the device's own exception)."""
    inner: Any = exc
    for _ in range(4):
        status = inner.args[0] if getattr(inner, "args", None) else None
        nested = None
        if status is not None and hasattr(status, "exception"):
            try:
                nested = status.exception()
            except Exception:  # noqa: BLE001 - a Status that cannot say why: the cause stands
                nested = None
        nested = nested or inner.__cause__
        if nested is None or nested is inner:
            break
        inner = nested
    if isinstance(inner, (StatusTimeoutError, TimeoutError)):
        return f"timeout: {inner or 'the device did not finish in time'}"
    if isinstance(inner, RunEngineInterrupted) or isinstance(exc, RunEngineInterrupted):
        return "halted by the emergency stop"
    if isinstance(inner, UnknownStatusFailure):
        return "device reported failure without a reason"
    if isinstance(inner, LabloopError):
        return inner.problem
    return f"{type(inner).__name__}: {inner}"


def _set_and_wait(obj: Any, value: Any, timeout: float | None) -> Plan:
    group = str(uuid.uuid4())
    yield Msg("set", obj, value, group=group)
    yield Msg("wait", None, group=group, timeout=timeout)


def _read_event(devices: list[Any], stream: str = "primary") -> Plan:
    yield Msg("create", None, name=stream)
    for d in devices:
        yield Msg("read", d)
    yield Msg("save")


def _trigger_and_read(devices: list[Any], timeout: float | None) -> Plan:
    group = str(uuid.uuid4())
    for d in devices:
        yield Msg("trigger", d, group=group)
    yield Msg("wait", None, group=group, timeout=timeout)
    yield from _read_event(devices)


def transfer(
    robot: Any,
    move: Any,
    source: Any = None,
    destination: Any = None,
    timeout: float | None = None,
    md: Mapping[str, Any] | None = None,
) -> Plan:
    """Move a sample with the robot, then record where it is: the stations' ``sample`` signals follow the move (a
    station with several slots has a ``samples`` list instead: the move adds the sample to the destination's and
    takes it out of the source's, leaving the other samples of its batch where they are)."""

    def inner() -> Plan:
        yield from _set_and_wait(robot, move, timeout)
        if source is not None and hasattr(source, "samples"):
            held = [s for s in (source.samples.get() or []) if s != move.sample]
            yield from _set_and_wait(source.samples, held, None)
        elif source is not None and hasattr(source, "sample"):
            yield from _set_and_wait(source.sample, "", None)
        if destination is not None and hasattr(destination, "samples"):
            held = list(destination.samples.get() or [])
            yield from _set_and_wait(destination.samples, held if move.sample in held else [*held, move.sample], None)
        elif destination is not None and hasattr(destination, "sample"):
            yield from _set_and_wait(destination.sample, move.sample, None)
        yield from _trigger_and_read([robot], None)

    return (
        yield from _run(
            inner(), {"plan_name": "transfer", "source": move.source, "destination": move.destination, **(md or {})}
        )
    )


def synthesize(
    station: Any, recipe: Mapping[str, Any], timeout: float | None = None, md: Mapping[str, Any] | None = None
) -> Plan:
    """Run a recipe on a station, recording its process streams; never rewound (it consumes the sample): the
    RunEngine's rewindable setting is off for this run and restored after it (``rewindable_wrapper``'s logic)."""
    signals = [getattr(station, n) for n in getattr(station, "process_signals", ())]

    def inner() -> Plan:
        for sig in signals:
            yield Msg("monitor", sig, name=sig.name)
        yield from _set_and_wait(station, dict(recipe), timeout)
        for sig in signals:
            yield Msg("unmonitor", sig)
        yield from _trigger_and_read([station], None)

    initial = yield Msg("rewindable", None, None)
    yield Msg("rewindable", None, False)
    restore = True
    try:
        return (
            yield from _run(
                inner(), {"plan_name": "synthesize", "recipe": dict(recipe), "station": station.name, **(md or {})}
            )
        )
    except GeneratorExit:  # the RunEngine halted and closed the plan: no more messages may be sent
        restore = False
        raise
    finally:
        if restore:
            yield Msg("rewindable", None, initial)


def measure(instrument: Any, timeout: float | None = None, md: Mapping[str, Any] | None = None) -> Plan:
    """Trigger the instrument on the sample it holds and read it (one event in the 'primary' stream)."""
    return (
        yield from _run(
            _trigger_and_read([instrument], timeout),
            {"plan_name": "measure", "instrument": instrument.name, **(md or {})},
        )
    )


def calibrate(
    device: Any, reference: float | None = None, timeout: float | None = None, md: Mapping[str, Any] | None = None
) -> Plan:
    """Calibrate a device against its reference: ``set`` its ``calibrator`` to the reference value (None: the
    device's own standard), wait, and read the fitted result (one event in 'primary'). The calibration then in force
    is the device's ``calibration`` dict."""

    def inner() -> Plan:
        yield from _set_and_wait(device.calibrator, reference, timeout)
        yield from _read_event([device.calibrator])

    return (
        yield from _run(
            inner(), {"plan_name": "calibrate", "device": device.name, "reference": reference, **(md or {})}
        )
    )
