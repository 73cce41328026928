"""The driver conformance kit: prove a device driver before it touches hardware.

Over 500 lines, on purpose: it is the list of checks, one short function each, which an integrator reads top to
bottom; handling the device under test (building it, its simulator, timeouts) is in ``subject``.

The checks speak ``bluesky.protocols`` (Readable, Movable, Triggerable, Stoppable), not a base class, so ophyd and
ophyd-async devices both plug in (an ``async def read`` is awaited in bluesky's event loop). labloop's lab roles
add what a scheduler relies on: declared ``limits`` (refused in ``set``), ``health()``, a ``sample`` signal.

Each check has a name, proves one behaviour, and when it fails says what to fix:

====================== ==================================================================================
protocols              the device is Readable and named; which protocols and lab role it satisfies
describe_read_agree    describe() and read() have the same keys (less those streamed to files); values fit dtype/shape
health                 health() answers promptly, with ``ok`` and a message, and says the device is ready
set_completes          set(valid setpoint) returns a Status that succeeds within the declared timeout
trigger_completes      trigger() returns a Status that succeeds within the declared timeout; read() agrees after
limits_refused         every setpoint outside the declared limits is refused (exception or failed Status)
stop_mid_action        stop() during a move/measurement fails its Status promptly; the device works again after
errors_fail_status     a malformed reply fails the Status (with the raw reply in the error), never hangs or passes
slow_reply_times_out   a slow endpoint fails the Status within the declared timeout; the device recovers
reconnect              after the endpoint drops the connection (idle or mid-request) the device works again
====================== ==================================================================================

Fault checks need a simulated endpoint (``endpoint.inject(...)``, ``endpoint.drop_clients()``, see
``labloop_simulators.endpoints``); without one they are skipped, except that ``reconnect`` cuts the driver's own
connections (``device.transports()``). A driver can steer the checks with ``conformance_hints() -> dict``:
``setpoint`` (a safe valid setpoint), ``out_of_limits`` (setpoints that must be refused), ``action`` and
``stop_action`` (``"set"`` or ``"trigger"``: the action the fault checks and ``stop()`` are exercised on; default
``set`` when there is a setpoint), ``prepare`` (a callable run on the device before each action). Without hints
they are derived from the declared ``limits`` (midpoints; one field beyond each bound) and robot ``positions``. A
Movable device that declares neither is still exercised: it is set to its own current reading (its hinted field, or
its only one; a station gets ``{field: value}`` of its hinted fields), which must complete within the timeout too.

Use :func:`check_device` (what ``labloop devices check`` and the pytest plugin call) or :func:`run_conformance` on a
device you built yourself. The device under test (calling it, its setpoints and actions) is :mod:`.subject`.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from bluesky import protocols as bp

from labloop import plugins
from labloop.errors import LabloopError

from .subject import (
    _AGREE_FIX,
    _MISSING,
    DEFAULT_TIMEOUT,
    CheckFailed,
    CheckSkipped,
    Subject,
    _describe_read_problems,
    _one_line,
    _streamed,
)


# -- results ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: ``"pass"``, ``"fail"`` or ``"skip"`` (not applicable, with the reason)."""

    name: str
    outcome: str
    message: str
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


