"""Build an ophyd device from an instrument description (:mod:`labloop.declarative.schema`).

Why ophyd (synchronous) and not ophyd-async: the scheduler, the conformance kit, ``labloop agent`` and every bundled
driver speak ophyd's threaded Status; each protocol library here has a synchronous client (pymodbus, pyvisa,
pyserial, asyncua.sync, caproto.threading, sila2), and one worker thread per set/trigger keeps bluesky's event loop
free. The built class subclasses the bundled ``Station``/``Instrument`` bases, so limits are refused in ``set()``
before anything is written and errors become failed Statuses, exactly as for a hand-written driver.

Signals read through the transport when read (``PointSignal``); an instrument's measured signals hold what the last
``trigger()`` measured. Writes go through limit checks first. A completion rule is polled (reading the process
signals each time, so monitors see them) until it holds, ``stop()`` is called, or the device's timeout passes.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from ophyd import Component as Cpt
from ophyd import Signal

from labloop import plugins
from labloop.device_base import Health, Instrument, LabDevice, Station
from labloop.errors import DeviceError, LimitError, SpecError
from labloop.transports import transport_class

from .schema import InstrumentSpec, SetpointSpec, SignalSpec, load_spec


def _limits(spec: InstrumentSpec, sp: SetpointSpec) -> tuple[float, float]:
    """A setpoint's limits: its own, or its signal's."""
    if sp.limits is not None:
        return sp.limits
    limits = spec.signals[sp.signal].limits if sp.signal is not None else None
    assert limits is not None, "the schema refuses a setpoint without limits (InstrumentSpec)"
    return limits


_EMPTY = {"number": math.nan, "integer": 0, "boolean": False, "string": ""}


class PointSignal(Signal):
    """One value of the instrument: reads through the device's transport (``live``), or holds what the last
    measurement put there (an instrument's results). ``put`` checks the limits, then writes through."""

    def __init__(self, *, spec: SignalSpec, live: bool = True, **kwargs: Any):
        super().__init__(value=_EMPTY[spec.dtype], **kwargs)
        self.spec, self.live = spec, live
        self._inside = threading.local()  # set while subscribers run: a monitor that reads back gets the value

    @property
    def _device(self) -> DeclarativeDevice:
        return self.root

    def get(self, **kwargs: Any) -> Any:
        if self.live and not getattr(self._inside, "busy", False):
            self.update(self._device.transport.read(self._device.points[self.attr_name]))
        return self._readback

    def update(self, value: Any) -> Any:
        """Record a value read from the instrument (typed by the signal's dtype) and tell subscribers (a
        subscriber that reads the signal gets this value, not another request to the instrument)."""
        value = _typed(value, self.spec.dtype, self.name)
        self._inside.busy = True
        try:
            Signal.put(self, value, force=True)
        finally:
            self._inside.busy = False
        return value

    def put(self, value: Any, **kwargs: Any) -> None:
        dev = self._device
        if not self.spec.writable:
            raise DeviceError(f"{dev.name}: signal {self.attr_name} is read-only", "write a signal marked writable")
        if self.spec.limits is not None:
            lo, hi = self.spec.limits
            if not lo <= float(value) <= hi:
                raise LimitError(
                    f"{dev.name}: {self.attr_name}={value!r} is outside its limits [{lo:g}, {hi:g}]",
                    "change the value (or the campaign bounds) to lie within the limits",
                )
        dev.transport.write(dev.points[self.attr_name], value)
        self.update(value)

    def describe(self) -> dict[str, Any]:
        dev = self._device
        desc: dict[str, Any] = {
            "source": f"{dev.transport.kind}:{dev.transport.address}:{self.attr_name}",
            "dtype": self.spec.dtype,
            "shape": [],
        }
        if self.spec.units:
            desc["units"] = self.spec.units
        if self.spec.limits is not None:
            desc["lower_ctrl_limit"], desc["upper_ctrl_limit"] = self.spec.limits
        return {self.name: desc}


def _typed(value: Any, dtype: str, name: str) -> Any:
    try:
        if dtype == "number":
            return float(value)
        if dtype == "integer":
            return int(value)
        if dtype == "boolean":
            return bool(value)
        return str(value)
    except (TypeError, ValueError):
        raise DeviceError(
            f"{name}: the instrument gave {value!r}, not a {dtype}",
            "check the signal's dtype and point against the instrument's manual",
        ) from None


class DeclarativeDevice(LabDevice):
    """What a built station and instrument share: the transport, completion rules, stop, health, hints."""

    spec: ClassVar[InstrumentSpec]
    #: always set, from the spec (a LabDevice may leave it None)
    default_timeout: float

    def __init__(
        self, prefix: str = "", *, name: str, address: str | None = None, timeout: float | None = None, **kwargs: Any
    ):
        super().__init__(prefix, name=name, **kwargs)
        spec = self.spec
        t = spec.transport
        cls = transport_class(t.kind)
        self.transport = cls(
            address or t.address,
            timeout=timeout or t.timeout,
            connect_timeout=t.connect_timeout,
            name=name,
            **t.options,
        )
        self.points = {n: cls.Point.model_validate(s.point) for n, s in spec.signals.items() if s.point is not None}
        self.commands = (
            {n: cls.Command.model_validate(c.point) for n, c in spec.commands.items()} if spec.commands else {}
        )
        self.limits = {f: _limits(spec, sp) for f, sp in spec.setpoints.items()}
        self.default_timeout = spec.timeout
        self._stop = threading.Event()

    # -- what the conformance kit and the agent use -------------------------------------------------------------
    def transports(self) -> tuple[Any, ...]:
        return (self.transport,)

    def disconnect(self) -> None:
        self.transport.close()

    def conformance_hints(self) -> dict[str, Any]:
        return dict(self.spec.conformance)

    def health(self) -> Health:
        try:
            raised = [a for a in self.spec.health.alarms if getattr(self, a).get()]
            first = next((n for n, s in self.spec.signals.items() if s.kind == "hinted"), None)
            if first is not None and first not in raised:
                getattr(self, first).get()  # proves the instrument answers
        except DeviceError as exc:
            return Health(False, exc.problem)
        if raised:
            return Health(False, f"alarm(s) set: {', '.join(raised)} (clear them on the instrument)")
        return Health(True, f"ready ({self.spec.model} at {self.transport.address})")

    def stop(self, *, success: bool = False) -> None:
        self._stop.set()
        interrupt = getattr(self.transport, "interrupt", None)  # stop waiting on a running command (SiLA)
        if callable(interrupt):
            interrupt()
        try:
            self.do(self.spec.stop)
        except DeviceError:
            pass  # unreachable: the Status still fails on the stop event
        super().stop(success=success)

    # -- building blocks a subclass may call --------------------------------------------------------------------
    def do(self, action: Any) -> None:
        """Perform an ``ActionSpec``: its writes, then its command."""
        for sig, value in action.writes.items():
            getattr(self, sig).put(value)  # through the signal: its limits are checked, its value recorded
        if action.command:
            self.run_command(action.command)

    def run_command(self, name: str, args: dict[str, Any] | None = None) -> Any:
        cmd = self.spec.commands[name]
        result = self.transport.command(self.commands[name], args, cmd.timeout)
        if cmd.result is not None and result is not None:
            getattr(self, cmd.result).update(result)
        return result

    def _check_stop(self, what: str) -> None:
        if self._stop.is_set():
            raise DeviceError(f"{self.name}: {what}: stopped (stop() was called)", "run the step again")

    def wait_until(self, what: str, done: Any, deadline: float) -> None:
        """Poll ``done()`` (reading the process signals each round) until true; fail on stop() or the deadline."""
        while not done():
            for s in self.spec.process:
                getattr(self, s).get()
            self._stop.wait(self.spec.poll)
            self._check_stop(what)
            if time.monotonic() > deadline:
                raise DeviceError(
                    f"{self.name}: {what}: not complete after {self.default_timeout:g} s",
                    "check the instrument; raise 'timeout' in its description for slow moves",
                )

    def complete(self, field: str, sp: SetpointSpec, value: float, deadline: float) -> None:
        if sp.command is not None:
            self.run_command(sp.command, {"value": value})
        if sp.done is not None:
            flag = getattr(self, sp.done)
            self.wait_until(f"{field}={value:g}: waiting for {sp.done}", lambda: bool(flag.get()), deadline)
        if sp.readback is not None:
            rb, tol = getattr(self, sp.readback), float(sp.tolerance or 0)
            since: list[float | None] = [None]

            def settled() -> bool:
                now = time.monotonic()
                if abs(float(rb.get()) - value) > tol:
                    since[0] = None
                    return False
                start = since[0] = since[0] if since[0] is not None else now
                return now - start >= sp.settle

            self.wait_until(f"{field}={value:g}: waiting for {sp.readback} within {tol:g}", settled, deadline)


class DeclarativeStation(DeclarativeDevice, Station):
    def set(self, recipe: Any) -> Any:
        self._stop.clear()  # a new recipe: forget an earlier stop()
        return super().set(recipe)

    def run_recipe(self, recipe: dict[str, Any]) -> None:
        deadline = time.monotonic() + self.default_timeout
        self.do(self.spec.start)
        for field, value in recipe.items():
            signal = self.spec.setpoints[field].signal
            if signal is not None:
                getattr(self, signal).put(float(value))
        for field, value in recipe.items():
            self.complete(field, self.spec.setpoints[field], float(value), deadline)


class DeclarativeInstrument(DeclarativeDevice, Instrument):
    def trigger(self) -> Any:
        self._stop.clear()
        return super().trigger()

    def measure(self) -> None:
        m = self.spec.measure
        assert m is not None
        self.do(self.spec.start)
        self._check_stop("measuring")
        if m.command is not None:
            self.run_command(m.command)
            self._check_stop("measuring")
        for s in m.read:
            sig = getattr(self, s)
            sig.update(self.transport.read(self.points[s]))


# -- building ------------------------------------------------------------------------------------------------------
def build_class(spec: InstrumentSpec, label: str = "instrument") -> type:
    """A device class for ``spec``: one PointSignal component per signal."""
    base: type = DeclarativeStation if spec.role == "station" else DeclarativeInstrument
    if spec.python:
        hook = plugins.load(spec.python, "labloop.devices")
        if not (isinstance(hook, type) and issubclass(hook, base)):
            raise SpecError(
                f"{label}: python: {spec.python} must be a class subclassing "
                f"labloop.declarative.{base.__name__} (role {spec.role})",
                "subclass the declarative base and override only what YAML cannot say",
            )
        base = hook
    measured: set[str] = set()
    if spec.role == "instrument" and spec.measure is not None:
        measured = set(spec.measure.read) | {c.result for c in spec.commands.values() if c.result}
    attrs: dict[str, Any] = {
        "spec": spec,
        "process_signals": tuple(spec.process),
        "__doc__": f"{spec.model} ({spec.transport.kind}), built from {label}.",
    }
    for name, sig in spec.signals.items():
        attrs[name] = Cpt(
            PointSignal,
            spec=sig,
            live=name not in measured and sig.point is not None,
            kind=sig.kind,
            doc=sig.doc or name,
        )
    return type(_class_name(spec.model), (base,), attrs)


def _class_name(model: str) -> str:
    cleaned = "".join(c if c.isalnum() else " " for c in model).title().replace(" ", "")
    return cleaned if cleaned and cleaned[0].isalpha() else f"Instrument{cleaned}"


_CACHE: dict[tuple[str, float], type] = {}


def device(
    name: str,
    file: str | Path | None = None,
    spec: dict[str, Any] | None = None,
    address: str | None = None,
    timeout: float | None = None,
    **kwargs: Any,
) -> Any:
    """The factory a campaign (``lab.devices.NAME: {file: PATH}``) and ``labloop agent labloop.declarative:device``
    call: build the device described by ``file`` (or the inline mapping ``spec``); ``address`` and ``timeout``
    override the file's transport (e.g. to point it at a simulator). Nothing touches the instrument yet."""
    if (file is None) == (spec is None):
        raise SpecError(
            f"{name}: give the instrument description as 'file' (a YAML path) or inline as 'spec'",
            "lab.devices.NAME: {file: PATH.yaml}",
        )
    if file is not None:
        path = Path(file).resolve()
        try:
            key = (str(path), path.stat().st_mtime)
        except OSError:
            raise SpecError(f"{name}: instrument file {file} does not exist", "check the path") from None
        cls = _CACHE.get(key)
        if cls is None:
            cls = _CACHE[key] = build_class(load_spec(path), str(file))
    else:
        cls = build_class(load_spec(dict(spec or {}), f"{name}.spec"), f"{name}.spec")
    return cls(name=name, address=address, timeout=timeout, **kwargs)
