"""EPICS Channel Access through caproto's threading client (what ophyd's caproto control layer uses).

Address: where to search for the PVs, as a CA address list: ``HOST[:PORT]`` (an IOC, or a CA gateway), several
separated by spaces; the port is the server port (5064 unless the IOC says otherwise). ``auto`` searches as the
environment says (``EPICS_CA_ADDR_LIST`` / ``EPICS_CA_AUTO_ADDR_LIST``, i.e. broadcast on a beamline network).
An explicit list is this transport's own: it does not touch the process environment, so devices on different IOCs
in one process do not see each other's settings, and nothing broadcasts off the machine.

A point is a PV name. ``put_callback`` (default true) writes with completion (CA put-callback: the IOC answers when
the record has processed); a motor record's VAL answers its put-callback only when the move ends, so give it
``put_callback: false`` and make the move's completion rule its done PV (``.DMOV``).

What comes back: a value in INVALID alarm (the IOC cannot vouch for it: a sensor or an encoder not read) is a
:class:`RefusedError` naming the alarm status (the circuit is healthy and kept); an IOC that refuses a put
(ECA_PUTFAIL, e.g. beyond the drive limits) is a :class:`RefusedError` with the IOC's message; no IOC answering
the search, a dropped circuit or a timeout drops the connection (a fresh context searches again next time).
"""

from __future__ import annotations

import threading
from typing import Any

import caproto as ca
from caproto._utils import get_address_and_port_from_string
from caproto.threading.client import Context, SharedBroadcaster, VirtualCircuitManager
from pydantic import Field

from .base import PointModel, RefusedError, ReplyError, Transport, TransportError


class EpicsPoint(PointModel):
    pv: str = Field(min_length=1, description="The PV's name (record.FIELD).")
    put_callback: bool = Field(True, description="Write with completion (false for a motor record's VAL).")


class _Broadcaster(SharedBroadcaster):
    """caproto's broadcaster, searching this transport's address list instead of the process environment's."""

    def __init__(self, addresses: list[tuple[str, int]] | None, **kw: Any):
        self._addresses = addresses
        super().__init__(**kw)

    def send(self, *commands: Any) -> None:
        if self._addresses is None:
            return super().send(*commands)
        data = self.broadcaster.send(*commands)
        for host_port in self._addresses:
            sock = self.udp_sock
            if sock is None:
                return None
            try:
                sock.sendto(data, host_port)
            except OSError as ex:
                raise ca.CaprotoNetworkError(f"{ex} while searching {host_port[0]}:{host_port[1]}") from ex
        return None


class _Circuit(VirtualCircuitManager):
    """caproto's circuit manager, keeping the bytes that came back (shown when they make no sense) and delivering
    an IOC's error reply to the put that waits for it (caproto's threading client only logs it)."""

    __slots__ = ("transport",)

    def received(self, bytes_recv: bytes, address: Any) -> Any:
        self.transport._rx = (self.transport._rx + bytes(bytes_recv))[-256:]
        return super().received(bytes_recv, address)

    def _process_command(self, command: Any) -> Any:
        if isinstance(command, ca.ErrorResponse):
            info = self.ioids.pop(command.original_request.parameter2, None)
            if info is not None and info.get("event") is not None:
                info["response"] = command
                info["event"].set()
                return None
        return super()._process_command(command)


class _Context(Context):
    """caproto's client context, making its circuits :class:`_Circuit` (as ``Context.get_circuit_manager`` does)."""

    def __init__(self, transport: "EpicsTransport", broadcaster: Any, **kw: Any):
        self._transport = transport
        super().__init__(broadcaster, **kw)

    def get_circuit_manager(self, address: Any, priority: Any) -> Any:
        with self._lock_during_get_circuit_manager:
            cm = self.circuit_managers.get((address, priority), None)
            if cm is None or cm.dead.is_set():
                circuit = ca.VirtualCircuit(our_role=ca.CLIENT, address=address, priority=priority,
                                            protocol_version=self.broadcaster.server_protocol_versions[address])
                cm = _Circuit.__new__(_Circuit)
                cm.transport = self._transport
                cm.__init__(self, circuit, self.selector)
                self.circuit_managers[(address, priority)] = cm
            return cm


