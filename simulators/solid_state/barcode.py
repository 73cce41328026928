"""A barcode reader at each station: reads a crucible's code, sometimes wrongly (one digit off) or not at all.

A misread is what the identity check downstream has to catch (a code that is not where the store says the sample
is), so it returns a *plausible* wrong code - one digit changed - rather than garbage. Half the faults are no-reads
(``None``), as with a smudged label. Rates come from :class:`.faults.FaultRates`; draws from a seeded generator.
"""

from __future__ import annotations

import numpy as np

from .faults import FaultRates


class BarcodeReader:
    def __init__(self, rng: np.random.Generator, faults: FaultRates | None = None):
        self.rng = rng
        self.faults = faults or FaultRates()

    def read(self, code: str) -> str | None:
        if self.rng.random() >= self.faults.barcode_misread:
            return code
        if self.rng.random() < 0.5 or not any(c.isdigit() for c in code):
            return None
        digits = [i for i, c in enumerate(code) if c.isdigit()]
        i = int(self.rng.choice(digits))
        wrong = str((int(code[i]) + int(self.rng.integers(1, 10))) % 10)
        return code[:i] + wrong + code[i + 1 :]
