"""A PLC-run jacketed reactor served by asyncua's own OPC UA server (a real opc.tcp endpoint, its own process).

What a reactor's PLC exposes, under ``Objects/Reactor`` in the namespace ``urn:labloop:sim:reactor`` (string node
ids ``Reactor.<Name>``):

  Temperature (Double, degC, read-only): follows the working setpoint with a first-order lag (``tau`` model s) and
      sensor noise; the working setpoint ramps toward TemperatureSetpoint at RampRate (degC/min, 0 = step).
  TemperatureSetpoint (Double, writable 5..180), RampRate (Double, writable 0..600), Run (Boolean, writable:
      standby = the jacket goes back to ambient), StirrerSetpoint (Double rpm 0..1500), StirrerSpeed (read-only,
      follows with a short lag), HeaterOutput (Double %, read-only), DosedVolume (Double mL, read-only, total).
  State (String, read-only): Standby, Heating, Holding, Dosing (what the PLC is doing).
  OverTemperature, SensorFault (Boolean alarms, read-only).
  Dose(volume_mL: Double) -> accepted mL: starts the pump (``dose_rate`` mL per model second) and returns at once,
      as PLC methods do; DoseComplete (Boolean) falls, and rises when the whole volume is in (the dose takes
      simulated time). BadInvalidState in Standby or while dosing, BadOutOfRange outside 0..50 mL.
  Abort(): stops dosing (DoseComplete stays false) and heating (Run = false); so does writing Run = false.

The PLC's scan cycle (every ``scan`` real seconds) advances the model on the simulator's clock (``time_scale``
model seconds per real second) and publishes it, so subscriptions see changes as they happen. Writes are checked
as a PLC does: a value outside a setpoint's range is answered BadOutOfRange and changes nothing; a write to a
measured value BadNotWritable (asyncua's access levels).

Faults (``fault(kind)``): ``bad_status`` (Temperature's value carries BadSensorFailure: the sensor's status, as
OPC UA reports it), ``sensor_break`` (the SensorFault alarm).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from typing import Any

from asyncua import Server, ua
from asyncua.common.methods import uamethod

NAMESPACE = "urn:labloop:sim:reactor"
_RANGES = {"TemperatureSetpoint": (5.0, 180.0), "RampRate": (0.0, 600.0), "StirrerSetpoint": (0.0, 1500.0),
           "DoseVolume": (0.0, 50.0)}


class JacketedReactor:
    address_template = "opc.tcp://{host}:{port}"

    def __init__(self, time_scale: float = 1.0, tau: float = 120.0, ambient: float = 22.0, noise: float = 0.05,
                 dose_rate: float = 0.5, alarm_high: float = 170.0, scan: float = 0.02, seed: int = 0):
        self.time_scale, self.tau, self.ambient, self.noise = float(time_scale), float(tau), float(ambient), noise
        self.dose_rate, self.alarm_high, self.scan = float(dose_rate), float(alarm_high), float(scan)
        self.rng = random.Random(seed)
        self.pv = self.wsp = self.ambient
        self.values: dict[str, Any] = {"TemperatureSetpoint": self.ambient, "RampRate": 0.0, "Run": True,
                                       "StirrerSetpoint": 0.0, "DoseVolume": 0.0}
        self.stirrer = 0.0
        self.dosed = 0.0
        self.dose_left = 0.0  # mL still to pump in the running Dose()
        self.dose_complete = True  # the last dose delivered its whole volume
        self.bad_status = False
        self.sensor_fault = False
        self.nodes: dict[str, Any] = {}
        self._t = time.monotonic()

    # -- the server -----------------------------------------------------------------------------------------------
    async def serve(self, host: str) -> int:
        logging.getLogger("asyncua").setLevel(logging.ERROR)
        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://{host}:0")
        server.set_server_name("labloop simulated jacketed reactor")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace(NAMESPACE)
        reactor = await server.nodes.objects.add_object(ua.NodeId("Reactor", ns), ua.QualifiedName("Reactor", ns))
        variables: list[tuple[str, Any, ua.VariantType, bool]] = [
            ("Temperature", self.pv, ua.VariantType.Double, False),
            ("TemperatureSetpoint", self.values["TemperatureSetpoint"], ua.VariantType.Double, True),
            ("RampRate", 0.0, ua.VariantType.Double, True),
            ("Run", True, ua.VariantType.Boolean, True),
            ("StirrerSetpoint", 0.0, ua.VariantType.Double, True),
            ("StirrerSpeed", 0.0, ua.VariantType.Double, False),
            ("DoseVolume", 0.0, ua.VariantType.Double, True),
            ("HeaterOutput", 0.0, ua.VariantType.Double, False),
            ("WorkingSetpoint", self.wsp, ua.VariantType.Double, False),
            ("DosedVolume", 0.0, ua.VariantType.Double, False),
            ("State", "Holding", ua.VariantType.String, False),
            ("OverTemperature", False, ua.VariantType.Boolean, False),
            ("SensorFault", False, ua.VariantType.Boolean, False),
            ("DoseComplete", True, ua.VariantType.Boolean, False),
        ]
        for name, value, vtype, writable in variables:
            node = await reactor.add_variable(ua.NodeId(f"Reactor.{name}", ns), ua.QualifiedName(name, ns),
                                              ua.Variant(value, vtype))
            if writable:
                await node.set_writable()
            self.nodes[name] = node
        self._by_id = {node.nodeid: name for name, node in self.nodes.items()}
        await reactor.add_method(ua.NodeId("Reactor.Dose", ns), ua.QualifiedName("Dose", ns), uamethod(self._dose),
                                 [ua.VariantType.Double], [ua.VariantType.Double])
        await reactor.add_method(ua.NodeId("Reactor.Abort", ns), ua.QualifiedName("Abort", ns),
                                 uamethod(self._abort), [], [])
        self._guard_writes(server)
        await server.start()
        self.server = server
        self._scan_task = asyncio.ensure_future(self._scan())
        return int(server.bserver.port)  # type: ignore[union-attr]

    def _guard_writes(self, server: Server) -> None:
        """Refuse out-of-range setpoints (BadOutOfRange) before they reach the address space, as a PLC does, and
        take accepted ones into the model."""
        service = server.iserver.attribute_service
        original = service.write

        async def write(params: ua.WriteParameters, user: Any = None, **kw: Any) -> list[ua.StatusCode]:
            results = []
            for wv in params.NodesToWrite:
                name = self._by_id.get(wv.NodeId)
                value = wv.Value.Value.Value if wv.Value is not None and wv.Value.Value is not None else None
                if name in _RANGES and wv.AttributeId == ua.AttributeIds.Value:
                    lo, hi = _RANGES[name]
                    if not isinstance(value, (int, float)) or math.isnan(value) or not lo <= value <= hi:
                        results.append(ua.StatusCode(ua.StatusCodes.BadOutOfRange))
                        continue
                one = ua.WriteParameters(NodesToWrite=[wv])
                status = (await (original(one, user=user) if user is not None else original(one)))[0]
                if status.is_good() and name in self.values and wv.AttributeId == ua.AttributeIds.Value:
                    self._advance()
                    self.values[name] = value
                    if name == "Run" and not value:
                        self.dose_left = 0.0  # standby ends a dose: not complete
                results.append(status)
            return results

        service.write = write  # type: ignore[method-assign]

    # -- the PLC program ------------------------------------------------------------------------------------------
    def _advance(self) -> None:
        now = time.monotonic()
        dt, self._t = (now - self._t) * self.time_scale, now
        if dt <= 0:
            return
        run = bool(self.values["Run"])
        target = float(self.values["TemperatureSetpoint"]) if run else self.ambient
        rate = float(self.values["RampRate"])
        if rate > 0:
            step = rate / 60.0 * dt
            self.wsp += max(-step, min(step, target - self.wsp))
        else:
            self.wsp = target
        self.pv = self.wsp + (self.pv - self.wsp) * math.exp(-dt / self.tau)
        stir = float(self.values["StirrerSetpoint"]) if run else 0.0
        self.stirrer = stir + (self.stirrer - stir) * math.exp(-dt / 2.0)
        if self.dose_left > 0 and run:
            pumped = min(self.dose_left, self.dose_rate * dt)
            self.dose_left -= pumped
            self.dosed += pumped
            if self.dose_left <= 1e-9:
                self.dose_left, self.dose_complete = 0.0, True

    def _state(self) -> str:
        if not self.values["Run"]:
            return "Standby"
        if self.dose_left > 0:
            return "Dosing"
        return "Heating" if abs(self.wsp - self.pv) > 1.0 or self.wsp != self.values["TemperatureSetpoint"] \
            else "Holding"

    async def _scan(self) -> None:
        while True:
            self._advance()
            await self._publish()
            await asyncio.sleep(self.scan)

    async def _publish(self) -> None:
        pv = self.pv + self.rng.gauss(0.0, self.noise)
        out = 0.0 if not self.values["Run"] else max(0.0, min(100.0, 100 * (self.wsp - self.ambient) / 200.0
                                                             + 3.0 * (self.wsp - self.pv)))
        if self.bad_status:
            temp = ua.DataValue(ua.Variant(pv, ua.VariantType.Double),
                                StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure))
        else:
            temp = ua.DataValue(ua.Variant(pv, ua.VariantType.Double))
        await self.nodes["Temperature"].write_value(temp)
        published = {"StirrerSpeed": self.stirrer, "HeaterOutput": out, "WorkingSetpoint": self.wsp,
                     "DosedVolume": self.dosed}
        for name, value in published.items():
            await self.nodes[name].write_value(ua.Variant(float(value), ua.VariantType.Double))
        await self.nodes["State"].write_value(ua.Variant(self._state(), ua.VariantType.String))
        await self.nodes["OverTemperature"].write_value(ua.Variant(pv > self.alarm_high, ua.VariantType.Boolean))
        await self.nodes["SensorFault"].write_value(ua.Variant(self.sensor_fault, ua.VariantType.Boolean))
        await self.nodes["DoseComplete"].write_value(ua.Variant(self.dose_complete, ua.VariantType.Boolean))

    async def _dose(self, parent: Any, volume: float) -> Any:
        """Start pumping ``volume`` mL and return at once, as PLC methods do (a long method would hold up every
        other request of the session: asyncua, like most servers, answers a connection's requests in order)."""
        if not self.values["Run"] or self.dose_left > 0:
            return ua.StatusCode(ua.StatusCodes.BadInvalidState)
        if not isinstance(volume, (int, float)) or math.isnan(volume) or not 0.0 <= volume <= 50.0:
            return ua.StatusCode(ua.StatusCodes.BadOutOfRange)
        self._advance()
        self.dose_left, self.dose_complete = float(volume), volume == 0
        await self._publish()  # the done bit falls now, not at the next scan: a client polling it never sees a stale 1
        return float(volume)

    async def _abort(self, parent: Any) -> None:
        self._advance()
        self.dose_left = 0.0  # aborted: DoseComplete stays false (the volume was not delivered)
        self.values["Run"] = False
        await self.nodes["Run"].write_value(ua.Variant(False, ua.VariantType.Boolean))

    # -- faults and state, asked for by the parent -----------------------------------------------------------------
    def fault(self, kind: str, **kw: Any) -> bool:
        if kind == "bad_status":
            self.bad_status = True
            return True
        if kind == "sensor_break":
            self.sensor_fault = True
            return True
        return False

    def clear_faults(self) -> None:
        self.bad_status = self.sensor_fault = False

    def state(self) -> dict[str, Any]:
        return {"pv": self.pv, "working_sp": self.wsp, "dosed": self.dosed, "dosing": self.dose_left > 0,
                "dose_complete": self.dose_complete, "state": self._state(), **self.values}
