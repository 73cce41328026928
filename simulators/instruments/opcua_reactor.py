"""A PLC-run stirred reactor served by asyncua's own OPC UA server (namespace ``urn:labloop:sim:reactor``, index 2).

Nodes under ``Objects/Reactor``: ``Temperature`` (C, read-only: the PLC measures it), ``TemperatureSetpoint`` (C),
``StirrerSpeed`` (rpm), ``State`` (``Idle``/``Running``), ``Alarm`` (bool), and the method ``RunProgram(minutes)``
that runs a timed program (the call returns when it is done, ``minutes`` model minutes later, with the final
temperature; a negative duration is refused with ``BadInvalidArgument``; a call while one runs with
``BadInvalidState``). The jacket temperature follows the setpoint with a first-order lag (``tau`` model seconds),
updated by the PLC scan (``scan`` s).
"""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

from asyncua import Server, ua
from asyncua.common.methods import uamethod
from labloop_simulators.background import background


class OpcuaReactor:
    address_template = "opc.tcp://{host}:{port}/labloop/reactor"

    def __init__(
        self,
        time_scale: float = 1.0,
        tau: float = 30.0,
        ambient: float = 22.0,
        noise: float = 0.02,
        scan: float = 0.05,
        seed: int = 0,
    ):
        self.ts, self.tau, self.ambient, self.noise, self.scan = float(time_scale), tau, ambient, noise, scan
        self.rng = random.Random(seed)
        self.temperature = ambient
        self.running = False
        self.calls: list[float] = []

    async def serve(self, host: str) -> int:
        import socket

        with socket.socket() as s:  # asyncua needs the port before it binds: take a free one
            s.bind((host, 0))
            port = s.getsockname()[1]
        server = Server()
        await server.init()
        server.set_endpoint(self.address_template.format(host=host, port=port))
        server.set_server_name("labloop simulated reactor")
        idx = await server.register_namespace("urn:labloop:sim:reactor")
        reactor = await server.nodes.objects.add_object(ua.NodeId("Reactor", idx), ua.QualifiedName("Reactor", idx))

        async def var(name: str, value: Any, vtype: ua.VariantType, writable: bool) -> Any:
            node = await reactor.add_variable(
                ua.NodeId(f"Reactor.{name}", idx), ua.QualifiedName(name, idx), ua.Variant(value, vtype)
            )
            if writable:
                await node.set_writable()
            return node

        self.t_node = await var("Temperature", self.ambient, ua.VariantType.Double, False)
        self.sp_node = await var("TemperatureSetpoint", self.ambient, ua.VariantType.Double, True)
        self.stir_node = await var("StirrerSpeed", 0.0, ua.VariantType.Double, True)
        self.state_node = await var("State", "Idle", ua.VariantType.String, False)
        self.alarm_node = await var("Alarm", False, ua.VariantType.Boolean, False)
        await reactor.add_method(
            ua.NodeId("Reactor.RunProgram", idx),
            ua.QualifiedName("RunProgram", idx),
            self._run_program,
            [ua.VariantType.Double],
            [ua.VariantType.Double],
        )
        self.server = server
        await server.start()
        self.scan_task = asyncio.ensure_future(self._scan())
        return port

    @uamethod
    async def _run_program(self, parent: Any, minutes: float) -> float:
        if minutes < 0 or math.isnan(minutes):
            raise ua.UaStatusCodeError(ua.StatusCodes.BadInvalidArgument)
        if self.running:
            raise ua.UaStatusCodeError(ua.StatusCodes.BadInvalidState)
        self.running = True
        self.calls.append(minutes)
        await self.state_node.write_value("Running")
        try:
            await asyncio.sleep(minutes * 60.0 / self.ts)
        finally:
            self.running = False
            await self.state_node.write_value("Idle")
        return self.temperature

    async def _scan(self) -> None:
        while True:
            await asyncio.sleep(self.scan)
            sp = await self.sp_node.read_value()
            dt = self.scan * self.ts
            self.temperature = sp + (self.temperature - sp) * math.exp(-dt / self.tau)
            await self.t_node.write_value(self.temperature + self.rng.gauss(0.0, self.noise))

    def fault(self, kind: str, **kw: Any) -> bool:
        if kind == "alarm":
            background(self.alarm_node.write_value(True))
            return True
        return False

    def clear_faults(self) -> None:
        if hasattr(self, "alarm_node"):
            background(self.alarm_node.write_value(False))

    def state(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "running": self.running, "calls": list(self.calls)}
