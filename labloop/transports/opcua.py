"""OPC UA (binary, opc.tcp) through asyncua's client: the tools a PLC runs (reactors, coaters, glove boxes).

Address: ``opc.tcp://HOST:PORT[/path]`` (``opc.tcp://user:password@HOST:PORT`` for a user login). Security modes
beyond None are not configured here (a subclass hook can set certificates on ``transport.client``).

A point is a variable's node id (``ns=2;s=Reactor.Temperature``, or ``nsu=URN;s=...``: the namespace by its URI,
which survives a server renumbering its namespaces) and optionally its OPC UA type for writes (by default the
node's own data type, read once per connection). A command is a method: the object that owns it, the method's
node id and the names of the arguments passed (a setpoint's command receives ``value``); its result is the
method's output (one value, or a list). The call waits up to the command's own timeout; PLC methods usually
start an operation and return (the completion rule is then a done variable), since a server answers the requests
of one session in order and a method that blocks would hold up every read and the stop.

Why asyncua's async client on one private event-loop thread, not ``asyncua.sync``: the transport needs the raw
bytes that came back (a garbled reply is shown in the error), per-call timeouts for methods that take minutes,
and no background traffic (asyncua's health probe is switched off: labloop's own reconnect rule applies; a
probe would also race the request under test). A bad status the server returns (BadOutOfRange on a write,
BadSensorFailure on a read, a method refused) is a :class:`RefusedError` naming the status: the session is
healthy and kept. A lost connection, a timeout or a status that means the session or channel is gone drops the
connection; the next request reconnects.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
from typing import Any, Literal

from asyncua import Client, ua
from asyncua.ua.status_codes import get_name_and_doc
from asyncua.ua.ua_binary import struct_from_binary
from pydantic import Field, field_validator

from .base import PointModel, RefusedError, ReplyError, Transport

_NODE_ID = re.compile(r"^(ns=\d+;|nsu=[^;]+;)?[isgb]=.+$")
_TYPES = Literal["Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float",
                 "Double", "String"]
#: status codes that mean the session or the channel is gone (reconnect), not that the server said no
_LOST = {"BadSessionIdInvalid", "BadSessionClosed", "BadSessionNotActivated", "BadSecureChannelClosed",
         "BadSecureChannelIdInvalid", "BadConnectionClosed", "BadCommunicationError", "BadServerHalted",
         "BadShutdown", "BadTimeout", "BadTooManySessions", "BadNotConnected", "BadDisconnect"}


def _node_id(v: str) -> str:
    if not _NODE_ID.match(v.strip()):
        raise ValueError(f"{v!r} is not an OPC UA node id: write ns=2;s=Name, ns=2;i=1001 or nsu=URN;s=Name")
    return v.strip()


class OpcUaPoint(PointModel):
    node: str = Field(description="The variable's node id (ns=2;s=..., nsu=URN;s=..., i=2258).")
    type: _TYPES | None = Field(None, description="Its OPC UA type for writes (default: the node's data type).")

    _check = field_validator("node")(classmethod(lambda cls, v: _node_id(v)))


class OpcUaCommand(PointModel):
    object: str = Field(description="Node id of the object that owns the method.")
    method: str = Field(description="Node id of the method.")
    args: list[str] = Field(default_factory=list, description="Names of the arguments passed, in order.")
    types: list[_TYPES] | None = Field(None, description="Their OPC UA types (default: inferred from the values).")

    _check = field_validator("object", "method")(classmethod(lambda cls, v: _node_id(v)))


#: how long the server keeps a session we could not close (ms): a short time frees it soon after a lost connection
SESSION_TIMEOUT_MS = 60_000
if logging.getLogger("asyncua").level == logging.NOTSET:
    # asyncua warns about routine events (a revised timeout, closing a session whose socket is gone); labloop
    # reports what matters as DeviceErrors. An application that configures the "asyncua" logger keeps its choice.
    logging.getLogger("asyncua").setLevel(logging.ERROR)


class _Loop:
    """One asyncio loop on a daemon thread, shared by every OPC UA transport in the process."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def run(cls, coro: Any, timeout: float) -> Any:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="labloop-opcua", daemon=True).start()
                cls._loop = loop
        future = asyncio.run_coroutine_threadsafe(coro, cls._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout:g} s") from None


