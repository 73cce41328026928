"""A box furnace's temperature controller on Modbus TCP (pymodbus' own server), driven by the box-furnace model.

One server (one process) per furnace, unit id 1 each, as four box furnaces have four controllers on four network
addresses: a furnace that trips, or whose server is killed, takes nothing else down, and ``labloop devices check``
starts exactly the one it checks. (One server with four unit ids would be one failure domain for all four.)

The thermal model is :class:`labloop_simulators.solid_state.furnace.BoxFurnace`'s (power-limited ramp, Newtonian
cooling with its time constant, the same exact exponential step), advanced on the simulator clock (``time_scale``
model seconds per real second) on every request and by a 0.2 s tick. Writing ``run = 1`` starts the program (ramp
to SP at the ramp rate, dwell, heater off); when the furnace has cooled below its unload temperature the program is
done: ``done`` is set (not after an abort, ``run = 0`` mid-program, nor a trip), ``run`` returns to 0, and every crucible in the furnace's slots (from the shared world) gets
the product the chemistry makes of its powders over the ACTUAL temperature history; some crack. A trip (seeded rate
per firing, or the control fault ``trip``, now, or ``trip_next``, during the next firing) cuts the heater and latches
the ``tripped`` bit until cleared or the next start. A cracked crucible (seeded rate, or the control fault ``crack``
for the next firing) spills its charge: the diffractometer then finds an empty crucible.

Register map (float32 = 2 registers, big-endian words):
  0 PV (degC, ro) | 2 SP = peak (degC) | 4 ramp rate (degC/min) | 6 dwell (min) | 8 status (ro: bit 0 running,
  bit 1 done, bit 2 tripped) | 9 run (1 start / 0 abort) | 10 atmosphere (0 air, 1 O2, 2 N2, 3 Ar) |
  11 crucible slots occupied (ro, 0..4) | 12 working setpoint (degC, ro) | 14 heater output (%, ro) |
  16 program tag (uint32, the client's name for the firing it writes) | 18 running program (uint32, ro: the tag
  latched when ``run = 1`` started the program, kept after it ends)

The latched tag is what a real controller's program number and event log give: evidence that the program running
(or done) is the one a client wrote, started after it wrote it. A client that died mid-firing reattaches with it:
the tag it would have written matches the latched one only if its ``run = 1`` reached the controller.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, ClassVar

import numpy as np
from labloop_simulators.background import background
from labloop_simulators.instruments.modbus_lab import _ModbusModel
from labloop_simulators.solid_state.chemistry import (
    ATMOSPHERES,
    PRECURSORS,
    Recipe,
    react,
)
from labloop_simulators.solid_state.faults import FaultRates
from labloop_simulators.solid_state.furnace import BoxFurnace, Profile

from .world import World, furnace_slots


def recipe_of(powders: dict[str, float], profile: Profile, milling_min: float = 60.0) -> Recipe | None:
    """The recipe a crucible's powders amount to (None without both a Li and a Mn source)."""
    mols = {n: g / PRECURSORS[n].molar_mass * PRECURSORS[n].cations for n, g in powders.items() if g > 0}
    li = max((n for n in mols if PRECURSORS[n].element == "Li"), key=mols.get, default=None)
    mn = max((n for n in mols if PRECURSORS[n].element == "Mn"), key=mols.get, default=None)
    if li is None or mn is None:
        return None
    ratio = min(2.0, max(0.5, mols[li] / mols[mn] / 0.5))
    return Recipe(
        li,
        mn,
        ratio,
        milling_min,
        profile.ramp_c_per_min,
        min(1200.0, max(25.0, profile.peak_c)),
        profile.dwell_h,
        profile.atmosphere,
    )


