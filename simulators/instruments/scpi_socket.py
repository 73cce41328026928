"""The SCPI source-measure unit of ``labloop_simulators.endpoints.scpi_smu_server`` (four-point probe on a thin
film, compliance, error queue, integration time) served as a VISA ``TCPIP::SOCKET`` instrument for pyvisa-py.

Why not pyvisa-sim alone: its dialogues answer each query with a constant or a stored property; a reading here
depends on the source current, the sense mode and the film, takes its integration time, and wrong values queue
SCPI errors. The physics is the existing SMU model's; this module only adds ``INIT`` (start a reading; ``*OPC?``
answers when it is done) and ``FETC?`` (the last reading) and serves it on an asyncio socket.
"""

from __future__ import annotations

import asyncio
from typing import Any

from labloop_simulators.endpoints.scpi_smu_server import ScpiSmuServer

from .lines import LineInstrument


class ScpiSocketSmu(LineInstrument):
    address_template = "TCPIP0::{host}::{port}::SOCKET"
    terminator = "\n"

    def __init__(self, **options: Any):
        self.smu = ScpiSmuServer(**options)
        self.last = ""
        self.pending: asyncio.Task[str] | None = None

    async def answer(self, line: str) -> str | None:
        cmd = line.strip().upper()
        if cmd in ("INIT", ":INIT", ":INIT:IMM"):
            self.pending = asyncio.ensure_future(asyncio.to_thread(self.smu.handle, ":READ?"))
            return None
        if cmd == "*OPC?":
            if self.pending is not None:
                self.last = (await self.pending) or ""
                self.pending = None
            return "1"
        if cmd in ("FETC?", ":FETC?"):
            return self.last or self.smu.handle(":READ?")
        return await asyncio.to_thread(self.smu.handle, line)

    def fault(self, kind: str, **kw: Any) -> bool:
        if kind == "film":
            self.smu.sheet_resistance = float(kw["sheet_resistance"])
            return True
        return False

    def state(self) -> dict[str, Any]:
        s = self.smu
        return {
            "output": s.output,
            "four_wire": s.four_wire,
            "source_current": s.source_current,
            "source_func": s.source_func,
            "sense_func": s.sense_func,
            "errors": list(s.errors),
        }
