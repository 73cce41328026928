"""Simulated hotplate for the example driver ``labloop_devices.examples.hotplate`` (see docs/drivers.md)."""

from __future__ import annotations

import time

from .base import LineServer


class HotplateServer(LineServer):
    """Ramps toward the setpoint at ``rate`` C/s; ``OFF`` ramps back to ``ambient``."""

    def __init__(self, *, rate: float = 200.0, ambient: float = 25.0, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.ambient = rate, ambient
        self._from, self._target, self._since = ambient, ambient, time.monotonic()

    def temperature(self) -> float:
        travelled = self.rate * (time.monotonic() - self._since)
        if abs(self._target - self._from) <= travelled:
            return self._target
        return self._from + travelled * (1 if self._target > self._from else -1)

    def _ramp_to(self, target: float) -> None:
        self._from, self._target, self._since = self.temperature(), target, time.monotonic()

    def handle(self, line: str) -> str | None:
        verb, _, arg = line.strip().partition(" ")
        if verb == "TEMP?":
            return f"TEMP {self.temperature():.2f}"
        if verb == "OFF":
            self._ramp_to(self.ambient)
            return "OK"
        if verb == "SETP":
            try:
                target = float(arg)
            except ValueError:
                return f"ERR not a number: {arg!r}"
            if not 0 <= target <= 400:
                return "ERR setpoint out of range 0..400"
            self._ramp_to(target)
            return "OK"
        return f"ERR unknown command {verb!r}"
