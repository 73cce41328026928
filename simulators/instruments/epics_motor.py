"""A beamline sample stage's motor as a caproto IOC (Channel Access, its own process, 127.0.0.1 only).

The PVs a motor record offers that a scan uses, with prefix ``SIM:`` (``prefix`` option):

  SIM:m1        (VAL) the target position, mm; limits -50..50 (DRVL/DRVH as control limits: a put outside them
                is refused by the IOC)
  SIM:m1.RBV    the readback: the carriage moves toward VAL at VELO with a trapezoidal start (ACCL s to full
                speed), on the simulator's clock; encoder resolution MRES
  SIM:m1.DMOV   done moving: 0 while the motor moves, 1 when it is in position (what ophyd's EpicsMotor waits on)
  SIM:m1.VELO   speed, mm/s (0.01..20)
  SIM:m1.STOP   write 1 to stop where it is (VAL becomes the position)
  SIM:m1.HLS / SIM:m1.LLS  the limit switches (1 when the carriage sits on one)

Faults (``fault(kind)``): ``bad_status`` (RBV in INVALID alarm with status READ: the encoder is not read,
as an IOC reports it), ``sensor_break`` (the high limit switch trips, the motor stops there).

Why the search port is the proxy's: CA finds a PV by a UDP search to the IOC's server port and then opens a TCP
circuit to the port the search reply names. The IOC answers searches on the same port number as the fault proxy
in front of its TCP server (TCP and UDP ports are separate spaces; CA itself uses 5064 for both), and names the
proxy's port in its replies, so every circuit goes through the proxy (``fronted``, called by the simulator host).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import socket
import time
from typing import Any

from caproto import AlarmSeverity, AlarmStatus
from caproto.asyncio.server import Context
from caproto.server import PVGroup, pvproperty


class _Stage(PVGroup):
    val = pvproperty(name="m1", value=0.0, precision=4, units="mm", lower_ctrl_limit=-50.0,
                     upper_ctrl_limit=50.0)
    rbv = pvproperty(name="m1.RBV", value=0.0, precision=4, units="mm", read_only=True,
                     alarm_group="encoder")  # its own alarm: an encoder fault is not the whole record's
    dmov = pvproperty(name="m1.DMOV", value=1, read_only=True)
    velo = pvproperty(name="m1.VELO", value=2.0, units="mm/s", lower_ctrl_limit=0.01, upper_ctrl_limit=20.0)
    stop = pvproperty(name="m1.STOP", value=0)
    hls = pvproperty(name="m1.HLS", value=0, read_only=True)
    lls = pvproperty(name="m1.LLS", value=0, read_only=True)

    def __init__(self, model: "MotorIOC", **kw: Any):
        super().__init__(**kw)
        self.model = model

    @val.putter
    async def val(self, instance: Any, value: float) -> float:
        lo, hi = instance.lower_ctrl_limit, instance.upper_ctrl_limit
        if not lo <= value <= hi or math.isnan(value):
            raise ValueError(f"{value} is outside the drive limits [{lo}, {hi}]")
        self.model.move_to(value)
        await self.dmov.write(0)  # at once: a client waiting on DMOV never sees a stale 1
        return value

    @velo.putter
    async def velo(self, instance: Any, value: float) -> float:
        if not instance.lower_ctrl_limit <= value <= instance.upper_ctrl_limit:
            raise ValueError(f"speed {value} is outside [{instance.lower_ctrl_limit}, {instance.upper_ctrl_limit}]")
        self.model.velo = float(value)
        return value

    @stop.putter
    async def stop(self, instance: Any, value: int) -> int:
        if value:
            self.model.halt()
            await self.val.write(self.model.pos, verify_value=False)
        return 0

    @rbv.scan(period=0.02)
    async def rbv(self, instance: Any, async_lib: Any) -> None:
        m = self.model
        m.advance()
        if m.bad_status:
            await instance.write(m.reading(), status=AlarmStatus.READ, severity=AlarmSeverity.INVALID_ALARM)
        else:
            await instance.write(m.reading(), status=AlarmStatus.NO_ALARM, severity=AlarmSeverity.NO_ALARM)
        if self.dmov.value != int(not m.moving):
            await self.dmov.write(int(not m.moving))
        for pv, on in ((self.hls, m.at_high), (self.lls, m.at_low)):
            if pv.value != int(on):
                await pv.write(int(on))


class MotorIOC:
    address_template = "{host}:{port}"

    def __init__(self, prefix: str = "SIM:", time_scale: float = 1.0, velo: float = 2.0, accl: float = 0.2,
                 mres: float = 0.0005, high_limit: float = 48.0, low_limit: float = -48.0, seed: int = 0):
        self.prefix, self.time_scale = prefix, float(time_scale)
        self.velo, self.accl, self.mres = float(velo), float(accl), float(mres)
        self.high_limit, self.low_limit = float(high_limit), float(low_limit)
        self.rng = random.Random(seed)
        self.pos = self.target = 0.0
        self.speed = 0.0
        self.bad_status = self.tripped = False
        self._t = time.monotonic()

    # -- the IOC ---------------------------------------------------------------------------------------------------
    async def serve(self, host: str) -> int:
        logging.getLogger("caproto").setLevel(logging.ERROR)
        # beacons to loopback only; the search port is set by fronted() once the proxy's port is known
        os.environ.update(EPICS_CAS_AUTO_BEACON_ADDR_LIST="NO", EPICS_CAS_BEACON_ADDR_LIST=host,
                          EPICS_CAS_INTF_ADDR_LIST=host)
        self.group = _Stage(self, prefix=self.prefix)
        self.ctx = Context(self.group.pvdb, interfaces=[host])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # a free port, never CA's shared 5064
            probe.bind((host, 0))
            self.ctx.ca_server_port = probe.getsockname()[1]
        self.host = host
        self.task = asyncio.ensure_future(self.ctx.run())
        while self.ctx.port is None or host not in self.ctx.udp_socks:
            await asyncio.sleep(0.01)
        return int(self.ctx.port)

    async def fronted(self, port: int) -> None:
        """Answer searches on ``port`` (UDP) and name ``port`` (the proxy's TCP) in the replies."""
        self.ctx.ca_server_port = port
        await self.ctx._create_broadcaster_transport(self.host)
        self.ctx.port = port

    # -- the motor -------------------------------------------------------------------------------------------------
    def move_to(self, target: float) -> None:
        self.advance()
        self.target = float(target)

    def halt(self) -> None:
        self.advance()
        self.target, self.speed = self.pos, 0.0

    @property
    def moving(self) -> bool:
        return self.pos != self.target

    @property
    def at_high(self) -> bool:
        return self.tripped or self.pos >= self.high_limit

    @property
    def at_low(self) -> bool:
        return self.pos <= self.low_limit

    def advance(self) -> None:
        now = time.monotonic()
        dt, self._t = (now - self._t) * self.time_scale, now
        if dt <= 0 or not self.moving:
            return
        direction = 1.0 if self.target > self.pos else -1.0
        if (direction > 0 and self.at_high) or (direction < 0 and self.at_low):
            self.target, self.speed = self.pos, 0.0  # on a limit switch: the move ends there
            return
        self.speed = min(self.velo, self.speed + self.velo / max(self.accl, 1e-6) * dt)
        step = self.speed * dt
        if step >= abs(self.target - self.pos):
            self.pos, self.speed = self.target, 0.0
        else:
            self.pos += direction * step

    def reading(self) -> float:
        return round(self.pos / self.mres) * self.mres

    # -- faults and state, asked for by the parent -----------------------------------------------------------------
    def fault(self, kind: str, **kw: Any) -> bool:
        if kind == "bad_status":
            self.bad_status = True
            return True
        if kind == "sensor_break":
            self.tripped = True
            return True
        return False

    def clear_faults(self) -> None:
        self.bad_status = self.tripped = False

    def state(self) -> dict[str, Any]:
        return {"pos": self.pos, "target": self.target, "moving": self.moving, "velo": self.velo}