class EpicsTransport(Transport):
    kind = "epics"
    Point = EpicsPoint

    def __init__(self, address: str, **options: Any):
        super().__init__(address, **options)
        self._ctx: Any = None
        self._broadcaster: Any = None
        self._pvs: dict[str, Any] = {}
        self._rx = b""
        self._pv_lock = threading.Lock()

    # -- connection ---------------------------------------------------------------------------------------------
    def _open(self) -> None:
        addresses = None
        if self.address.strip().lower() != "auto":
            try:
                addresses = [get_address_and_port_from_string(a, 5064) for a in self.address.split()]
            except ValueError:
                raise self.error("connect", f"'{self.address}' is not a CA address list", ReplyError,
                                 "write HOST[:PORT] (several separated by spaces), or auto") from None
            if not addresses:
                raise self.error("connect", "the address list is empty", ReplyError, "write HOST[:PORT] or auto")
        self._broadcaster = _Broadcaster(addresses)
        self._ctx = _Context(self, self._broadcaster, timeout=self.timeout)
        self._pvs = {}

    def _close(self) -> None:
        ctx, bc, self._ctx, self._broadcaster, self._pvs = self._ctx, self._broadcaster, None, None, {}
        if ctx is not None:
            ctx.disconnect(wait=False)
        if bc is not None:
            bc.disconnect(wait=False)

    def _idle_dropped(self) -> bool:
        for pv in self._pvs.values():
            cm = pv.circuit_manager
            if cm is not None and cm.dead.is_set():
                return True
        return False

    def _pv(self, name: str) -> Any:
        pv = self._pvs.get(name)
        if pv is None:
            pv = self._pvs[name] = self._ctx.get_pvs(name, timeout=self.timeout)[0]
        try:
            pv.wait_for_connection(timeout=self.connect_timeout)
        except ca.CaprotoTimeoutError:
            raise self.failure(f"no IOC answered the search for PV {name} within {self.connect_timeout:g} s"
                               f"{self._raw()}", TransportError,
                               "check the PV name, that its IOC runs and that the address list reaches it") \
                from None
        return pv

    # -- values -------------------------------------------------------------------------------------------------
    def _read(self, point: EpicsPoint) -> Any:
        self._rx = b""
        pv = self._pv(point.pv)
        native = pv.channel.native_data_type
        try:
            reply = pv.read(data_type=ca.field_types["time"][native], timeout=self.timeout)
        except ca.CaprotoTimeoutError:
            raise self.failure(f"no reply in time (none within {self.timeout:g} s){self._raw()}") from None
        severity = getattr(reply.metadata, "severity", 0)
        if severity == ca.AlarmSeverity.INVALID_ALARM:
            status = ca.AlarmStatus(reply.metadata.status).name
            raise self.failure(f"PV {point.pv} is in INVALID alarm (status {status}): the IOC cannot vouch for "
                               "its value", RefusedError, "check the hardware behind this record")
        return _plain(reply.data, native)

    def _write(self, point: EpicsPoint, value: Any) -> None:
        self._rx = b""
        pv = self._pv(point.pv)
        data = [value.encode() if isinstance(value, str) else value]
        try:
            reply = pv.write(data, wait=point.put_callback, timeout=self.timeout)
        except ca.CaprotoTimeoutError:
            raise self.failure(f"no reply in time (none within {self.timeout:g} s){self._raw()}") from None
        if isinstance(reply, ca.ErrorResponse):
            message = reply.error_message
            message = bytes(message).split(b"\0")[0].decode(errors="replace")
            raise self.failure(f"the IOC refused the put: {reply.status.name} ({message})", RefusedError,
                               "check the value against the record's limits") from None

    def _raw(self) -> str:
        return f"; raw reply {self._rx!r}" if self._rx else ""


def _plain(data: Any, native: Any) -> Any:
    """CA's array reply as a plain Python value (a scalar for one element, text for strings)."""
    values = list(data)
    values = [v.decode(errors="replace") if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v
              for v in values]
    if native in (ca.ChannelType.CHAR,) and values and isinstance(values[0], int):
        return bytes(values).split(b"\0")[0].decode(errors="replace")
    return values[0] if len(values) == 1 else values
