"""The device under test of the conformance kit (:mod:`labloop.devkit.conformance`): the device, its optional
simulated endpoint and the timing the checks allow, how to call it (sync, ophyd-async in bluesky's loop), which
setpoints and actions exercise it, and whether its describe() and read() agree.

Split from conformance.py, which keeps the checks themselves and how they run: this is everything a check asks of
the device, in one place.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bluesky import protocols as bp

from .protocols import Move

DEFAULT_TIMEOUT = 10.0
CONFORMANCE_SAMPLE = "conformance-sample"
_MISSING: Any = object()


class CheckFailed(Exception):
    """Raised inside a check: the device does not conform. The message says what is wrong and what to fix."""


class CheckSkipped(Exception):
    """Raised inside a check: it does not apply to this device (the message says why)."""


# -- the device under test -------------------------------------------------------------------------------------------
@dataclass
class Subject:
    """A device under test, its optional simulated endpoint, and the timing the checks allow."""

    device: Any
    endpoint: Any = None
    timeout: float = DEFAULT_TIMEOUT
    grace: float = 1.0
    declared_timeout: bool = True
    hints: dict[str, Any] = field(default_factory=dict)
    _own: Any = field(default=None, init=False, repr=False)  # the device's own reading as a setpoint, once read

    @property
    def name(self) -> str:
        return str(getattr(self.device, "name", type(self.device).__name__))

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(getattr(self.device, "read", None))

    @property
    def wait_bound(self) -> float:
        return self.timeout + self.grace

    # calling the device (sync ophyd or ophyd-async) ---------------------------------------------------------------
    def call(self, fn: Callable[..., Any], *args: Any, resolve: bool = True) -> Any:
        """Call a device method; await its result if it is a coroutine (``resolve``) - in bluesky's event loop."""
        if self.is_async:

            async def run() -> Any:
                out = fn(*args)
                if resolve and inspect.isawaitable(out):
                    out = await out
                return out

            return _in_bluesky_loop(run(), self.wait_bound)
        out = fn(*args)
        if resolve and inspect.isawaitable(out):
            out = _in_bluesky_loop(_awaited(out), self.wait_bound)
        return out

    def prepare(self) -> None:
        """Give stations and instruments a sample to work on (labloop roles refuse to work without one)."""
        sample = getattr(self.device, "sample", None)
        if sample is not None and hasattr(sample, "put") and not sample.get():
            sample.put(CONFORMANCE_SAMPLE)
        prep = self.hints.get("prepare")
        if callable(prep):
            prep(self.device)

    # setpoints ----------------------------------------------------------------------------------------------------
    def setpoint(self) -> Any:
        if "setpoint" in self.hints:
            return self.hints["setpoint"]
        dev = self.device
        positions = tuple(getattr(dev, "positions", ()) or ())
        if getattr(dev, "role", None) == "robot" or (positions and not getattr(dev, "limits", None)):
            if len(positions) >= 2:
                return Move(CONFORMANCE_SAMPLE, positions[0], positions[1])
            return _MISSING
        limits = getattr(dev, "limits", None)
        if isinstance(limits, Mapping) and limits:
            return {k: (float(lo) + float(hi)) / 2 for k, (lo, hi) in limits.items()}
        return self.own_reading()

    @property
    def robot_like(self) -> bool:
        dev = self.device
        return getattr(dev, "role", None) == "robot" or bool(getattr(dev, "positions", None))

    def own_reading(self) -> Any:
        """A device that declares no limits (and no hints) is set to its own current reading: the value of its
        hinted field (or its only field); a station (which takes ``{field: value}`` recipes) gets its hinted fields
        by name. ``_MISSING`` when the device is not Movable or its reading names no such value."""
        if self._own is None:
            self._own = self._read_own()
        return self._own

    def _read_own(self) -> Any:
        dev = self.device
        if self.robot_like or not isinstance(dev, bp.Movable) or not isinstance(dev, bp.Readable):
            return _MISSING
        try:
            reading = dict(self.call(dev.read))
        except Exception:  # noqa: BLE001 - describe_read_agree reports a read() that fails
            return _MISSING
        hints = getattr(dev, "hints", None)
        fields = [f for f in (hints.get("fields", []) if isinstance(hints, Mapping) else []) if f in reading]
        if not fields:
            fields = [dev.name] if dev.name in reading else list(reading)[:1] if len(reading) == 1 else []
        values = {f: reading[f].get("value") if isinstance(reading[f], Mapping) else reading[f] for f in fields}
        if not values:
            return _MISSING
        if getattr(dev, "role", None) == "station" or isinstance(getattr(dev, "limits", None), Mapping):
            prefix = f"{dev.name}_"
            return {f[len(prefix) :] if f.startswith(prefix) else f: v for f, v in values.items()}
        return next(iter(values.values()))

    @property
    def own_setpoint(self) -> bool:
        """Whether the kit exercises set() with the device's own reading (no limits, positions or hints)."""
        return "setpoint" not in self.hints and self._own is not None and self._own is not _MISSING

    def out_of_limits(self) -> list[Any]:
        if "out_of_limits" in self.hints:
            return list(self.hints["out_of_limits"])
        dev = self.device
        positions = tuple(getattr(dev, "positions", ()) or ())
        if getattr(dev, "role", None) == "robot" or (positions and not getattr(dev, "limits", None)):
            if positions:
                return [Move(CONFORMANCE_SAMPLE, positions[0], "__not_a_taught_position__")]
            return []
        limits = getattr(dev, "limits", None)
        valid = self.setpoint()
        if not (isinstance(limits, Mapping) and limits and isinstance(valid, Mapping)):
            return []
        out = []
        for key, (lo, hi) in limits.items():
            span = max(abs(float(hi) - float(lo)), 1.0)
            out.append({**valid, key: float(hi) + span})
            out.append({**valid, key: float(lo) - span})
        return out

    def action(self, kind: str | None = None) -> str | None:
        """The main action: ``set`` (with the valid setpoint) when the device moves, else ``trigger``."""
        if kind:
            return kind
        if isinstance(self.device, bp.Movable) and self.setpoint() is not _MISSING:
            return "set"
        if isinstance(self.device, bp.Triggerable):
            return "trigger"
        return None

    def start(self, kind: str) -> Any:
        """Start an action; returns its Status. Raises what the device raises."""
        self.prepare()
        if kind == "set":
            return self.call(self.device.set, self.setpoint(), resolve=False)
        return self.call(self.device.trigger, resolve=False)

    def describe_action(self, kind: str) -> str:
        if kind != "set":
            return "trigger()"
        value = self.setpoint()
        own = (
            " (its own current reading: it declares no limits and no conformance_hints()['setpoint'])"
            if self.own_setpoint
            else ""
        )
        return f"set({value!r}){own}"

    def run(self, kind: str, what: str) -> float:
        """Start an action and require it to succeed within the declared timeout; returns the seconds it took."""
        t0 = time.monotonic()
        try:
            status = self.start(kind)
        except Exception as exc:  # noqa: BLE001 - any exception is a finding, reported with its type
            raise CheckFailed(
                f"{what}: {self.describe_action(kind)} raised {type(exc).__name__}: {exc} (fix: {kind}() must "
                "return a Status and report errors by failing it; run the work inside the Status, e.g. "
                "LabDevice._run_status)"
            ) from None
        done, error = self.wait(status, self.wait_bound, f"{what}: {self.describe_action(kind)}")
        if not done:
            raise CheckFailed(self._hang_message(f"{what}: the Status of {self.describe_action(kind)}"))
        if error is not None:
            raise CheckFailed(f"{what}: {self.describe_action(kind)} failed: {_one_line(error)}")
        return time.monotonic() - t0

    def wait(self, status: Any, timeout: float, what: str) -> tuple[bool, BaseException | None]:
        """Wait for a Status; returns (done, exception or None). Not a Status -> CheckFailed."""
        if not isinstance(status, bp.Status):
            raise CheckFailed(
                f"{what} returned {type(status).__name__}, not a Status (fix: return an ophyd Status / "
                "ophyd-async AsyncStatus with add_callback, done, success and exception)"
            )
        finished = threading.Event()
        try:
            status.add_callback(lambda *_: finished.set())
        except Exception as exc:  # noqa: BLE001 - any exception is a finding, reported
            raise CheckFailed(f"{what}: its Status.add_callback raised {type(exc).__name__}: {exc}") from None
        deadline = time.monotonic() + timeout
        # Poll as well: not every Status calls back reliably across threads (ophyd-async's wraps an asyncio task).
        while not finished.wait(0.05) and not status.done and time.monotonic() < deadline:
            pass
        if not status.done:
            return False, None
        if status.success:
            return True, None
        try:
            error = status.exception(timeout=0)
        except TypeError:
            error = status.exception()
        return True, error if error is not None else RuntimeError("the Status failed without an exception")

    def _hang_message(self, what: str) -> str:
        declared = (
            f"declared timeout {self.timeout:g} s"
            if self.declared_timeout
            else f"no declared timeout; the kit allowed {self.timeout:g} s"
        )
        return (
            f"{what} was not done {self.wait_bound:g} s after the call ({declared}) (fix: finish or fail the "
            "Status on every path, and give it a timeout: Status(timeout=...) or LabDevice.default_timeout)"
        )

    # endpoint -----------------------------------------------------------------------------------------------------
    def can_inject(self) -> bool:
        return self.endpoint is not None and callable(getattr(self.endpoint, "inject", None))

    def transports(self) -> list[Any]:
        fn = getattr(self.device, "transports", None)
        return list(fn()) if callable(fn) else []

    def clear_faults(self) -> None:
        clear = getattr(self.endpoint, "clear_faults", None)
        if callable(clear):
            clear()


