"""EPICS Channel Access (beamlines, facility process variables) through caproto's threading client.

Address: ``ca://`` (search where the process's ``EPICS_CA_ADDR_LIST`` says, as every CA client does) or
``ca://HOST:PORT`` (a CA server's search address; it is added to this process's ``EPICS_CA_ADDR_LIST``, with
``EPICS_CA_AUTO_ADDR_LIST=NO`` unless already set: CA searches are per process). A point is a PV name; a command is
a put *with completion callback* (``pv``, ``value``: ``"{value}"`` for the recipe value), the CA way of "run and
wait until done". A refused put (the IOC's putter raised, ECA_PUTFAIL) is a :class:`RefusedError`; a PV that does
not connect in time, a disconnect, a timeout are :class:`TransportError` naming the PV.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from .base import PointModel, RefusedError, Transport


class EpicsPoint(PointModel):
    pv: str


class EpicsCommand(PointModel):
    pv: str
    value: Any = "{value}"


class EpicsTransport(Transport):
    kind = "epics"
    Point = EpicsPoint
    Command = EpicsCommand

    def __init__(self, address: str = "ca://", **options: Any):
        super().__init__(address, **options)
        self._ctx: Any = None
        self._pvs: dict[str, Any] = {}

    def _open(self) -> None:
        from caproto.threading.client import Context, SharedBroadcaster

        url = urlparse(self.address)
        if url.scheme != "ca":
            raise self.error("connect", f"unknown address scheme '{url.scheme}'", fix="write ca:// or ca://HOST:PORT")
        if url.hostname:
            here = f"{url.hostname}:{url.port}" if url.port else url.hostname
            listed = os.environ.get("EPICS_CA_ADDR_LIST", "").split()
            if here not in listed:
                os.environ["EPICS_CA_ADDR_LIST"] = " ".join(listed + [here])
            os.environ.setdefault("EPICS_CA_AUTO_ADDR_LIST", "NO")
        self._ctx = Context(SharedBroadcaster(), timeout=self.connect_timeout)

    def _close(self) -> None:
        ctx, self._ctx = self._ctx, None
        self._pvs = {}
        if ctx is not None:
            ctx.disconnect()
            ctx.broadcaster.disconnect()

    def _idle_dropped(self) -> bool:
        """A channel lost since the last request (IOC restarted, circuit closed): start afresh, searching now,
        instead of waiting out caproto's search back-off."""
        return any(not pv.connected for pv in self._pvs.values())

    def _pv(self, name: str) -> Any:
        pv = self._pvs.get(name)
        if pv is None:
            (pv,) = self._ctx.get_pvs(name, timeout=self.connect_timeout)
            self._pvs[name] = pv
        try:
            pv.wait_for_connection(timeout=self.connect_timeout)
        except TimeoutError:
            raise self.failure(
                f"PV {name} did not connect within {self.connect_timeout:g} s (CA disconnect, or "
                "no server answers its search)"
            ) from None
        return pv

    def _read(self, point: EpicsPoint) -> Any:
        data = self._pv(point.pv).read(timeout=self.timeout).data
        value = data[0] if len(data) == 1 else list(data)
        return value.decode() if isinstance(value, bytes) else (value.item() if hasattr(value, "item") else value)

    def _put(self, name: str, value: Any, timeout: float) -> None:
        from caproto import CaprotoTimeoutError, ErrorResponseReceived

        pv = self._pv(name)
        try:
            pv.write([value], wait=True, timeout=timeout)
        except ErrorResponseReceived as exc:
            raise self.failure(
                f"the IOC refused {value!r} on {name}: {exc}",
                RefusedError,
                "check the value against the record's limits and state",
            ) from None
        except CaprotoTimeoutError:
            # caproto's threading client drops the IOC's ECA_PUTFAIL reply to a put with callback: ask the PV
            try:
                now = self._read(EpicsPoint(pv=name))
            except Exception:
                raise
            raise self.failure(
                f"the IOC did not complete the put of {value!r} on {name} within {timeout:g} s and "
                f"{name} reads {now!r}: refused (a record's limits or state) or still processing",
                RefusedError,
                "check the value against the record's limits and state",
            ) from None

    def _write(self, point: EpicsPoint, value: Any) -> None:
        self._put(point.pv, value, self.timeout)

    def _command(self, command: EpicsCommand, args: dict[str, Any], timeout: float) -> Any:
        value = args.get("value") if command.value == "{value}" else command.value
        self._put(command.pv, value, timeout)
        return None
