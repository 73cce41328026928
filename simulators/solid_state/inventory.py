"""Consumables as a pure model: crucibles (clean / used / cracked) and precursor stocks (grams left).

A recipe that needs more powder than is left is refused as a whole (nothing is drawn), so the lab never starts a
sample it cannot finish; a stock below its alert threshold is listed for the operator; a refill is recorded.
No devices, no time: the orchestrator's inventory rules and the simulated lab's stations both build on this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labloop.errors import LabloopError

CRUCIBLE_STATES = ("clean", "used", "cracked")


class InventoryRefused(LabloopError):
    """A request the consumables on hand cannot meet; nothing was changed."""


@dataclass
class Inventory:
    stocks_g: dict[str, float] = field(default_factory=dict)
    alert_below_g: dict[str, float] = field(default_factory=dict)
    crucibles: dict[str, str] = field(default_factory=dict)  # barcode -> state

    @classmethod
    def with_crucibles(cls, count: int, stocks_g: dict[str, float], alert_below_g: float = 5.0) -> Inventory:
        return cls(
            dict(stocks_g), dict.fromkeys(stocks_g, alert_below_g), {f"CR{i:04d}": "clean" for i in range(1, count + 1)}
        )

    def can_supply(self, masses_g: dict[str, float]) -> bool:
        return all(self.stocks_g.get(p, 0.0) >= m for p, m in masses_g.items())

    def draw(self, masses_g: dict[str, float]) -> None:
        short = {p: (m, self.stocks_g.get(p, 0.0)) for p, m in masses_g.items() if self.stocks_g.get(p, 0.0) < m}
        if short:
            detail = ", ".join(f"{p}: needs {m:.3f} g, {left:.3f} g left" for p, (m, left) in short.items())
            raise InventoryRefused(
                f"not enough precursor for this recipe ({detail})",
                "refill the stock (and record the refill) or choose another precursor",
            )
        for p, m in masses_g.items():
            self.stocks_g[p] -= m

    def refill(self, powder: str, grams: float) -> None:
        if grams <= 0:
            raise InventoryRefused(f"a refill must add a positive mass, got {grams} g", "enter the grams added")
        self.stocks_g[powder] = self.stocks_g.get(powder, 0.0) + grams

    def low_stocks(self) -> list[str]:
        return sorted(p for p, g in self.stocks_g.items() if g < self.alert_below_g.get(p, 0.0))

    def take_clean_crucible(self) -> str:
        for code, state in sorted(self.crucibles.items()):
            if state == "clean":
                self.crucibles[code] = "used"
                return code
        raise InventoryRefused("no clean crucible left", "clean the used crucibles or add new ones")

    def set_state(self, code: str, state: str) -> None:
        if code not in self.crucibles:
            raise InventoryRefused(f"unknown crucible {code!r}", "scan the crucible's barcode again")
        if state not in CRUCIBLE_STATES:
            raise InventoryRefused(f"unknown crucible state {state!r}", f"use one of {CRUCIBLE_STATES}")
        if self.crucibles[code] == "cracked" and state != "cracked":
            raise InventoryRefused(f"crucible {code} is cracked and cannot be reused", "discard it")
        self.crucibles[code] = state

    def clean(self, code: str) -> None:
        if self.crucibles.get(code) != "used":
            raise InventoryRefused(
                f"crucible {code} is not a used crucible ({self.crucibles.get(code)})",
                "only used crucibles are cleaned",
            )
        self.crucibles[code] = "clean"

    def count(self, state: str) -> int:
        return sum(1 for s in self.crucibles.values() if s == state)
