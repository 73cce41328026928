"""The Python hook of ``smu_visa.yaml``: what its YAML cannot say (a value computed from two readings)."""

from __future__ import annotations

import math

from labloop.declarative import DeclarativeInstrument


class FourPointSmu(DeclarativeInstrument):
    """Sheet resistance of a film under a collinear four-point probe: R_s = (pi / ln 2) * V / I."""

    def measure(self) -> None:
        super().measure()  # the YAML's measurement: INIT, *OPC?, FETC? -> voltage; FETC? -> current
        v, i = self.voltage.get(), self.current.get()
        self.sheet_resistance.update(math.pi / math.log(2) * v / i if i else math.nan)
