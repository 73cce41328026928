"""The lab's fault rates, in one place so a campaign (or a fault-injection test) can turn them up or off.

Each rate is a probability per event (per firing, per crucible per firing, per barcode read, per dose), drawn from
the seeded ``numpy.random.Generator`` of the simulator that owns the event, so a given seed replays the same faults.
Defaults are of the order automated powder labs report: a crucible cracks in a few percent of firings, a furnace
trips rarely, a barcode is misread in about one read in a hundred, a powder dispenser jams on sticky powders.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FaultRates:
    crucible_crack: float = 0.02  # per crucible per firing at a 0 degC/min ramp; x(1 + ramp/10)
    furnace_trip: float = 0.01  # per firing
    barcode_misread: float = 0.01  # per read
    dispenser_jam: float = 0.02  # per dose

    def __post_init__(self):
        for name, value in vars(self).items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault rate {name} must be a probability in [0, 1], got {value}")

    @classmethod
    def none(cls) -> FaultRates:
        return cls(0.0, 0.0, 0.0, 0.0)
