"""An analytical balance speaking MT-SICS (level 0/1) on a TCP socket, as a serial-to-Ethernet server would.

Physics: the pan's reading approaches the load with a damped oscillation after each change (``settle`` model
seconds), on a slow thermal drift of the zero (``drift`` g per model hour) with noise. ``S`` answers once the
reading is stable (its readings over the last 0.5 model seconds agree within 1.5 digits) or ``S I`` after ``stable_wait``;
``SI`` answers at once (``S S`` or ``S D`` for dynamic); ``Z`` zeroes (after stability), ``T`` tares. A sample is
"placed" with the control fault ``place`` (mass in g); every ``S`` after a placement sees the new load.
Replies: ``S S <w> g``, ``Z A``, ``T S <w> g``, ``ES`` for a command it does not know.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any

from .lines import LineInstrument


class MtSicsBalance(LineInstrument):
    address_template = "socket://{host}:{port}"
    terminator = "\r\n"

    def __init__(
        self,
        time_scale: float = 1.0,
        settle: float = 1.5,
        drift: float = 0.002,
        noise: float = 2e-5,
        stable_wait: float = 10.0,
        seed: int = 0,
        load: float = 0.0,
    ):
        self.ts, self.settle, self.drift, self.noise = float(time_scale), float(settle), float(drift), float(noise)
        self.stable_wait = float(stable_wait)
        self.rng = random.Random(seed)
        self.t0 = time.monotonic()
        self.load, self.load_at, self.previous = float(load), 0.0, 0.0
        self.zero = self.tare = 0.0
        self.requests: list[str] = []

    # -- physics ------------------------------------------------------------------------------------------------
    def now(self) -> float:
        return (time.monotonic() - self.t0) * self.ts

    def true_reading(self, t: float) -> float:
        age = t - self.load_at
        tau = self.settle / 5
        swing = (self.previous - self.load) * math.exp(-age / tau) * math.cos(2 * math.pi * age / (2 * tau))
        return self.load + swing + self.drift * t / 3600.0

    def reading(self) -> float:
        return self.true_reading(self.now()) + self.rng.gauss(0.0, self.noise) - self.zero - self.tare

    def stable(self) -> bool:
        t = self.now()  # as a balance does: the readings of the last half second agree within 1.5 digits
        window = [self.true_reading(max(t - 0.05 * k, 0.0)) for k in range(11)]
        return max(window) - min(window) < 1.5e-4

    async def wait_stable(self) -> bool:
        deadline = time.monotonic() + self.stable_wait / self.ts
        while not self.stable():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    # -- protocol -----------------------------------------------------------------------------------------------
    async def answer(self, line: str) -> str:
        cmd = line.strip().upper()
        self.requests.append(cmd)
        if cmd == "S":
            return f"S S {self.reading():11.5f} g" if await self.wait_stable() else "S I"
        if cmd == "SI":
            return f"S {'S' if self.stable() else 'D'} {self.reading():11.5f} g"
        if cmd == "Z":
            if not await self.wait_stable():
                return "Z I"
            self.zero = self.true_reading(self.now()) - self.tare
            return "Z A"
        if cmd == "T":
            if not await self.wait_stable():
                return "T I"
            self.tare = self.true_reading(self.now()) - self.zero
            return f"T S {self.tare:11.5f} g"
        if cmd == "TAC":
            self.tare = 0.0
            return "TAC A"
        return "ES"

    def fault(self, kind: str, **kw: Any) -> bool:
        if kind == "place":
            t = self.now()
            self.previous, self.load, self.load_at = self.true_reading(t), float(kw.get("mass", 1.0)), t
            return True
        return False

    def state(self) -> dict[str, Any]:
        return {"load": self.load, "zero": self.zero, "tare": self.tare, "requests": self.requests[-20:]}