@dataclass
class Report:
    """All check results for one device."""

    target: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.outcome == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failures

    def __getitem__(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def summary(self) -> str:
        lines = [f"conformance of {self.target}:"]
        lines += [f"  {r.outcome.upper():4} {r.name}: {r.message}" for r in self.results]
        return "\n".join(lines)

    def assert_ok(self) -> None:
        """Raise AssertionError naming every failed check (for pytest)."""
        if not self.ok:
            raise AssertionError(self.summary())


# -- the checks ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    name: str
    doc: str
    fn: Callable[[Subject], str]


CHECKS: list[Check] = []


def check(name: str, doc: str) -> Callable[[Callable[[Subject], str]], Callable[[Subject], str]]:
    def deco(fn: Callable[[Subject], str]) -> Callable[[Subject], str]:
        CHECKS.append(Check(name, doc, fn))
        return fn

    return deco


def check_names() -> list[str]:
    return [c.name for c in CHECKS]


_PROTOCOLS = (
    ("Readable", bp.Readable),
    ("Movable", bp.Movable),
    ("Triggerable", bp.Triggerable),
    ("Stoppable", bp.Stoppable),
    ("Configurable", bp.Configurable),
)


@check("protocols", "the device is Readable and named; lists the bluesky protocols and lab role it satisfies")
def _protocols(s: Subject) -> str:
    dev = s.device
    have = [n for n, proto in _PROTOCOLS if isinstance(dev, proto)]
    if "Readable" not in have:
        raise CheckFailed(
            "the device has no read()/describe(): every labloop device must be bluesky.protocols."
            "Readable (fix: subclass labloop_devices.base.Station/Instrument/Robot, or implement "
            "read() and describe())"
        )
    name = getattr(dev, "name", None)
    if not isinstance(name, str) or not name:
        raise CheckFailed(
            f"the device's name is {name!r} (fix: pass name=... to the constructor; documents and the "
            "store key readings by it)"
        )
    role = getattr(dev, "role", None)
    msg = f"{', '.join(have)}" + (f"; lab role {role}" if role else "")
    if not s.declared_timeout:
        msg += f"; no default_timeout declared (the checks allow {s.timeout:g} s: declare one)"
    return msg


@check("describe_read_agree", "describe() and read() have the same keys; each value fits its declared dtype/shape")
def _describe_read(s: Subject) -> str:
    if not isinstance(s.device, bp.Readable):
        raise CheckSkipped("not Readable")
    problems = _describe_read_problems(s)
    if problems:
        raise CheckFailed("; ".join(problems) + " " + _AGREE_FIX)
    described = s.call(s.device.describe)
    streamed = sum(_streamed(v) for v in described.values())
    n = len(described) - streamed
    return f"{n} key{'' if n == 1 else 's'} agree" + (f" ({streamed} more written to files)" if streamed else "")


@check("health", "health() answers within the timeout with ok/message, and the device is ready")
def _health(s: Subject) -> str:
    fn = getattr(s.device, "health", None)
    if not callable(fn):
        raise CheckSkipped(
            "no health(): fine for a plain bluesky device; a labloop device says whether it can "
            "work now (the scheduler takes failing stations out of service)"
        )
    t0 = time.monotonic()
    h = s.call(fn)
    took = time.monotonic() - t0
    ok, message = getattr(h, "ok", None), getattr(h, "message", None)
    if not isinstance(ok, bool) or not isinstance(message, str):
        raise CheckFailed(f"health() returned {h!r} (fix: return labloop_devices.base.Health(ok, message))")
    if took > s.timeout:
        raise CheckFailed(
            f"health() took {took:.2f} s, more than the declared timeout {s.timeout:g} s (fix: "
            "answer from a quick status query with a short timeout)"
        )
    if not ok:
        raise CheckFailed(
            f"the device reports it is not ready: {message} (fix: bring the endpoint into a "
            "ready state, or make health() report readiness correctly)"
        )
    return message


@check("set_completes", "set(valid setpoint) returns a Status that succeeds within the declared timeout")
def _set_completes(s: Subject) -> str:
    if not isinstance(s.device, bp.Movable):
        raise CheckSkipped("not Movable (no set())")
    if s.setpoint() is _MISSING:
        if s.robot_like:
            raise CheckSkipped("no valid setpoint known: declare positions or conformance_hints()['setpoint']")
        raise CheckFailed(
            "set() cannot be exercised: the device declares no limits and no "
            "conformance_hints()['setpoint'], and its reading names no current value to set it to "
            "(fix: declare limits = {field: (low, high)}, or give conformance_hints() a safe "
            "'setpoint')"
        )
    took = s.run("set", "set_completes")
    return f"{s.describe_action('set')} succeeded in {took:.2f} s"


@check("trigger_completes", "trigger() returns a Status that succeeds within the declared timeout; read() agrees")
def _trigger_completes(s: Subject) -> str:
    if not isinstance(s.device, bp.Triggerable):
        raise CheckSkipped("not Triggerable")
    took = s.run("trigger", "trigger_completes")
    if isinstance(s.device, bp.Readable):
        problems = _describe_read_problems(s)
        if problems:
            raise CheckFailed("after trigger(): " + "; ".join(problems) + " " + _AGREE_FIX)
    return f"trigger() succeeded in {took:.2f} s"


@check("limits_refused", "every setpoint outside the declared limits is refused (exception or failed Status)")
def _limits_refused(s: Subject) -> str:
    if not isinstance(s.device, bp.Movable):
        raise CheckSkipped("not Movable (no set())")
    bad = s.out_of_limits()
    if not bad:
        raise CheckSkipped(
            "declares no limits or positions (fix for a labloop device: declare limits = {field: (low, high)})"
        )
    how = []
    for value in bad:
        s.prepare()
        try:
            status = s.call(s.device.set, value, resolve=False)
        except Exception as exc:  # noqa: BLE001 - refusing at once is the preferred answer
            how.append(type(exc).__name__)
            continue
        done, error = s.wait(status, s.wait_bound, f"set({value!r})")
        if not done:
            raise CheckFailed(s._hang_message(f"the Status of out-of-limits set({value!r})"))
        if error is None:
            raise CheckFailed(
                f"set({value!r}) lies outside the declared limits but succeeded (fix: check every "
                "setpoint against the limits in set() before anything moves: "
                "labloop_devices.base.check_limits)"
            )
        how.append(f"failed Status ({type(error).__name__})")
    return f"{len(bad)} out-of-limit setpoints refused: {', '.join(sorted(set(how)))}"


@check("stop_mid_action", "stop() during a move/measurement fails its Status promptly; the device works again")
def _stop_mid_action(s: Subject) -> str:
    if not isinstance(s.device, bp.Stoppable):
        raise CheckSkipped("not Stoppable (no stop())")
    kind = s.action(s.hints.get("stop_action"))
    if kind is None:
        raise CheckSkipped("no action to stop (neither a valid setpoint nor trigger())")
    try:
        status = s.start(kind)
    except Exception as exc:  # noqa: BLE001 - any exception is a finding, reported
        raise CheckFailed(f"{s.describe_action(kind)} raised {_one_line(exc)} before stop() could be tried") from None
    if getattr(status, "done", False):
        raise CheckSkipped(
            f"{s.describe_action(kind)} was already done when it returned: nothing to stop (give "
            "the kit a longer action via conformance_hints()['stop_action'/'setpoint'])"
        )
    t0 = time.monotonic()
    try:
        s.call(s.device.stop, resolve=True)
    except Exception as exc:  # noqa: BLE001 - any exception is a finding, reported
        raise CheckFailed(
            f"stop() raised {_one_line(exc)} (fix: stop() must not raise; halt what is running and fail its Status)"
        ) from None
    done, error = s.wait(status, s.wait_bound, s.describe_action(kind))
    if not done:
        raise CheckFailed(
            f"the Status of {s.describe_action(kind)} was still not done {s.wait_bound:g} s after "
            "stop() (fix: stop() must end the action in progress - halt it and fail its Status)"
        )
    took = time.monotonic() - t0
    if error is None:
        if took < 0.05:
            raise CheckSkipped(
                f"{s.describe_action(kind)} finished as stop() was called ({took:.3f} s): too short "
                "to stop (give the kit a longer action via conformance_hints())"
            )
        raise CheckFailed(
            f"stop() did not stop {s.describe_action(kind)}: its Status succeeded {took:.2f} s later "
            "(fix: stop() must halt the action in progress and fail its Status, as ophyd does for "
            "stop(success=False))"
        )
    try:
        s.run(kind, "after stop()")
    except CheckFailed as cf:
        raise CheckFailed(
            f"{cf} (fix: a stop request must not outlive the action it stopped; clear it when a new action starts)"
        ) from None
    return f"stop() failed {s.describe_action(kind)} in {took:.2f} s ({type(error).__name__}); the next one succeeded"


def _fault_action(s: Subject) -> str:
    kind = s.action(s.hints.get("action"))
    if kind is None:
        raise CheckSkipped("no action to exercise (neither a valid setpoint nor trigger())")
    return kind


@check("errors_fail_status", "a malformed reply fails the Status with the raw reply in the error; no hang, no pass")
def _errors_fail_status(s: Subject) -> str:
    if not s.can_inject():
        raise CheckSkipped("no simulated endpoint to send a malformed reply (run against the driver's simulator)")
    kind = _fault_action(s)
    s.run(kind, "before the fault")  # connected and working
    marker = "garbled reply"
    s.endpoint.inject("garbage", text=f"\x15#?{marker} 0x7f")
    try:
        try:
            status = s.start(kind)
        except Exception as exc:  # noqa: BLE001 - any exception is a finding, reported
            raise CheckFailed(
                f"with a malformed reply, {s.describe_action(kind)} raised {_one_line(exc)} instead "
                "of returning a failed Status (fix: parse replies inside the Status' work)"
            ) from None
        done, error = s.wait(status, s.wait_bound, s.describe_action(kind))
    finally:
        s.clear_faults()
    if not done:
        raise CheckFailed(s._hang_message(f"with a malformed reply, the Status of {s.describe_action(kind)}"))
    if error is None:
        raise CheckFailed(
            f"the endpoint answered garbage ({marker!r}) and {s.describe_action(kind)} still "
            "succeeded (fix: validate every reply against the protocol and fail on anything else)"
        )
    if marker not in str(error):
        raise CheckFailed(
            f"the error does not show the raw reply: {_one_line(error)} (fix: put the raw reply in the "
            "error, e.g. labloop_devices.tcp.ReplyError)"
        )
    s.run(kind, "after a malformed reply, the next action")
    return f"failed with the raw reply ({type(error).__name__}); the next {kind} succeeded"


@check("slow_reply_times_out", "a slow endpoint fails the Status within the declared timeout; the device recovers")
def _slow_reply(s: Subject) -> str:
    if not s.can_inject():
        raise CheckSkipped("no simulated endpoint to slow down (run against the driver's simulator)")
    kind = _fault_action(s)
    s.run(kind, "before the fault")
    timeouts = [float(t.timeout) for t in s.transports() if isinstance(getattr(t, "timeout", None), (int, float))]
    # Just over the transport timeout, so that the late reply arrives while the recovery action runs: a driver that
    # did not drop the connection after the timeout would read it as the answer to its next question.
    delay = 1.5 * max(timeouts) if timeouts else s.wait_bound
    s.endpoint.inject("slow", delay=delay)
    t0 = time.monotonic()
    try:
        status = s.start(kind)
        done, exc = s.wait(status, s.wait_bound, s.describe_action(kind))
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - any exception is a finding, reported
        raise CheckFailed(f"with a slow reply, {s.describe_action(kind)} raised {_one_line(exc)}") from None
    finally:
        s.clear_faults()
    took = time.monotonic() - t0
    if not done:
        raise CheckFailed(
            s._hang_message(f"with a reply {delay:g} s late, the Status of {s.describe_action(kind)}")
            + " (and give every request a timeout: labloop_devices.tcp.LineTransport)"
        )
    s.run(kind, "after a slow reply, the next action")
    ended = f"failed ({type(exc).__name__})" if exc is not None else "succeeded"
    return f"with a reply {delay:g} s late the Status {ended} in {took:.2f} s; the next {kind} succeeded"


@check("reconnect", "after the endpoint drops the connection (idle or mid-request), the device works again")
def _reconnect(s: Subject) -> str:
    transports = s.transports()
    drop = getattr(s.endpoint, "drop_clients", None)
    if not transports and not callable(drop):
        raise CheckSkipped("no transport (device.transports()) and no endpoint: nothing to reconnect")
    kind = _fault_action(s)
    s.run(kind, "before the drop")
    if callable(drop):
        drop()
        how = "the endpoint dropped its clients"
    else:
        for t in transports:
            t.sever()
        how = "the connections were cut"
    time.sleep(0.05)
    try:
        s.run(kind, f"after {how}")
    except CheckFailed as cf:
        raise CheckFailed(
            f"{cf} (fix: detect the dropped connection and reconnect before the next request, as "
            "labloop_devices.tcp.LineTransport does)"
        ) from None
    msg = f"{how}; the next {kind} reconnected and succeeded"
    if s.can_inject():
        s.endpoint.inject("disconnect")
        try:
            status = s.start(kind)
            done, _ = s.wait(status, s.wait_bound, s.describe_action(kind))
        except CheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - any exception is a finding, reported
            raise CheckFailed(
                f"when the endpoint hung up mid-request, {s.describe_action(kind)} raised "
                f"{_one_line(exc)} instead of failing its Status"
            ) from None
        finally:
            s.clear_faults()
        if not done:
            raise CheckFailed(
                s._hang_message(f"when the endpoint hung up mid-request, the Status of {s.describe_action(kind)}")
            )
        s.run(kind, "after a hang-up mid-request, the next action")
        msg += "; after a hang-up mid-request too"
    return msg


# -- running ---------------------------------------------------------------------------------------------------------
def _run_one(chk: Check, subject: Subject, bound: float) -> CheckResult:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["message"] = chk.fn(subject)
            box["outcome"] = "pass"
        except CheckSkipped as exc:
            box.update(outcome="skip", message=str(exc))
        except CheckFailed as exc:
            box.update(outcome="fail", message=str(exc))
        except Exception as exc:  # noqa: BLE001 - a device bug must become a failed check, not a crash
            box.update(
                outcome="fail",
                message=f"the device raised {_one_line(exc)} (fix: a device reports errors "
                "as LabloopError / failed Statuses, never as unexpected exceptions)",
            )

    t0 = time.monotonic()
    worker = threading.Thread(target=target, name=f"conformance-{chk.name}", daemon=True)
    worker.start()
    worker.join(bound)
    took = time.monotonic() - t0
    if worker.is_alive():
        return CheckResult(
            chk.name,
            "fail",
            f"the check did not finish within {bound:g} s: a device call blocks "
            "(fix: never block in describe/read/set/trigger/stop/health; do the work in a Status "
            "with a timeout)",
            took,
        )
    return CheckResult(chk.name, box["outcome"], box["message"], took)


def _select(only: Iterable[str] | None) -> list[Check]:
    if not only:
        return list(CHECKS)
    only = list(only)
    unknown = [n for n in only if n not in check_names()]
    if unknown:
        raise LabloopError(f"unknown conformance check(s) {unknown}", f"use some of: {', '.join(check_names())}")
    return [c for c in CHECKS if c.name in only]


def run_conformance(
    device: Any,
    *,
    endpoint: Any = None,
    timeout: float | None = None,
    grace: float = 1.0,
    only: Iterable[str] | None = None,
    hints: Mapping[str, Any] | None = None,
    target: str | None = None,
) -> Report:
    """Run the checks on a constructed device (and its simulated endpoint, if any); never raises for a bad device."""
    declared = timeout if timeout is not None else getattr(device, "default_timeout", None)
    all_hints: dict[str, Any] = {}
    hint_fn = getattr(device, "conformance_hints", None)
    if callable(hint_fn):
        all_hints.update(hint_fn())
    all_hints.update(hints or {})
    subject = Subject(
        device, endpoint, float(declared) if declared else DEFAULT_TIMEOUT, grace, bool(declared), all_hints
    )
    bound = 4 * subject.wait_bound + 5.0
    report = Report(target or subject.name)
    for chk in _select(only):
        report.results.append(_run_one(chk, subject, bound))
        subject.clear_faults()
    return report


def _load_target(target: Any) -> tuple[Any, str]:
    if isinstance(target, str):
        return plugins.load(target, "labloop.devices"), target
    return target, getattr(target, "__qualname__", type(target).__name__)


def check_device(
    target: Any,
    config: Mapping[str, Any] | None = None,
    *,
    simulator: bool = True,
    timeout: float | None = None,
    grace: float = 1.0,
    only: Iterable[str] | None = None,
    name: str = "dut",
) -> Report:
    """Build a driver and run the checks on it.

    ``target``: a ``module:attr`` path or ``labloop.devices`` entry point name, a device class/factory, or a
    device. ``config``: constructor options (``simulator_options``: options of the simulated endpoint). When the
    driver declares a ``simulator`` (``module:attr`` of an endpoint) and ``config`` names no ``host``, the endpoint
    is started on loopback and the driver pointed at it; ``simulator=False`` never starts one.
    """
    _select(only)  # unknown check names are a usage error, before anything is built
    obj, label = _load_target(target)
    config = dict(config or {})
    sim_options = dict(config.pop("simulator_options", None) or {})
    if not inspect.isclass(obj) and (isinstance(obj, bp.Readable) or not callable(obj)):
        return run_conformance(obj, timeout=timeout, grace=grace, only=only, target=label)
    endpoint = None
    sim_ref = getattr(obj, "simulator", None)
    if simulator and isinstance(sim_ref, str) and "host" not in config:
        endpoint_cls = plugins.load(sim_ref, "labloop.simulators")
        endpoint = endpoint_cls(**sim_options)
        endpoint.start()
        config = {**endpoint.connection_kwargs(), **config}
    device = None
    try:
        try:
            # a class or factory here (mypy's narrowing by the test above leaves `object`)
            device = cast("Callable[..., Any]", obj)(name=config.pop("name", name), **config)
        except Exception as exc:  # noqa: BLE001 - a driver that cannot be built fails the first check, readably
            return Report(
                label,
                [
                    CheckResult(
                        "construct",
                        "fail",
                        f"{label}(**config) raised {_one_line(exc)} "
                        "(fix: check the config keys against the driver's constructor; a "
                        "constructor must not touch the hardware)",
                    )
                ],
            )
        report = run_conformance(device, endpoint=endpoint, timeout=timeout, grace=grace, only=only, target=label)
        report.results.insert(
            0,
            CheckResult(
                "construct",
                "pass",
                f"built {type(device).__name__}" + (f" against its simulator {sim_ref}" if endpoint else ""),
            ),
        )
        return report
    finally:
        disconnect = getattr(device, "disconnect", None)
        if callable(disconnect):
            try:
                disconnect()
            except Exception:  # noqa: BLE001 - cleanup: the report is already made
                pass
        if endpoint is not None:
            endpoint.close()
