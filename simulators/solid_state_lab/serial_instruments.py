"""The balance (MT-SICS) and the barcode reader, each on a TCP socket as a serial-to-Ethernet server presents a
serial instrument (``socket://HOST:PORT`` for pyserial), both reading the shared world.

**Balance** (:class:`labloop_simulators.solid_state.balance.Balance`: first-order settling, linear drift removed by a
tare, readability noise; its own clock runs ``time_scale`` model seconds per real second). The load is the crucible
at the world's ``balance`` location (its own mass plus its powders), looked up on every command, so a crucible the
robot puts down is "placed" at that moment. ``S`` answers once the model's stability criterion holds (the simulated
settling time passes in real time) or ``S I`` after ``stable_wait``; ``SI`` answers at once (``S S``/``S D``);
``Z`` and ``T`` tare after stability (``Z A``, ``T S <tare> g``); an overload is ``S +``; anything else ``ES``.

**Barcode reader** (:class:`labloop_simulators.solid_state.barcode.BarcodeReader`): ``LON`` reads the crucible at its
``location`` (``balance`` in the lab: every crucible is weighed, so that is where identity is checked) and answers
its code, ``NOREAD`` when there is none or the label could not be read, or a plausible misread (one digit changed)
at the misread rate, or always for the next read after the control fault ``misread``. ``LOFF`` answers ``OK``.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import numpy as np
from labloop_simulators.instruments.lines import LineInstrument
from labloop_simulators.solid_state.balance import Balance
from labloop_simulators.solid_state.barcode import BarcodeReader
from labloop_simulators.solid_state.faults import FaultRates

from .world import CRUCIBLE_TARE_G, World


def load_at(world: World, location: str) -> tuple[str | None, float]:
    for code, c in world.read()["crucibles"].items():
        if c["location"] == location:
            return code, CRUCIBLE_TARE_G + sum(c["powders"].values())
    return None, 0.0


class MtSicsLabBalance(LineInstrument):
    address_template = "socket://{host}:{port}"
    terminator = "\r\n"

    def __init__(
        self,
        world: str | None = None,
        time_scale: float = 1.0,
        seed: int = 0,
        stable_wait: float = 60.0,
        location: str = "balance",
    ):
        self.world, self.ts, self.location = World(world), float(time_scale), location
        self.model = Balance(np.random.default_rng(seed))
        self.t0 = time.monotonic()
        self.stable_wait = float(stable_wait)
        self.load = 0.0
        self.requests: list[str] = []

    def sync(self) -> None:
        """Advance the model to now and put on the pan what the world says is there."""
        target = (time.monotonic() - self.t0) * self.ts
        if target > self.model.now:
            self.model.advance(target - self.model.now)
        _, load = load_at(self.world, self.location)
        if load != self.load:
            self.load = load
            self.model.place(load)

    def fmt(self, value: float) -> str:
        return f"{value:11.5f} g"

    async def answer(self, line: str) -> str:
        cmd = line.strip().upper()
        self.requests.append(cmd)
        self.sync()
        if cmd in ("S", "Z", "T"):
            if self.load > self.model.capacity_g:
                return f"{cmd} +"
            value, waited = self.model.weigh_stable(timeout_s=self.stable_wait)
            await asyncio.sleep(waited / self.ts)  # the settling takes its time on the simulator clock
            if value is None:
                return f"{cmd} I"
            if cmd == "S":
                return f"S S {self.fmt(value)}"
            self.model.tare()
            return "Z A" if cmd == "Z" else f"T S {self.fmt(value)}"
        if cmd == "SI":
            value = self.model.read()
            if math.isinf(value):
                return "S +"
            settled = abs(self.model._true_reading(self.model.now) - self.model._load) < 1e-4
            return f"S {'S' if settled else 'D'} {self.fmt(value)}"
        return "ES"

    def state(self) -> dict[str, Any]:
        return {"load": self.load, "requests": self.requests[-20:]}


class BarcodeScanner(LineInstrument):
    address_template = "socket://{host}:{port}"
    terminator = "\r\n"

    def __init__(
        self,
        world: str | None = None,
        location: str = "balance",
        misread_rate: float = 0.0,
        time_scale: float = 1.0,
        seed: int = 0,
        read_s: float = 0.3,
    ):
        self.world, self.location, self.ts, self.read_s = World(world), location, float(time_scale), float(read_s)
        self.reader = BarcodeReader(np.random.default_rng(seed), FaultRates(barcode_misread=misread_rate))
        self.misread_next = False
        self.reads: list[str] = []

    async def answer(self, line: str) -> str:
        cmd = line.strip().upper()
        if cmd == "LOFF":
            return "OK"
        if cmd != "LON":
            return "ERROR"
        await asyncio.sleep(self.read_s / self.ts)
        code, _ = load_at(self.world, self.location)
        if code is None:
            read = None
        elif self.misread_next:
            self.misread_next = False
            read = code[:-1] + str((int(code[-1]) + 1) % 10)
        else:
            read = self.reader.read(code)
        self.reads.append(read or "NOREAD")
        return read or "NOREAD"

    def fault(self, kind: str, **kw: Any) -> bool:
        if kind == "misread":
            self.misread_next = True
            return True
        return False

    def clear_faults(self) -> None:
        self.misread_next = False

    def state(self) -> dict[str, Any]:
        return {"location": self.location, "reads": self.reads[-20:]}
