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

    @classmethod
    def parse(cls, items: list[str] | tuple[str, ...]) -> FaultRates:
        """The default rates with some overridden by ``NAME=P`` items (``labloop sim serve --fault-rate``): a
        fault-injection run raises a rare fault so that it happens within a short campaign."""
        names = list(cls.__dataclass_fields__)
        rates: dict[str, float] = {}
        for item in items:
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in names:
                raise ValueError(f"fault rate {item!r}: give NAME=P with NAME one of {', '.join(names)}")
            try:
                rates[name] = float(value)
            except ValueError:
                raise ValueError(f"fault rate {item!r}: {value!r} is not a number") from None
        return cls(**rates)
