r"""An analytical balance: the reading settles first-order onto the load, drifts, and is noisy.

After a load change at time ``t0`` (simulated seconds) the load cell's reading is::

    reading(t) = m_prev + (m - m_prev) * (1 - exp(-(t - t0) / tau)) + drift * (t - t_tare) + N(0, sigma)

(a first-order settling of the weigh cell and its damping; a slow linear drift from temperature and creep that a
tare removes; readability-level white noise). :meth:`Balance.weigh_stable` samples at the balance's update
interval and reports the mean of the first ``window`` readings (2 s at 10 Hz) that lie within ``stable_tol_g`` -
the stability criterion of a laboratory balance's "stable weight" command (as MT-SICS ``S`` does) - with the
simulated time it took, so a device or protocol server built on it takes as long as a real balance.
"""

from __future__ import annotations

import math

import numpy as np


class Balance:
    def __init__(
        self,
        rng: np.random.Generator,
        *,
        tau_s: float = 1.5,
        drift_g_per_s: float = 2e-6,
        noise_g: float = 3e-5,
        interval_s: float = 0.1,
        capacity_g: float = 220.0,
    ):
        self.rng = rng
        self.tau_s, self.drift, self.noise = tau_s, drift_g_per_s, noise_g
        self.interval_s, self.capacity_g = interval_s, capacity_g
        self.now = 0.0
        self._load = self._prev = 0.0
        self._t_load = self._t_tare = 0.0
        self._tare_g = 0.0

    def place(self, mass_g: float) -> None:
        """Change the load (put on or take off a crucible) at the current simulated time."""
        self._prev = self._true_reading(self.now)
        self._load, self._t_load = float(mass_g), self.now

    def _true_reading(self, t: float) -> float:
        settle = 1 - math.exp(-(t - self._t_load) / self.tau_s)
        return self._prev + (self._load - self._prev) * settle

    def read(self) -> float:
        """One reading now (grams, net of tare); ``+inf`` when overloaded, as a balance shows an overload."""
        if self._load > self.capacity_g:
            return math.inf
        drift = self.drift * (self.now - self._t_tare)
        return self._true_reading(self.now) + drift - self._tare_g + float(self.rng.normal(0, self.noise))

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def tare(self) -> None:
        self._tare_g = self._true_reading(self.now)
        self._t_tare = self.now

    def weigh_stable(
        self, stable_tol_g: float = 1e-4, window: int = 20, timeout_s: float = 60.0
    ) -> tuple[float | None, float]:
        """(stable reading or None on timeout, simulated seconds waited)."""
        start, readings = self.now, []
        while self.now - start < timeout_s:
            self.advance(self.interval_s)
            readings.append(self.read())
            last = readings[-window:]
            if len(last) == window and max(last) - min(last) <= stable_tol_g:
                return float(np.mean(last)), self.now - start
        return None, self.now - start
