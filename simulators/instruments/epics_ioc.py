"""A temperature controller IOC served by caproto's own Channel Access server (asyncio), on its own search port.

PVs (``prefix`` default ``SIM:TC1:``): ``T`` (C, the sensor, read-only), ``T:SP`` (setpoint; a put outside
[``low``, ``high``] is refused, as a record with DRVL/DRVH... would clamp, this one says no), ``T:RATE`` (ramp, C/s,
0 = step), ``HEATER`` (%), ``AT_SP`` (1 when T has been within ``band`` of the setpoint for ``settle`` model s: the
done PV a move waits for), ``ALARM``. T follows the ramped setpoint with a first-order lag (``tau`` model seconds),
scanned every ``scan`` s.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import socket
from typing import Any

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty
from labloop_simulators.background import background


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EpicsTemperatureIoc:
    address_template = "ca://{host}:{port}"
    proxied = False  # CA announces its TCP port in search replies: a TCP proxy cannot stand in front of it

    def __init__(
        self,
        prefix: str = "SIM:TC1:",
        time_scale: float = 1.0,
        tau: float = 20.0,
        low: float = 0.0,
        high: float = 400.0,
        band: float = 0.5,
        settle: float = 2.0,
        scan: float = 0.05,
        seed: int = 0,
    ):
        self.prefix, self.ts, self.tau, self.low, self.high = prefix, float(time_scale), tau, low, high
        self.band, self.settle, self.scan = band, settle, scan
        self.rng = random.Random(seed)
        self.t = self.wsp = 25.0
        self.in_band = 0.0

    async def serve(self, host: str, port: int = 0) -> int:
        port = port or _free_port(host)
        os.environ["EPICS_CA_SERVER_PORT"] = str(port)  # this process only: the search port clients ask
        os.environ["EPICS_CAS_INTF_ADDR_LIST"] = host
        sim = self

        class Group(PVGroup):
            T = pvproperty(value=25.0, name="T", read_only=True, precision=3, units="C")
            SP = pvproperty(
                value=25.0, name="T:SP", precision=2, units="C", lower_ctrl_limit=sim.low, upper_ctrl_limit=sim.high
            )
            RATE = pvproperty(value=0.0, name="T:RATE", units="C/s")
            HEATER = pvproperty(value=0.0, name="HEATER", read_only=True, units="%")
            AT_SP = pvproperty(value=1, name="AT_SP", read_only=True, dtype=ChannelType.LONG)
            ALARM = pvproperty(value=0, name="ALARM", read_only=True, dtype=ChannelType.LONG)

            @SP.putter
            async def SP(self, instance: Any, value: float) -> float:
                if not sim.low <= value <= sim.high:
                    raise ValueError(f"setpoint {value} outside [{sim.low}, {sim.high}]")
                sim.in_band = 0.0
                await self.AT_SP.write(0)
                return value

            @T.scan(period=sim.scan)
            async def T(self, instance: Any, async_lib: Any) -> None:
                dt = sim.scan * sim.ts
                sp, rate = self.SP.value, self.RATE.value
                step = rate * dt if rate > 0 else math.inf
                sim.wsp += max(-step, min(step, sp - sim.wsp))
                sim.t = sim.wsp + (sim.t - sim.wsp) * math.exp(-dt / sim.tau)
                sim.in_band = sim.in_band + dt if abs(sim.t - sp) < sim.band else 0.0
                await instance.write(sim.t + sim.rng.gauss(0.0, 0.01))
                await self.HEATER.write(max(0.0, min(100.0, (sim.wsp - 25.0) / 4 + 2 * (sim.wsp - sim.t))))
                at = int(sim.in_band >= sim.settle)
                if at != self.AT_SP.value:
                    await self.AT_SP.write(at)

        from caproto.asyncio.server import Context

        self.group = Group(prefix=self.prefix)
        self.ctx = Context(self.group.pvdb, interfaces=[host])
        self.task = asyncio.ensure_future(self.ctx.run(log_pv_names=False))
        await asyncio.sleep(0.2)
        return port

    def fault(self, kind: str, **kw: Any) -> bool:
        if kind == "alarm":
            background(self.group.ALARM.write(1))
            return True
        return False

    def state(self) -> dict[str, Any]:
        return {"t": self.t, "sp": self.group.SP.value, "at_sp": self.group.AT_SP.value}
