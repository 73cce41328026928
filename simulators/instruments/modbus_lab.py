"""A furnace temperature controller and a mass-flow controller, served by pymodbus' own Modbus TCP server.

The physics runs on the simulator's clock (``time_scale`` model seconds per real second) and is advanced on every
request (pymodbus calls the device's ``action`` hook before it answers), so a reading is the state at the moment it
was asked for, with no ticking thread to race. Writes are validated as a controller does: a setpoint outside the
instrument's range is answered with Modbus exception 3 (illegal data value), a write to a measured register with
exception 2 (illegal address, pymodbus' read-only blocks).

Furnace register map (float32 big-endian word order = 2 registers):
  0 PV (C, read-only) | 2 SP (C) | 4 ramp rate (C/min, 0 = step) | 6 output (%, read-only) | 8 alarm word
  (read-only; bit 0 over-temperature, bit 1 sensor break, bit 2 deviation > 25 C) | 9 run (1) / standby (0) |
  10 working setpoint (C, read-only, the ramped SP)
Mass-flow controller: 0 SP (sccm) | 2 flow (sccm, read-only) | 4 valve drive (0.1 %, int16, read-only) |
  5 status word (read-only; bit 0 flow within 0.5 % of SP (0.2 % of full scale) for 0.5 s, bit 1 valve saturated) | 6 gas id
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from pymodbus.client import ModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

_F32 = ModbusTcpClient.DATATYPE.FLOAT32


def _f32(value: float) -> list[int]:
    return list(ModbusTcpClient.convert_to_registers(float(value), _F32))


def _from_f32(regs: list[int]) -> float:
    return float(ModbusTcpClient.convert_from_registers(list(regs), _F32))


class _ModbusModel:
    """Common ground: a pymodbus server on a shared register block whose ``action`` advances the model."""

    address_template = "tcp://{host}:{port}"
    size = 16
    readonly: tuple[tuple[int, int], ...] = ()  # (first register, count)
    floats: dict[int, tuple[float, float]] = {}  # writable float32 register -> accepted (low, high)

    def __init__(self, time_scale: float = 1.0, seed: int = 0, framer: str = "socket"):
        if framer not in ("socket", "rtu"):
            raise ValueError(f"framer {framer!r}: socket (Modbus TCP) or rtu (RTU frames over TCP, a gateway)")
        self.framer = framer
        if framer == "rtu":
            self.address_template = "rtu+tcp://{host}:{port}"
        self.time_scale = float(time_scale)
        self.rng = random.Random(seed)
        self._t = time.monotonic()
        self.regs: list[int] | None = None
        self.refuse_next: int | None = None  # an injected exception code for the next request

    async def serve(self, host: str) -> int:
        blocks, addr = [], 0
        for start, count in sorted(self.readonly):
            if start > addr:
                blocks.append(SimData(addr, count=start - addr, values=0, datatype=DataType.REGISTERS))
            blocks.append(SimData(start, count=count, values=0, datatype=DataType.REGISTERS, readonly=True))
            addr = start + count
        if addr < self.size:
            blocks.append(SimData(addr, count=self.size - addr, values=0, datatype=DataType.REGISTERS))
        device = SimDevice(id=0, simdata=blocks, action=self._action)
        from pymodbus import FramerType

        self.server = ModbusTcpServer(
            device, address=(host, 0), framer=FramerType.RTU if self.framer == "rtu" else FramerType.SOCKET
        )
        await self.server.serve_forever(background=True)
        return self.server.transport.sockets[0].getsockname()[1]

    async def _action(
        self, fc: int, start: int, address: int, count: int, regs: list[int], values: list[int] | list[bool] | None
    ) -> ExcCodes | None:
        if self.regs is None:
            self.regs = regs
            self.init()
        if self.refuse_next is not None:
            code, self.refuse_next = self.refuse_next, None
            return ExcCodes(code)
        now = time.monotonic()
        self.advance((now - self._t) * self.time_scale)
        self._t = now
        if values:
            for reg, (lo, hi) in self.floats.items():
                if address <= reg < address + count or address <= reg + 1 < address + count:
                    if not (address <= reg and reg + 1 < address + count):
                        return ExcCodes.ILLEGAL_ADDRESS  # half a float
                    v = _from_f32([int(x) for x in values[reg - address : reg - address + 2]])
                    if not (lo <= v <= hi) or math.isnan(v):
                        return ExcCodes.ILLEGAL_VALUE
            regs[address - start : address - start + count] = [int(x) for x in values]
            self.written(address, count)
        self.publish()
        return None

    def put_f32(self, reg: int, value: float) -> None:
        assert self.regs is not None
        self.regs[reg : reg + 2] = _f32(value)

    def get_f32(self, reg: int) -> float:
        assert self.regs is not None
        return _from_f32(self.regs[reg : reg + 2])

    # protocol-level faults, asked for by the parent -------------------------------------------------------------
    def fault(self, kind: str, **kw: Any) -> bool:
        if kind == "exception":
            self.refuse_next = int(kw.get("code", ExcCodes.DEVICE_FAILURE))
            return True
        return False

    def clear_faults(self) -> None:
        self.refuse_next = None

    # for subclasses ---------------------------------------------------------------------------------------------
    def init(self) -> None: ...

    def advance(self, dt: float) -> None: ...

    def written(self, address: int, count: int) -> None: ...

    def publish(self) -> None: ...


class FurnaceController(_ModbusModel):
    """A PID-held tube furnace: the working setpoint ramps toward SP at the ramp rate; the process value follows
    it with a first-order lag (``tau`` model seconds) and sensor noise; the output is the heater power the
    controller needs; alarms for over-temperature, sensor break (``fault("sensor_break")``) and deviation."""

    readonly = ((0, 2), (6, 3), (10, 2))
    floats = {2: (0.0, 1200.0), 4: (0.0, 1000.0)}

    def __init__(
        self, tau: float = 60.0, ambient: float = 25.0, noise: float = 0.05, alarm_high: float = 1150.0, **kw: Any
    ):
        super().__init__(**kw)
        self.tau, self.ambient, self.noise, self.alarm_high = float(tau), float(ambient), float(noise), alarm_high
        self.pv = self.wsp = self.sp = self.ambient
        self.rate = 0.0
        self.run = 1
        self.sensor_break = False

    def init(self) -> None:
        self.put_f32(2, self.sp)
        self.put_f32(4, self.rate)
        assert self.regs is not None
        self.regs[9] = self.run
        self.publish()

    def written(self, address: int, count: int) -> None:
        assert self.regs is not None
        self.sp, self.rate, self.run = self.get_f32(2), self.get_f32(4), int(self.regs[9])

    def advance(self, dt: float) -> None:
        if dt <= 0:
            return
        target = self.sp if self.run else self.ambient
        if self.rate > 0:
            step = self.rate / 60.0 * dt
            self.wsp += max(-step, min(step, target - self.wsp))
        else:
            self.wsp = target
        self.pv = self.wsp + (self.pv - self.wsp) * math.exp(-dt / self.tau)

    def publish(self) -> None:
        assert self.regs is not None
        pv = self.pv + self.rng.gauss(0.0, self.noise)
        self.put_f32(0, pv)
        output = (
            0.0
            if not self.run
            else max(0.0, min(100.0, 100 * (self.wsp - self.ambient) / 1200.0 + 2.0 * (self.wsp - self.pv)))
        )
        self.put_f32(6, output)
        self.put_f32(10, self.wsp)
        alarm = (pv > self.alarm_high) | (self.sensor_break << 1) | ((abs(self.wsp - pv) > 25.0) << 2)
        self.regs[8] = int(alarm)

    def fault(self, kind: str, **kw: Any) -> bool:
        if kind == "sensor_break":
            self.sensor_break = True
            return True
        return super().fault(kind, **kw)

    def clear_faults(self) -> None:
        super().clear_faults()
        self.sensor_break = False

    def state(self) -> dict[str, Any]:
        return {"pv": self.pv, "sp": self.sp, "working_sp": self.wsp, "ramp_rate": self.rate, "run": self.run}


class MassFlowController(_ModbusModel):
    """A thermal MFC: flow follows the setpoint with a short lag through a valve with a finite range; the status
    word says when the flow is stable (the completion rule of a move) or the valve is saturated."""

    readonly = ((2, 4),)
    floats = {0: (0.0, 500.0)}
    full_scale = 500.0

    def __init__(self, tau: float = 0.8, noise: float = 0.1, supply: float = 1.0, **kw: Any):
        super().__init__(**kw)
        self.tau, self.noise, self.supply = float(tau), float(noise), float(supply)
        self.sp = self.flow = 0.0
        self.in_band = 0.0  # model seconds the flow has been within the band of its setpoint

    def init(self) -> None:
        self.put_f32(0, 0.0)
        assert self.regs is not None
        self.regs[6] = 7  # gas id: N2
        self.publish()

    def advance(self, dt: float) -> None:
        if dt > 0:
            reachable = min(self.sp, self.full_scale * self.supply)
            self.flow = reachable + (self.flow - reachable) * math.exp(-dt / self.tau)
            band = max(0.002 * self.full_scale, 0.005 * self.sp)
            self.in_band = self.in_band + dt if abs(self.flow - self.sp) < band else 0.0

    def written(self, address: int, count: int) -> None:
        self.sp = self.get_f32(0)
        self.in_band = 0.0

    def publish(self) -> None:
        assert self.regs is not None
        flow = max(0.0, self.flow + self.rng.gauss(0.0, self.noise))
        self.put_f32(2, flow)
        valve = min(1000, int(1000 * self.flow / max(self.full_scale * self.supply, 1e-9)))
        self.regs[4] = valve
        stable = self.in_band >= 0.5  # the controller's own debounce: half a second within the band
        self.regs[5] = int(stable) | (int(valve >= 1000 and not stable) << 1)

    def state(self) -> dict[str, Any]:
        return {"sp": self.sp, "flow": self.flow}