def _in_bluesky_loop(coro: Any, timeout: float) -> Any:
    """Run ``coro`` in bluesky's event loop (where ophyd-async devices live), starting it as a RunEngine would."""
    from bluesky import run_engine

    loop = run_engine.get_bluesky_event_loop()
    if loop is None or not loop.is_running():
        run_engine.RunEngine(context_managers=[])  # creates and starts the loop, exactly as for a real run
        deadline = time.monotonic() + 2.0
        while not run_engine.get_bluesky_event_loop().is_running() and time.monotonic() < deadline:
            time.sleep(0.005)
    return run_engine.call_in_bluesky_event_loop(coro, timeout=timeout)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: " + " / ".join(line.strip() for line in str(exc).splitlines() if line.strip())


# -- describe() and read() agree -----------------------------------------------------------------------------------
def _dtype_problem(key: str, value: Any, desc: Mapping[str, Any]) -> str | None:
    dtype, shape = desc.get("dtype"), desc.get("shape")
    if dtype is None or shape is None:
        return f"{key}: describe() lacks dtype/shape"
    if dtype == "array":
        ndim = getattr(value, "ndim", None)
        if ndim is None:
            if not isinstance(value, (list, tuple)):
                return f"{key}: dtype 'array' but the value is {type(value).__name__}"
            ndim = 1
        if len(shape) != ndim:
            return f"{key}: shape {list(shape)} has {len(shape)} dimension(s), the value has {ndim}"
        return None
    if shape not in ([], ()):
        return f"{key}: dtype {dtype!r} with non-empty shape {list(shape)}"
    ok = {
        "number": lambda v: (
            (isinstance(v, (int, float)) and not isinstance(v, bool))
            or (type(v).__module__ == "numpy" and hasattr(v, "dtype") and v.dtype.kind in "iuf")
        ),
        "integer": lambda v: (
            (isinstance(v, int) and not isinstance(v, bool))
            or (type(v).__module__ == "numpy" and hasattr(v, "dtype") and v.dtype.kind in "iu")
        ),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: (
            isinstance(v, bool)
            or (type(v).__module__ == "numpy" and getattr(v, "dtype", None) is not None and v.dtype.kind == "b")
        ),
    }.get(dtype)
    if ok is None:
        return f"{key}: unknown dtype {dtype!r} (use number, integer, string, boolean or array)"
    if not ok(value):
        return f"{key}: describe() says {dtype!r} but read() gives {type(value).__name__} {value!r}"
    return None