class OpcUaTransport(Transport):
    kind = "opcua"
    Point = OpcUaPoint
    Command = OpcUaCommand

    def __init__(self, address: str, **options: Any):
        super().__init__(address, **options)
        self.client: Any = None
        self._rx = b""
        self._types: dict[str, ua.VariantType] = {}
        self._ns: dict[str, int] = {}

    # -- connection ---------------------------------------------------------------------------------------------
    def _open(self) -> None:
        if not self.address.startswith("opc.tcp://"):
            raise self.error("connect", f"'{self.address}' is not an opc.tcp:// address", ReplyError,
                             "write opc.tcp://HOST:PORT (the server's endpoint URL)")
        # no health probe (watchdog) and no auto-reconnect: one request at a time, labloop reconnects
        self.client = Client(self.address, timeout=self.timeout, watchdog_intervall=86400.0)
        self.client.session_timeout = SESSION_TIMEOUT_MS
        self._types, self._ns = {}, {}
        _Loop.run(self._connect(self.client), self.connect_timeout + 1.0)

    async def _connect(self, client: Any) -> None:
        await asyncio.wait_for(client.connect(), self.connect_timeout)
        proto = client.uaclient.protocol
        received = proto.data_received

        def record(data: bytes) -> None:  # what came back, shown when it cannot be understood
            self._rx = (self._rx + bytes(data))[-256:]
            received(data)

        proto.data_received = record

    def _close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                _Loop.run(self._disconnect(client), self.timeout + 1.0)
            finally:
                client.disconnect_socket()

    async def _disconnect(self, client: Any) -> None:
        proto = client.uaclient.protocol
        if proto is None or proto.is_closed:
            try:
                await client.close_session()  # stops its background tasks; the session itself is gone with the socket
            except Exception:  # noqa: BLE001
                pass
            return
        try:
            await asyncio.wait_for(client.disconnect(), self.timeout)
        except Exception:  # noqa: BLE001 - a broken session is closed by dropping its socket
            client.disconnect_socket()

    def _idle_dropped(self) -> bool:
        proto = getattr(getattr(self.client, "uaclient", None), "protocol", None)
        return proto is None or proto.is_closed

    # -- values -------------------------------------------------------------------------------------------------
    def _read(self, point: OpcUaPoint) -> Any:
        return self._run(self._aread(point), self.timeout)

    async def _aread(self, point: OpcUaPoint) -> Any:
        node = self.client.get_node(await self._resolve(point.node))
        return _plain(await node.read_value())

    def _write(self, point: OpcUaPoint, value: Any) -> None:
        self._run(self._awrite(point, value), self.timeout)

    async def _awrite(self, point: OpcUaPoint, value: Any) -> None:
        node = self.client.get_node(await self._resolve(point.node))
        vtype = getattr(ua.VariantType, point.type) if point.type else self._types.get(point.node)
        if vtype is None:
            vtype = self._types[point.node] = await node.read_data_type_as_variant_type()
        try:
            variant = ua.Variant(_coerce(value, vtype), vtype)
        except (TypeError, ValueError, OverflowError) as exc:
            raise self.failure(f"{value!r} is not a {vtype.name}: {exc}", ReplyError,
                               "write a value of the node's type") from None
        await node.write_value(ua.DataValue(variant))

    def _command(self, command: OpcUaCommand, args: dict[str, Any], timeout: float) -> Any:
        return self._run(self._acall(command, args, timeout), timeout)

    async def _acall(self, command: OpcUaCommand, args: dict[str, Any], timeout: float) -> Any:
        missing = [a for a in command.args if a not in args]
        if missing:
            raise self.failure(f"the method needs argument(s) {missing}; given {sorted(args)}", ReplyError,
                               "name the method's arguments in the command's 'args'")
        values = [args[a] for a in command.args]
        types = [getattr(ua.VariantType, t) for t in command.types] if command.types else [None] * len(values)
        request = ua.CallRequest()
        request.Parameters.MethodsToCall = [ua.CallMethodRequest(
            ObjectId=await self._resolve(command.object), MethodId=await self._resolve(command.method),
            InputArguments=[ua.Variant(_coerce(v, t), t) if t else ua.Variant(v) for v, t in zip(values, types)])]
        # the method's own timeout, not the read timeout: a dose or a program may take minutes
        data = await self.client.uaclient.protocol.send_request(request, timeout)
        response = struct_from_binary(ua.CallResponse, data)
        response.ResponseHeader.ServiceResult.check()
        result = response.Results[0]
        result.StatusCode.check()
        out = [_plain(v.Value) for v in result.OutputArguments or []]
        return None if not out else out[0] if len(out) == 1 else out

    async def _resolve(self, node: str) -> ua.NodeId:
        if node.startswith("nsu="):
            uri, _, rest = node[4:].partition(";")
            if uri not in self._ns:
                try:
                    self._ns[uri] = await self.client.get_namespace_index(uri)
                except ValueError:
                    raise self.failure(f"the server has no namespace '{uri}'", ReplyError,
                                       "check the node id's nsu= against the server's namespace array") from None
            node = f"ns={self._ns[uri]};{rest}"
        return ua.NodeId.from_string(node)

    # -- running a request on the loop, and what its failures mean ------------------------------------------------
    def _run(self, coro: Any, timeout: float) -> Any:
        self._rx = b""
        try:
            return _Loop.run(asyncio.wait_for(coro, timeout), timeout + 1.0)
        except ua.UaStatusCodeError as exc:
            code = getattr(exc, "code", None)
            name, doc = get_name_and_doc(code) if code is not None else (type(exc).__name__, str(exc))
            if name in _LOST:
                raise self.failure(f"OPC UA status {name} ({doc})", ReplyError) from None
            raise self.failure(f"OPC UA bad status {name} ({doc})", RefusedError,
                               "check the node, the value and the tool's state against its documentation") from None
        except (asyncio.TimeoutError, TimeoutError):
            raise self.failure(f"no reply in time (none it could read within {timeout:g} s){self._raw()}") from None

    def _raw(self) -> str:
        return f"; raw reply {self._rx!r}" if self._rx else ""

    def _as_error(self, what: str, exc: BaseException) -> Any:
        err = super()._as_error(what, exc)
        if self._rx and "raw reply" not in err.got:
            err = self.error(what, err.got + self._raw(), type(err), err.fix)
        return err

def _coerce(value: Any, vtype: ua.VariantType) -> Any:
    if vtype == ua.VariantType.Boolean:
        return bool(value)
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        return float(value)
    if vtype == ua.VariantType.String:
        return str(value)
    if vtype.name.startswith(("Int", "UInt", "SByte", "Byte")):
        if float(value) != int(float(value)):
            raise ValueError("not a whole number")
        return int(float(value))
    return value


def _plain(value: Any) -> Any:
    """An OPC UA value as a plain Python value (text for localized text and enumerations)."""
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, ua.QualifiedName):
        return value.Name
    return value