class BoxFurnaceController(_ModbusModel):
    readonly = ((0, 2), (8, 1), (11, 1), (12, 4), (18, 2))
    size = 20
    floats: ClassVar[dict[int, tuple[float, float]]] = {2: (0.0, 1200.0), 4: (0.1, 60.0), 6: (0.0, 6000.0)}

    def __init__(
        self,
        furnace: int = 1,
        world: str | None = None,
        trip_rate: float = 0.0,
        crack_rate: float = 0.0,
        tau_h: float = 3.0,
        **kw: Any,
    ):
        super().__init__(**kw)
        self.furnace = int(furnace)
        self.world = World(world)
        self.model = BoxFurnace(
            np.random.default_rng(kw.get("seed", 0) + 100 * self.furnace),
            tau_h=tau_h,
            faults=FaultRates(crucible_crack=crack_rate, furnace_trip=trip_rate),
        )
        self.temp = self.model.ambient_c
        self.sp, self.rate, self.dwell_min, self.atm, self.run = 25.0, 5.0, 0.0, 0, 0
        self.phase = "idle"  # idle | program | cooling (program over or heater cut: cooling to unload)
        self.t_prog = 0.0
        self.trip_at: float | None = None
        self.tripped = self.done = self.aborted = False
        self.history: tuple[list[float], list[float]] = ([], [])
        self.wsp = self.temp
        self.output = 0.0
        self.firings = 0
        self.program = 0  # the tag latched at the last start (register 18)
        self.trip_next = self.crack_next = False  # control faults: trip the next firing / crack its crucible

    async def serve(self, host: str) -> int:
        port = await super().serve(host)
        background(self._tick())
        return port

    async def _tick(self) -> None:
        import time

        while True:
            await asyncio.sleep(0.2)
            if self.regs is not None:
                now = time.monotonic()
                self.advance((now - self._t) * self.time_scale)
                self._t = now
                self.publish()

    def profile(self) -> Profile:
        return Profile(self.rate, self.sp, self.dwell_min / 60.0, ATMOSPHERES[self.atm if 0 <= self.atm < 4 else 0])

    def init(self) -> None:
        assert self.regs is not None
        self.put_f32(2, self.sp)
        self.put_f32(4, self.rate)
        self.put_f32(6, self.dwell_min)
        self.regs[9], self.regs[10] = self.run, self.atm
        self.publish()

    def written(self, address: int, count: int) -> None:
        assert self.regs is not None
        self.sp, self.rate, self.dwell_min = self.get_f32(2), self.get_f32(4), self.get_f32(6)
        self.atm = int(self.regs[10])
        run = int(self.regs[9])
        if run and not self.run:  # the program starts
            self.phase, self.t_prog, self.done, self.tripped, self.aborted = "program", 0.0, False, False, False
            self.history = ([0.0], [self.temp])
            self.firings += 1
            self.program = (int(self.regs[16]) << 16) | int(self.regs[17])
            p = self.profile()
            program_s = max(0.0, p.peak_c - self.model.ambient_c) / p.ramp_c_per_min * 60 + p.dwell_h * 3600
            self.trip_at = (
                float(self.model.rng.uniform(0, program_s))
                if self.model.rng.random() < self.model.faults.furnace_trip or self.trip_next
                else None
            )
            self.trip_next = False
        elif self.run and not run and self.phase == "program":  # aborted: heater off, it cools, never "done"
            self.phase, self.aborted = "cooling", True
        self.run = run

    def trip(self) -> None:
        self.tripped = True
        if self.phase == "program":
            self.phase = "cooling"

    def advance(self, dt: float) -> None:
        m = self.model
        while dt > 1e-9:
            h = min(dt, m.dt_s)
            dt -= h
            sp = None
            if self.phase == "program":
                if self.trip_at is not None and self.t_prog >= self.trip_at:
                    self.trip()
                else:
                    sp = m.setpoint(self.profile(), self.t_prog + h)
                    if sp is None:
                        self.phase = "cooling"
            decay = math.exp(-h / m.tau_s)
            u = 0.0
            if sp is not None:  # the power that lands exactly on sp after this step, clipped (as BoxFurnace.fire)
                u = (sp - m.ambient_c - (self.temp - m.ambient_c) * decay) / (1 - decay)
                u = min(max(u, 0.0), m.full_c - m.ambient_c)
            self.temp = m.ambient_c + u + (self.temp - m.ambient_c - u) * decay
            self.wsp, self.output = (sp if sp is not None else m.ambient_c), 100 * u / (m.full_c - m.ambient_c)
            if self.phase != "idle":
                self.t_prog += h
                self.history[0].append(self.t_prog)
                self.history[1].append(self.temp)
                if self.phase == "cooling" and self.temp < m.unload_below_c:
                    self.finish()

    def finish(self) -> None:
        """The firing is over: the crucibles in the slots get what the chemistry makes of the actual history."""
        self.phase = "idle"
        self.done = not (self.tripped or self.aborted)  # an aborted program did not complete: not done
        if self.regs is not None:
            self.regs[9] = 0
        self.run = 0
        p = self.profile()
        times, temps = np.array(self.history[0]), np.array(self.history[1])
        crack_p = min(1.0, self.model.faults.crucible_crack * (1 + p.ramp_c_per_min / 10))
        slots = set(furnace_slots(self.furnace))
        with self.world.transaction() as w:
            for c in w["crucibles"].values():
                if c["location"] not in slots:
                    continue
                c["firings"].append(
                    {
                        "furnace": self.furnace,
                        "peak_c": p.peak_c,
                        "ramp_c_per_min": p.ramp_c_per_min,
                        "dwell_h": p.dwell_h,
                        "atmosphere": p.atmosphere,
                        "tripped": self.tripped,
                        "max_c": float(temps.max()),
                    }
                )
                if self.crack_next or self.model.rng.random() < crack_p:
                    # the crucible cracks and its charge spills on the furnace floor: the diffractometer finds no
                    # powder in it (what spilled is kept in the world for a post-mortem)
                    self.crack_next = False
                    c["cracked"], c["product"], c["spilled"], c["powders"] = True, None, c["powders"], {}
                    continue
                recipe = recipe_of(c["powders"], p)
                if recipe is not None:
                    prod = react(recipe, times, temps)
                    c["product"] = {"fractions": prod.fractions, "crystallite_nm": prod.crystallite_nm}

    def occupied(self) -> int:
        slots = set(furnace_slots(self.furnace))
        return sum(1 for c in self.world.read()["crucibles"].values() if c["location"] in slots)

    def publish(self) -> None:
        assert self.regs is not None
        self.put_f32(0, self.temp + self.rng.gauss(0.0, 0.1))
        self.regs[8] = int(self.phase == "program") | (int(self.done) << 1) | (int(self.tripped) << 2)
        self.regs[11] = self.occupied()
        self.put_f32(12, self.wsp)
        self.put_f32(14, self.output)
        self.regs[18], self.regs[19] = self.program >> 16, self.program & 0xFFFF

    def fault(self, kind: str, **kw: Any) -> bool:
        if kind == "trip":  # now (a firing in progress is cut short; an idle furnace shows the alarm)
            self.trip()
            return True
        if kind == "trip_next":  # part-way through the next firing
            self.trip_next = True
            return True
        if kind == "crack":  # a crucible of the next firing cracks
            self.crack_next = True
            return True
        return super().fault(kind, **kw)

    def clear_faults(self) -> None:
        super().clear_faults()
        self.tripped = self.trip_next = self.crack_next = False

    def state(self) -> dict[str, Any]:
        return {
            "furnace": self.furnace,
            "temperature": self.temp,
            "phase": self.phase,
            "done": self.done,
            "tripped": self.tripped,
            "firings": self.firings,
            "program": self.program,
            "program_s": self.t_prog,
        }
