"""Simulated time for simulated devices.

A simulated instrument takes as long as the real one would (a deposition ~1-2 h, a robot move ~1 min), but divided
by ``time_scale``, so a week-long campaign runs in seconds through exactly the same scheduler and plans as a real
lab. All devices of one simulated lab share one clock, so their simulated times are comparable.

Waits are interruptible: a device passes its stop ``threading.Event`` and ``stop()`` ends a 2-hour deposition at
once instead of after its (scaled) sleep.
"""

from __future__ import annotations

import math
import threading
import time

from labloop.errors import LabloopError


class SimClock:
    """Turns simulated seconds into scaled wall-clock waits; ``time_scale=X`` runs devices X times faster."""

    def __init__(self, time_scale: float = 1.0):
        try:
            scale = float(time_scale)
        except (TypeError, ValueError):
            scale = math.nan
        if not (math.isfinite(scale) and scale > 0):
            raise LabloopError(
                f"time_scale must be a positive number, got {time_scale!r}",
                "use e.g. 1 for real time or 20000 for a fast demo",
            )
        self.time_scale = scale
        self._t0 = time.monotonic()

    def now(self) -> float:
        """Simulated seconds elapsed since the clock was made."""
        return (time.monotonic() - self._t0) * self.time_scale

    def wall(self, sim_seconds: float) -> float:
        """Wall-clock seconds that ``sim_seconds`` of simulated time take."""
        return max(0.0, float(sim_seconds)) / self.time_scale

    def sleep(self, sim_seconds: float, interrupt: threading.Event | None = None) -> bool:
        """Wait ``sim_seconds`` of simulated time. Returns False (at once) if ``interrupt`` is set, else True."""
        wall = self.wall(sim_seconds)
        if interrupt is None:
            time.sleep(wall)
            return True
        return not interrupt.wait(wall)

    def sleep_until(self, sim_deadline: float, interrupt: threading.Event | None = None) -> bool:
        """Wait until ``now() >= sim_deadline``; drift-free for loops that step through a schedule."""
        return self.sleep(sim_deadline - self.now(), interrupt)
