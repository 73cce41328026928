"""The powder diffractometer as a VISA ``TCPIP::SOCKET`` instrument speaking a small SCPI dialect, measuring the
crucible on its stage (the world's ``xrd`` location) with :func:`labloop_simulators.solid_state.xrd.pattern`.

What the crucible holds decides the pattern: the product the furnace made (phase fractions and crystallite size),
or for an unfired crucible its precursor powders (by mass), or nothing (background only). Commands: ``*IDN?``,
``*CLS``, ``:SYST:ERR?`` (``+0,"No error"`` or the oldest queued error), ``SCAN`` (start a 2-theta scan; it takes
``scan_s`` model seconds; ``-200,"Execution error; no sample"`` is queued with nothing on the stage, ``-213,"Init
ignored"`` while one runs), ``*OPC?`` (``1`` once the scan is done), ``BUSY?``, ``ABOR`` (abort), ``FETC?`` (the last
pattern: counts as a comma-separated list), ``TTH?`` (``start,stop,step`` in degrees), ``SAMP?`` (the code of the
crucible on the stage, ``NONE`` when empty; a diffractometer with a sample changer knows its position).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from labloop_simulators.instruments.lines import LineInstrument
from labloop_simulators.solid_state import xrd

from .world import World, at


class Diffractometer(LineInstrument):
    address_template = "TCPIP0::{host}::{port}::SOCKET"
    terminator = "\n"

    def __init__(
        self,
        world: str | None = None,
        time_scale: float = 1.0,
        scan_s: float = 300.0,
        seed: int = 0,
        require_sample: bool = True,
    ):
        self.world, self.ts, self.scan_s, self.require_sample = (
            World(world),
            float(time_scale),
            float(scan_s),
            require_sample,
        )
        self.rng = np.random.default_rng(seed)
        self.errors: list[str] = []
        self.scan: asyncio.Task[None] | None = None
        self.last = xrd.background()
        self.scanned: list[str] = []

    def phases(self) -> tuple[str | None, dict[str, float], float]:
        with self.world.transaction() as w:
            code = at(w, "xrd")
            if code is None:
                return None, {}, 50.0
            c = w["crucibles"][code]
        if c.get("product"):
            return code, dict(c["product"]["fractions"]), float(c["product"]["crystallite_nm"])
        total = sum(c["powders"].values())
        return code, ({p: g / total for p, g in c["powders"].items()} if total > 0 else {}), 50.0

    async def _scan(self, fractions: dict[str, float], size: float) -> None:
        await asyncio.sleep(self.scan_s / self.ts)
        self.last = await asyncio.to_thread(xrd.pattern, fractions, size, self.rng)

    async def answer(self, line: str) -> str | None:
        cmd = line.strip().upper()
        busy = self.scan is not None and not self.scan.done()
        if cmd == "*IDN?":
            return "labloop,SimXRD-CuKa,0,1.0"
        if cmd == "*CLS":
            self.errors.clear()
            return None
        if cmd in (":SYST:ERR?", "SYST:ERR?"):
            return self.errors.pop(0) if self.errors else '+0,"No error"'
        if cmd in ("SCAN", ":SCAN", "INIT"):
            if busy:
                self.errors.append('-213,"Init ignored"')
                return None
            code, fractions, size = self.phases()
            if code is None and self.require_sample:
                self.errors.append('-200,"Execution error; no sample on the stage"')
                return None
            self.scanned.append(code or "")
            self.scan = asyncio.ensure_future(self._scan(fractions, size))
            return None
        if cmd == "*OPC?":
            if self.scan is not None:
                try:
                    await self.scan
                except asyncio.CancelledError:
                    pass
            return "1"
        if cmd == "BUSY?":
            return "1" if busy else "0"
        if cmd in ("ABOR", ":ABOR"):
            if busy:
                self.scan.cancel()
            return None
        if cmd in ("FETC?", ":FETC?"):
            return ",".join(str(int(v)) for v in self.last)
        if cmd == "TTH?":
            t = xrd.TWO_THETA
            return f"{t[0]:g},{t[-1]:g},{t[1] - t[0]:.4g}"
        if cmd == "SAMP?":
            return self.phases()[0] or "NONE"
        self.errors.append(f'-113,"Undefined header; {line.strip()[:40]}"')
        return None

    def state(self) -> dict[str, Any]:
        return {"scanned": list(self.scanned), "errors": list(self.errors)}
