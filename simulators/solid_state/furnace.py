r"""A box furnace: up to 4 crucibles fired on ONE profile, its real temperature history, trips and cracks.

Lumped thermal model (one node, Newton's law of cooling), simulated time only::

    tau dT/dt = u - (T - T_amb),     0 <= u <= T_full - T_amb

``u`` is the heater power as the temperature it would hold at steady state (``T_full`` = 2500 degC: a lumped
figure the elements never reach, chosen so full power heats at ~14 degC/min cold and ~9 degC/min at 900 degC, as
box furnaces do), so heating is limited by power (the
furnace cannot follow a fast ramp once ``T_full - T`` gets small) and with the heater off it cools exponentially
with time constant ``tau`` (a few hours for a ceramic-fibre box furnace; a real one takes most of a night to cool
from 900 degC). The controller is an ideal tracker clipped to the power range; each step is integrated exactly
(exponential step), so cooling follows ``T_amb + (T0 - T_amb) exp(-t/tau)``.

Faults, each from the furnace's own seeded generator (:mod:`.faults` holds the rates): a *trip* (over-temperature
relay, thermocouple break) cuts the heater at a random moment of the firing - the crucibles then see a truncated
history and the chemistry (integrated over the ACTUAL history, not the setpoint) gives what that makes; a crucible
*cracks* with a per-firing probability that grows with the ramp rate (thermal shock), and its sample is lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from labloop.errors import DeviceError

from .chemistry import Product, Recipe, react
from .faults import FaultRates


@dataclass(frozen=True)
class Profile:
    """What all crucibles in one firing share."""

    ramp_c_per_min: float
    peak_c: float
    dwell_h: float
    atmosphere: str = "air"

    @classmethod
    def of(cls, recipe: Recipe) -> Profile:
        return cls(recipe.ramp_c_per_min, recipe.peak_c, recipe.dwell_h, recipe.atmosphere)


@dataclass
class Firing:
    """One firing's record: the actual history, whether it tripped, and each crucible's outcome."""

    times_s: np.ndarray
    temps_c: np.ndarray
    setpoints_c: np.ndarray
    tripped_at_s: float | None
    products: list[Product | None]  # None: the crucible cracked and its sample is lost
    cracked: list[bool]

    @property
    def duration_s(self) -> float:
        return float(self.times_s[-1])


class BoxFurnace:
    def __init__(
        self,
        rng: np.random.Generator,
        *,
        capacity: int = 4,
        tau_h: float = 3.0,
        full_power_c: float = 2500.0,
        max_c: float = 1200.0,
        ambient_c: float = 25.0,
        faults: FaultRates | None = None,
        dt_s: float = 60.0,
        unload_below_c: float = 150.0,
    ):
        self.rng = rng
        self.capacity, self.tau_s, self.full_c, self.max_c = capacity, tau_h * 3600, full_power_c, max_c
        self.ambient_c, self.dt_s, self.unload_below_c = ambient_c, dt_s, unload_below_c
        self.faults = faults or FaultRates()

    def setpoint(self, profile: Profile, t_s: float) -> float | None:
        """Programmed temperature at ``t_s``; None once the program ends (heater off: natural cooling)."""
        ramp_s = (profile.peak_c - self.ambient_c) / profile.ramp_c_per_min * 60
        if t_s < ramp_s:
            return self.ambient_c + t_s / ramp_s * (profile.peak_c - self.ambient_c)
        return profile.peak_c if t_s < ramp_s + profile.dwell_h * 3600 else None

    def fire(self, profile: Profile, recipes: list[Recipe]) -> Firing:
        """Fire up to ``capacity`` crucibles; every recipe must share ``profile`` (a furnace has one program)."""
        if not 1 <= len(recipes) <= self.capacity:
            raise DeviceError(
                f"a furnace holds 1 to {self.capacity} crucibles, got {len(recipes)}",
                "split the batch over several firings",
            )
        if any(Profile.of(r) != profile for r in recipes):
            raise DeviceError(
                "the crucibles of one firing must share its firing profile",
                "batch only recipes with the same ramp, peak, dwell and atmosphere",
            )
        if not (0 < profile.peak_c <= self.max_c and profile.ramp_c_per_min > 0):
            raise DeviceError(
                f"profile outside the furnace's limits (peak <= {self.max_c} degC): {profile}",
                "lower the peak temperature",
            )
        program_s = (profile.peak_c - self.ambient_c) / profile.ramp_c_per_min * 60 + profile.dwell_h * 3600
        trip_at = None
        if self.rng.random() < self.faults.furnace_trip:
            trip_at = float(self.rng.uniform(0, program_s))
        times, temps, sps = [0.0], [self.ambient_c], [self.ambient_c]
        t, temp = 0.0, self.ambient_c
        decay = math.exp(-self.dt_s / self.tau_s)
        while True:
            t += self.dt_s
            sp = None if (trip_at is not None and t >= trip_at) else self.setpoint(profile, t)
            if sp is None:
                u = 0.0
            else:  # the power that lands exactly on sp after this step, clipped to what the heater has
                u = (sp - self.ambient_c - (temp - self.ambient_c) * decay) / (1 - decay)
                u = min(max(u, 0.0), self.full_c - self.ambient_c)
            temp = self.ambient_c + u + (temp - self.ambient_c - u) * decay
            times.append(t)
            temps.append(temp)
            sps.append(sp if sp is not None else float("nan"))
            if sp is None and temp < self.unload_below_c:
                break
        times_a, temps_a = np.array(times), np.array(temps)
        crack_p = min(1.0, self.faults.crucible_crack * (1 + profile.ramp_c_per_min / 10))
        cracked = [bool(self.rng.random() < crack_p) for _ in recipes]
        products = [None if c else react(r, times_a, temps_a) for r, c in zip(recipes, cracked)]
        return Firing(times_a, temps_a, np.array(sps), trip_at, products, cracked)
