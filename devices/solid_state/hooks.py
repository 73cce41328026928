"""Python hooks for the solid-state lab's declarative devices: what their YAML files cannot say.

* :class:`AlarmWatchingStation`: a furnace that trips or a dispenser that jams raises an alarm bit and never sets
  its done bit; the declarative completion rule would wait for the device's whole timeout. This station fails the
  step at the first poll that sees an alarm (:class:`AlarmRaised`), naming the alarm, the transport and the
  address, and does its ``stop`` action (a tripped furnace's program must end for the next firing to start). A
  step stopped while it waits does its ``stop`` action once more: a ``stop()`` that raced ahead of the step's
  start (an abort before the dose began) must not leave the instrument busy.
* :class:`Furnace`: a controller that starts its program on ``run = 1`` must have the profile first; the
  declarative station does its ``start`` writes before the recipe's, so this one writes the profile, then starts.
* :class:`Diffractometer`: the pattern comes back as one comma-separated SCPI reply (YAML holds it as text); this
  instrument turns it into arrays (``two_theta``, ``counts``) that analysis code (phase fractions) reads.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from ophyd import Component as Cpt
from ophyd import Signal

from labloop.declarative.builder import DeclarativeInstrument, DeclarativeStation
from labloop.errors import DeviceError


class AlarmRaised(DeviceError):
    """A step ended by an instrument's alarm (a furnace trip, a dispenser jam); ``alarms`` names the raised ones."""

    def __init__(self, problem: str, fix: str, alarms: list[str]):
        super().__init__(problem, fix)
        self.alarms = alarms


class AlarmWatchingStation(DeclarativeStation):
    def wait_until(self, what: str, done: Any, deadline: float) -> None:
        def watched() -> bool:
            self._check_stop(what)  # a stop() wins over a completion that lands at the same moment
            raised = [a for a in self.spec.health.alarms if getattr(self, a).get()]
            if raised:
                t = self.transport
                raise AlarmRaised(
                    f"{self.name}: {', '.join(raised)} while {what} ({self.spec.model}, {t.kind} {t.address})",
                    "find and clear the cause on the instrument, reset its alarm, "
                    "then run the step again (the sample saw an interrupted process)",
                    raised,
                )
            return bool(done())

        try:
            super().wait_until(what, watched, deadline)
        except DeviceError as exc:
            # stop() may have reached the instrument before this step's start did; or an alarm ended the step while
            # the instrument's program still counts as started (a tripped furnace keeps run = 1, so the next
            # firing's run = 1 would be no new start and never fire): either way, stop what the step started, so
            # the next step finds the instrument idle
            if self._stop.is_set() or isinstance(exc, AlarmRaised):
                self.do(self.spec.stop)
            raise


class Furnace(AlarmWatchingStation):
    def run_recipe(self, recipe: dict[str, Any]) -> None:
        deadline = time.monotonic() + self.default_timeout
        for field, value in recipe.items():
            signal = self.spec.setpoints[field].signal
            if signal is not None:
                getattr(self, signal).put(float(value))
        self.do(self.spec.start)  # run = 1: the program starts with the profile just written
        for field, value in recipe.items():
            self.complete(field, self.spec.setpoints[field], float(value), deadline)


class Diffractometer(DeclarativeInstrument):
    two_theta = Cpt(Signal, value=np.zeros(0), kind="normal", doc="2-theta of each point of the last pattern (deg)")
    counts = Cpt(Signal, value=np.zeros(0), kind="normal", doc="counts of the last pattern")

    def measure(self) -> None:
        super().measure()  # SCAN, *OPC?, FETC? -> pattern_raw (text); SAMP? and TTH? read alongside
        raw = str(self.pattern_raw.get())
        try:
            counts = np.array([float(v) for v in raw.split(",")])
            start, stop, step = (float(v) for v in str(self.scan_range.get()).split(","))
        except ValueError:
            t = self.transport
            raise DeviceError(
                f"{self.name}: the pattern from {t.kind} {t.address} is not a list of numbers: {raw[:80]!r}",
                "check the instrument's data format (FORM ASC)",
            ) from None
        two_theta = start + step * np.arange(len(counts))
        if len(counts) < 2 or abs(two_theta[-1] - stop) > step:
            raise DeviceError(
                f"{self.name}: the pattern has {len(counts)} points, which does not fit its range "
                f"{start:g}..{stop:g} step {step:g}",
                "fetch the pattern again",
            )
        self.two_theta.put(two_theta)
        self.counts.put(counts)
