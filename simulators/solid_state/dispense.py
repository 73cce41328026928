r"""A gravimetric powder dispenser: the dose it delivers is not the dose asked for, and sticky powders jam it.

Dispensed mass for a request ``m``::

    m_out = m * (1 + N(0, rel)) + N(0, abs)        (>= 0)

a relative error from flow variations (larger for cohesive, fine powders: ``cohesion`` scales it) plus an absolute
one from the last grains falling or not. A *jam* (bridging in the hopper) happens with the rate of
:class:`.faults.FaultRates` per dose (more often for cohesive powders): the dose stops part-way and
:class:`DispenserJam` says how much came out, so the caller knows what the crucible holds.
"""

from __future__ import annotations

import numpy as np

from labloop.errors import DeviceError

from .faults import FaultRates

# powder cohesion (invented): hydroxides and nitrates cake, carbonates and oxides flow
COHESION = {
    "LiOH": 2.0,
    "LiNO3": 1.8,
    "Li2CO3": 1.0,
    "Li2O": 1.5,
    "MnO2": 1.2,
    "Mn2O3": 1.0,
    "MnCO3": 1.1,
    "Mn3O4": 1.0,
}


class DispenserJam(DeviceError):
    def __init__(self, powder: str, requested_g: float, dispensed_g: float):
        self.powder, self.requested_g, self.dispensed_g = powder, requested_g, dispensed_g
        super().__init__(
            f"the dispenser jammed on {powder}: {dispensed_g:.4f} g of {requested_g:.4f} g came out",
            "clear the hopper (tap or stir the powder), then dispense the rest",
        )


class Dispenser:
    def __init__(
        self,
        rng: np.random.Generator,
        *,
        rel_error: float = 0.01,
        abs_error_g: float = 2e-4,
        faults: FaultRates | None = None,
        seconds_per_g: float = 20.0,
    ):
        self.rng = rng
        self.rel, self.abs = rel_error, abs_error_g
        self.faults = faults or FaultRates()
        self.seconds_per_g = seconds_per_g

    def dispense(self, powder: str, requested_g: float) -> tuple[float, float]:
        """(grams delivered, simulated seconds taken); raises :class:`DispenserJam` on a jam."""
        if requested_g <= 0:
            raise DeviceError(f"a dose must be positive, got {requested_g} g", "request a mass above 0 g")
        cohesion = COHESION.get(powder, 1.0)
        jam_p = min(1.0, self.faults.dispenser_jam * cohesion)
        if self.rng.random() < jam_p:
            part = float(requested_g * self.rng.uniform(0.05, 0.9))
            raise DispenserJam(powder, requested_g, part)
        out = requested_g * (1 + self.rng.normal(0, self.rel * cohesion)) + self.rng.normal(0, self.abs)
        out = max(0.0, float(out))
        return out, 5.0 + self.seconds_per_g * out
