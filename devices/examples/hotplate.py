"""A hotplate on TCP: the example driver of docs/drivers.md.

Protocol (one line per request, one reply line each): ``SETP <celsius>`` -> ``OK``; ``TEMP?`` -> ``TEMP <celsius>``;
``OFF`` -> ``OK``; a refused request -> ``ERR <text>``.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, ClassVar

from labloop_devices.base import Health, Station
from labloop_devices.tcp import LineTransport, ReplyError, TcpDevice, parse_fields
from ophyd import Component as Cpt
from ophyd import Signal

from labloop.errors import DeviceError


class Hotplate(TcpDevice, Station):
    """Heats the sample to ``temperature`` (C) and holds it for ``hold_s`` seconds."""

    simulator: ClassVar[str] = "labloop_simulators.endpoints.hotplate_server:HotplateServer"
    limits = {"temperature": (20.0, 300.0), "hold_s": (0.0, 3600.0)}
    process_signals = ("temperature",)
    temperature = Cpt(Signal, value=math.nan, kind="hinted", doc="Plate temperature (C).")

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str,
        host: str,
        port: int = 7000,
        tolerance: float = 1.0,
        poll: float = 0.05,
        timeout: float = 1.0,
        status_timeout: float = 900.0,
        **kwargs: Any,
    ):
        super().__init__(prefix, name=name, **kwargs)
        self.transport = LineTransport(host, port, timeout=timeout, name=name)
        self._transports = (self.transport,)  # the conformance kit's reconnect check uses these
        self.tolerance, self.poll = tolerance, poll
        self.default_timeout = status_timeout
        self._stop = threading.Event()

    def set(self, recipe: Any) -> Any:
        self._stop.clear()  # a new recipe: forget an earlier stop()
        return super().set(recipe)

    def run_recipe(self, recipe: dict[str, Any]) -> None:
        target, hold = float(recipe["temperature"]), float(recipe.get("hold_s", 0.0))
        self._command(f"SETP {target:g}")
        deadline = time.monotonic() + self.default_timeout
        while abs(self._read_temperature() - target) > self.tolerance:  # ramp
            self._pause(deadline)
        end = time.monotonic() + hold
        while time.monotonic() < end:  # hold, recording the temperature
            self._read_temperature()
            self._pause(deadline)

    def stop(self, *, success: bool = False) -> None:
        self._stop.set()
        try:
            self._command("OFF")
        except DeviceError:
            pass  # unreachable: nothing more we can do from here
        super().stop(success=success)

    def health(self) -> Health:
        try:
            return Health(True, f"ready at {self._read_temperature():.1f} C")
        except DeviceError as exc:
            return Health(False, exc.problem)

    def conformance_hints(self) -> dict[str, Any]:
        return {"setpoint": {"temperature": 60.0, "hold_s": 0.05}}  # quick and safe for the conformance kit

    def _pause(self, deadline: float) -> None:
        if self._stop.wait(self.poll):
            raise DeviceError(f"{self.name}: recipe stopped (stop() was called)", "run the recipe again")
        if time.monotonic() > deadline:
            raise DeviceError(
                f"{self.name}: temperature not reached in {self.default_timeout:g} s",
                "check the heater; raise status_timeout for slow ramps",
            )

    def _command(self, line: str) -> None:
        reply = self.transport.query(line)
        if reply.startswith("ERR"):
            raise DeviceError(f"{self.name}: the hotplate refused {line!r}: {reply!r}", "check the setpoint")
        if reply != "OK":
            raise ReplyError(self.name, line, reply, "'OK' or 'ERR <text>'")

    def _read_temperature(self) -> float:
        raw = self.transport.query("TEMP?")
        if not raw.startswith("TEMP "):
            raise ReplyError(self.name, "TEMP?", raw, "'TEMP <celsius>'")
        (value,) = parse_fields(self.name, "TEMP?", raw[5:], 1)
        self.temperature.put(value)
        return value