def _streamed(desc: Any) -> bool:
    """A data key whose values are in files (``external: "STREAM:"``, bluesky's StreamAsset protocol): read()
    does not hold it; the device's ``collect_asset_docs`` announces the file."""
    return isinstance(desc, Mapping) and desc.get("external") == "STREAM:"


def _agree(described: Mapping[str, Any], reading: Mapping[str, Any], what: str) -> list[str]:
    problems = []
    missing = sorted(k for k in set(described) - set(reading) if not _streamed(described[k]))
    extra = sorted(set(reading) - set(described))
    if missing:
        problems.append(f"{what}: described but not read: {missing}")
    if extra:
        problems.append(f"{what}: read but not described: {extra}")
    for key in sorted(set(described) & set(reading)):
        r = reading[key]
        if not isinstance(r, Mapping) or "value" not in r or "timestamp" not in r:
            problems.append(f"{what}: {key}: a reading must be {{'value': ..., 'timestamp': ...}}, got {r!r}")
            continue
        p = _dtype_problem(key, r["value"], described[key])
        if p:
            problems.append(f"{what}: {p}")
    return problems


def _describe_read_problems(s: Subject) -> list[str]:
    dev = s.device
    problems = _agree(s.call(dev.describe), s.call(dev.read), "describe()/read()")
    if isinstance(dev, bp.Configurable):
        problems += _agree(
            s.call(dev.describe_configuration),
            s.call(dev.read_configuration),
            "describe_configuration()/read_configuration()",
        )
    return problems


_AGREE_FIX = (
    "(fix: make describe() list exactly the keys read() returns, each with the dtype/shape of its value; "
    "ophyd Components do this for you - put values into Signals instead of overriding read())"
)
