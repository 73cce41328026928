"""The gravimetric powder dispenser as an OPC UA server, driven by :class:`labloop_simulators.solid_state.dispense.
Dispenser` (dose error, powder-dependent jams, seconds per gram) and the shared world's precursor stocks.

Nodes under ``Objects/Dispenser`` (namespace index 2): ``Precursor`` (Int32, index into
:data:`~labloop_simulators.solid_state.chemistry.PRECURSORS`: 0 Li2CO3, 1 LiOH, 2 LiNO3, 3 Li2O, 4 MnO2, 5 Mn2O3,
6 MnCO3, 7 Mn3O4), ``Busy``, ``Done``, ``Jammed`` (Boolean), ``LastDispensed`` (g, Double), ``Stock.<name>`` (g left,
Double). Methods: ``Dispense(mass_g)`` starts a dose of the selected precursor into the crucible under the head (the
world's ``dispenser`` location) and returns at once; it is refused with ``BadInvalidState`` while busy or jammed, or
with no crucible there (``require_crucible``), and ``BadOutOfRange`` when the stock is short. The dose takes the
model's time; a jam stops it part-way (the part that came out is in the crucible) and latches ``Jammed`` until
``ClearJam``. ``Stop`` aborts a dose.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from asyncua import ua
from labloop_simulators.background import background
from labloop_simulators.solid_state.chemistry import PRECURSORS
from labloop_simulators.solid_state.dispense import Dispenser, DispenserJam
from labloop_simulators.solid_state.faults import FaultRates

from .opcua_base import OpcuaTool, cancel, refuse, tool_method
from .world import World, at

NAMES = list(PRECURSORS)


class PowderDispenser(OpcuaTool):
    address_template = "opc.tcp://{host}:{port}/labloop/dispenser"
    object_name = "Dispenser"

    def __init__(self, world: str | None = None, jam_rate: float = 0.0, require_crucible: bool = True, **kw: Any):
        super().__init__(**kw)
        self.world = World(world)
        self.model = Dispenser(np.random.default_rng(self.seed), faults=FaultRates(dispenser_jam=jam_rate))
        self.require_crucible = require_crucible
        self.jam_next = False
        self.task: asyncio.Task[None] | None = None
        self.doses: list[tuple[str, float, float]] = []

    async def build(self) -> None:
        await self.var("Precursor", 0, ua.VariantType.Int32, writable=True)
        for name in ("Busy", "Done", "Jammed"):
            await self.var(name, False, ua.VariantType.Boolean)
        await self.var("LastDispensed", 0.0, ua.VariantType.Double)
        stocks = self.world.read()["stocks"]
        for name in NAMES:
            await self.var(f"Stock.{name}", float(stocks.get(name, 0.0)), ua.VariantType.Double)
        await self.method("Dispense", self._dispense, [ua.VariantType.Double], [ua.VariantType.Double])
        await self.method("Stop", self._stop, [], [ua.VariantType.Boolean])
        await self.method("ClearJam", self._clear, [], [ua.VariantType.Boolean])

    @tool_method
    async def _dispense(self, parent: Any, mass_g: float) -> float:
        if await self.get("Busy") or await self.get("Jammed"):
            raise refuse("BadInvalidState")
        index = int(await self.get("Precursor"))
        if not (0 <= index < len(NAMES)) or not (mass_g > 0):
            raise refuse("BadInvalidArgument")
        powder = NAMES[index]
        with self.world.transaction() as w:
            crucible = at(w, "dispenser")
            if crucible is None and self.require_crucible:
                raise refuse("BadInvalidState")
            if w["stocks"].get(powder, 0.0) < mass_g:
                raise refuse("BadOutOfRange")
        await self.set("Busy", True)
        await self.set("Done", False)
        self.task = background(self._dose(powder, float(mass_g), crucible))
        return float(mass_g)

    async def _dose(self, powder: str, mass_g: float, crucible: str | None) -> None:
        try:
            try:
                if self.jam_next:
                    self.jam_next = False
                    raise DispenserJam(powder, mass_g, mass_g * 0.4)
                out, seconds = self.model.dispense(powder, mass_g)
                jammed = False
            except DispenserJam as jam:
                out, seconds, jammed = jam.dispensed_g, 5.0 + self.model.seconds_per_g * jam.dispensed_g, True
            await asyncio.sleep(seconds / self.ts)
            with self.world.transaction() as w:
                w["stocks"][powder] = max(0.0, w["stocks"].get(powder, 0.0) - out)
                if crucible is not None:
                    powders = w["crucibles"][crucible]["powders"]
                    powders[powder] = powders.get(powder, 0.0) + out
                left = w["stocks"][powder]
            self.doses.append((powder, mass_g, out))
            await self.set(f"Stock.{powder}", float(left))
            await self.set("LastDispensed", float(out))
            await self.set("Jammed", jammed)
            await self.set("Done", not jammed)
        finally:
            await self.set("Busy", False)

    @tool_method
    async def _stop(self, parent: Any) -> bool:
        return await cancel(self.task)

    @tool_method
    async def _clear(self, parent: Any) -> bool:
        await self.set("Jammed", False)
        return True

    def fault(self, kind: str, **kw: Any) -> bool:
        if kind == "jam":
            self.jam_next = True
            return True
        return False

    def clear_faults(self) -> None:
        self.jam_next = False
        if "Jammed" in self.nodes:
            background(self.set("Jammed", False))

    def state(self) -> dict[str, Any]:
        return {"doses": [list(d) for d in self.doses]}
