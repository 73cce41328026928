"""A robot arm run by a PLC with an OPC UA server (``Robot`` object: ``Move``/``Stop``/``Reset`` methods, ``Busy``,
``At``, ``Holding``, ``Fault`` variables), driven through labloop's OPC UA transport.

Why Python and not YAML: the declarative schema describes stations and instruments (recipes of numbers and
measurements); a robot's move names two positions and a sample. The transport still does the protocol work
(connect, timeouts, reconnect, errors naming transport and address). ``set(Move)`` starts the move, then polls
``Busy`` until the arm is done, failing at once on a ``Fault`` (a protective stop's reason) or on ``stop()``, which
calls ``Stop`` on the arm. The move names the sample it carries, so the arm's own record (``Placed``: what it
put where, kept by the arm controller) can say later where that sample went (:meth:`placed`).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, ClassVar

from labloop_devices.base import Health, Move, Robot

from labloop.errors import DeviceError
from labloop.transports.opcua import OpcuaCommand, OpcuaPoint, OpcuaTransport

NS = "ns=2;s=Robot"


def lab_positions() -> tuple[str, ...]:
    """The solid-state lab's taught positions: rack, stations, furnace slots (furnace N slot S is ``fNsS``)."""
    return tuple(
        [f"rack{i:02d}" for i in range(1, 25)]
        + ["dispenser", "balance", "xrd"]
        + [f"f{n}s{s}" for n in range(1, 5) for s in range(1, 5)]
    )


class OpcuaRobot(Robot):
    simulator: ClassVar[str] = "labloop_simulators.solid_state_lab.robot:RobotEndpoint"
    default_timeout = 120.0

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str,
        address: str,
        timeout: float = 2.0,
        positions: list[str] | None = None,
        poll: float = 0.05,
        **kwargs: Any,
    ):
        super().__init__(prefix, name=name, **kwargs)
        self.transport = OpcuaTransport(address, timeout=timeout, name=name)
        self.positions = tuple(positions or lab_positions())
        self.poll = poll
        self._stop = threading.Event()

    def _value(self, var: str) -> Any:
        return self.transport.read(OpcuaPoint(node=f"{NS}.{var}"))

    def _call(self, method: str, *args: Any) -> Any:
        return self.transport.command(OpcuaCommand(object=NS, method=f"{NS}.{method}", args=list(args)))

    def transports(self) -> tuple[Any, ...]:
        return (self.transport,)

    def disconnect(self) -> None:
        self.transport.close()

    def conformance_hints(self) -> dict[str, Any]:
        # two stations that are empty at rest: the kit's repeated moves then carry nothing into nothing
        return {"setpoint": Move("conformance", "xrd", "balance")}

    def set(self, move: Move) -> Any:  # type: ignore[override]
        self._stop.clear()
        return super().set(move)

    def do_move(self, move: Move) -> None:
        fault = self._value("Fault")
        if fault:
            raise DeviceError(
                f"{self.name}: the arm is in a fault ({fault}; opcua {self.transport.address})",
                "clear the cause, then call Reset on the arm",
            )
        self._call("Move", move.source, move.destination, move.sample)  # the tag the arm's record keeps
        self.holding.put(move.sample)
        deadline = time.monotonic() + (self.default_timeout or 120.0)
        while True:
            self._stop.wait(self.poll)
            if self._stop.is_set():
                self._call("Stop")  # stop() may have reached the arm before this move did: halt it too
                raise DeviceError(
                    f"{self.name}: move of {move.sample} {move.source} -> {move.destination} "
                    "stopped (stop() was called)",
                    "check where the sample is, then move it again",
                )
            busy, fault = self._value("Busy"), self._value("Fault")
            self.at.put(str(self._value("At")))
            if fault:
                raise DeviceError(
                    f"{self.name}: move of {move.sample} {move.source} -> {move.destination}: {fault} "
                    f"(opcua {self.transport.address})",
                    "find and remove the cause, check the sample, then call Reset on the arm",
                )
            if not busy:
                break
            if time.monotonic() > deadline:
                raise DeviceError(
                    f"{self.name}: move {move.source} -> {move.destination} not done after {self.default_timeout:g} s",
                    "check the arm",
                )
        self.holding.put("")

    def placed(self) -> dict[str, str] | None:
        """The arm controller's record: position -> the tag of what it last put there and has not taken since
        (None: an arm whose controller keeps no such record)."""
        try:
            raw = self._value("Placed")
        except DeviceError as exc:
            if "BadNodeIdUnknown" in str(exc):
                return None
            raise
        try:
            record = json.loads(str(raw))
        except ValueError:
            raise DeviceError(
                f"{self.name}: the arm's record of placed samples is not JSON: {str(raw)[:80]!r}",
                "check the arm controller's Placed table",
            ) from None
        return {str(k): str(v) for k, v in dict(record).items()}

    def forget(self, position: str) -> None:
        """Clear the arm's record at ``position`` (an operator emptied it by hand)."""
        self._call("Forget", position)

    def stop(self, *, success: bool = False) -> None:
        self._stop.set()
        try:
            self._call("Stop")
        except DeviceError:
            pass  # unreachable: the move's Status fails on the stop event anyway
        super().stop(success=success)

    def health(self) -> Health:
        try:
            fault = self._value("Fault")
        except DeviceError as exc:
            return Health(False, exc.problem)
        return Health(not fault, fault or f"ready (opcua {self.transport.address})")
