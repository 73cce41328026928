"""Base classes for lab equipment as ophyd Devices: stations, instruments and robots.

Drivers import them as ``labloop_devices.base`` (which re-exports this module); the code lives here, in labloop,
because the declarative-device builder (:mod:`labloop.declarative`) subclasses them and labloop never imports the
plugin packages shipped beside it.

The contract a scheduler relies on is structural (bluesky.protocols: Readable, Movable, Triggerable, Stoppable)
plus three small lab-equipment roles:

* a **Station** accepts a sample (``sample`` signal), runs a recipe (``set(recipe) -> Status``) and releases it;
* an **Instrument** measures the sample it holds (``trigger() -> Status``, then ``read()``);
* a **Robot** moves a sample between named positions (``set(Move(...)) -> Status``).

Every device declares ``limits`` (``{field: (low, high)}``) and refuses a setpoint outside them in ``set`` itself,
whatever the campaign says (safety lives in the driver), and reports ``health()``. Constructors must not block on
hardware: campaign validation instantiates drivers to read their limits before anything moves.

The base classes do the boring parts: the Status object, its timeout, running the work in a thread and turning an
exception into a failed Status (never a hang or a crash of the caller).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from labloop.contract import Health, Move  # re-exported: drivers import the contract from here
from labloop.errors import DeviceError, LimitError

__all__ = ["Health", "Instrument", "LabDevice", "Move", "Robot", "Station", "check_limits"]


def check_limits(limits: Mapping[str, tuple[float, float]], recipe: Mapping[str, Any], device: str) -> None:
    """Refuse values outside declared limits and fields the device does not know."""
    for key, value in recipe.items():
        if key not in limits:
            raise LimitError(
                f"{device}: unknown setpoint '{key}' (knows {sorted(limits)})",
                "map the parameter to a field the device declares (parameter 'setpoint: device.field')",
            )
        lo, hi = limits[key]
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise LimitError(f"{device}: setpoint {key}={value!r} is not a number", "send a number") from None
        if not lo <= v <= hi:
            raise LimitError(
                f"{device}: setpoint {key}={v:g} is outside the device limits [{lo:g}, {hi:g}]",
                "change the campaign bounds to lie within the device limits",
            )


class LabDevice(Device):
    """Common ground of lab devices: declared limits, health, a default timeout and threaded Status work."""

    #: Field -> (low, high) the hardware accepts. Subclasses set it (per class or per instance in __init__).
    limits: dict[str, tuple[float, float]] = {}
    #: Seconds a Status may take before it fails with a timeout (None = no timeout).
    default_timeout: float | None = None
    #: What kind of lab equipment this is ("station", "instrument", "robot").
    role: ClassVar[str] = "device"
    #: The unit's serial number (or another id that names this very unit), recorded in the provenance of every run
    #: that uses it; None when the driver cannot tell.
    serial: str | None = None
    #: The calibration in force: a dict with at least ``id`` and ``at`` (ISO 8601 time it was made), or None for a
    #: device that does not calibrate. Recorded with its age in the provenance of every run that uses the device.
    calibration: dict[str, Any] | None = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Each instance gets its own copy, so a driver that adjusts limits from its config in __init__ never
        # changes the limits of every other device of its class.
        self.limits = dict(type(self).limits)

    def health(self) -> Health:
        return Health(True)

    def _run_status(self, work: Callable[[], None], timeout: float | None = None) -> Status:
        """Run ``work`` in a thread; the returned Status finishes when it returns, fails when it raises."""
        status = Status(obj=self, timeout=timeout if timeout is not None else self.default_timeout)

        def target() -> None:
            try:
                work()
            except Exception as exc:  # noqa: BLE001 - every device error must become a failed Status
                if not status.done:
                    err = exc if isinstance(exc, DeviceError) else DeviceError(f"{self.name}: {exc}")
                    if err is not exc:
                        err.__cause__ = exc  # keep the driver's own traceback for whoever debugs it
                    status.set_exception(err)
                return
            if not status.done:
                status.set_finished()

        threading.Thread(target=target, name=f"{self.name}-work", daemon=True).start()
        return status


class Station(LabDevice):
    """A place where a sample is processed by a recipe (deposition chamber, furnace, spin coater)."""

    role: ClassVar[str] = "station"
    sample = Cpt(Signal, value="", kind="config", doc="Id of the sample in the station ('' when empty).")

    #: Names of components that are process streams (monitored during a recipe), e.g. ("chamber_pressure",).
    process_signals: ClassVar[tuple[str, ...]] = ()

    def set(self, recipe: Mapping[str, Any]) -> Status:
        """Check the recipe against the limits (refusing it at once), then run it; the Status ends with it."""
        check_limits(self.limits, recipe, self.name)
        if not self.sample.get():
            raise DeviceError(f"{self.name}: no sample loaded", "transfer a sample into the station first")
        recipe = dict(recipe)
        return self._run_status(lambda: self.run_recipe(recipe))

    def run_recipe(self, recipe: dict[str, Any]) -> None:
        """Do the work (blocking, in a worker thread). Raise to fail the Status."""
        raise NotImplementedError


class Instrument(LabDevice):
    """Measures the sample it holds; the results are its read() signals."""

    role: ClassVar[str] = "instrument"
    sample = Cpt(Signal, value="", kind="config", doc="Id of the sample on the instrument ('' when empty).")

    def trigger(self) -> Status:
        if not self.sample.get():
            raise DeviceError(f"{self.name}: no sample to measure", "transfer a sample onto the instrument first")
        return self._run_status(self.measure)

    def measure(self) -> None:
        """Acquire (blocking, in a worker thread) and put the results into the read signals."""
        raise NotImplementedError


class Robot(LabDevice):
    """Moves samples between named positions. One move at a time (the scheduler reserves it)."""

    role: ClassVar[str] = "robot"
    at = Cpt(Signal, value="home", kind="hinted", doc="Position where the gripper is.")
    holding = Cpt(Signal, value="", kind="normal", doc="Sample in the gripper ('' when empty).")

    #: Positions the robot can reach.
    positions: tuple[str, ...] = ()

    def set(self, move: Move) -> Status:
        if not isinstance(move, Move):
            raise DeviceError(f"{self.name}: set() needs a Move, got {move!r}", "use Move(sample, source, destination)")
        for where in (move.source, move.destination):
            if where not in self.positions:
                raise LimitError(
                    f"{self.name}: cannot reach position '{where}' (reaches {list(self.positions)})",
                    "teach the position to the robot or change the workflow",
                )
        return self._run_status(lambda: self.do_move(move))

    def do_move(self, move: Move) -> None:
        """Pick ``move.sample`` at ``move.source`` and place it at ``move.destination`` (blocking)."""
        raise NotImplementedError
