"""OPC UA tools (reactors, glove boxes, coaters run by a PLC; OPC UA LADS devices) through asyncua's sync client.

Addresses are endpoint URLs: ``opc.tcp://HOST:4840/PATH``. A point is a variable's node id (``ns=2;s=Reactor.T``,
``nsu=URI;s=...``, ``i=2258``) and, for writes, its variant type (``Double``, ``Float``, ``Int32``, ``Boolean``,
``String``, ...; default: what the node holds). A command is a method: the node id of its ``object`` and of the
``method``, with ``args`` (``"{value}"`` stands for the recipe value); the call returns when the method has done its
work (OPC UA methods run to completion), within the command's timeout.

A bad status from the server (not writable, out of range, invalid argument) is a :class:`RefusedError` naming the
status code; the connection is kept.
"""

from __future__ import annotations

from typing import Any

from .base import PointModel, RefusedError, Transport


class OpcuaPoint(PointModel):
    node: str
    type: str | None = None


class OpcuaCommand(PointModel):
    object: str
    method: str
    args: list[Any] = []


class OpcuaTransport(Transport):
    kind = "opcua"
    Point = OpcuaPoint
    Command = OpcuaCommand

    def __init__(self, address: str, **options: Any):
        super().__init__(address, **options)
        self._client: Any = None
        self._tloop: Any = None
        self._last_rx = b""

    def _call(self, operation: str, point: Any, fn: Any, retry: bool = False) -> Any:
        self._last_rx = b""
        return super()._call(operation, point, fn, retry)

    def _as_error(self, what: str, exc: BaseException) -> Any:
        err = super()._as_error(what, exc)
        if self._last_rx and not isinstance(err, RefusedError):
            err = self.error(what, f"{err.got}; raw bytes received {self._last_rx!r}", type(err), err.fix)
        return err

    def _open(self) -> None:
        from asyncua.sync import Client, ThreadLoop

        # asyncua's own loop thread inherits the daemon flag of the thread that connects: one made on the main thread
        # (resume asks the robots where the samples are before any worker starts) kept the process from exiting
        tloop = ThreadLoop(self.connect_timeout + 30)
        tloop.daemon = True
        tloop.start()
        self._tloop = tloop  # stopped by _close, also when what follows fails
        client = Client(self.address, timeout=self.timeout, tloop=tloop)
        client.aio_obj.session_timeout = 30000
        self._client = client
        client.connect()
        protocol = client.aio_obj.uaclient.protocol
        assert protocol is not None, "connect() made the protocol"
        received = protocol.data_received

        def keep(data: bytes) -> None:  # what came back, for the error when asyncua cannot make sense of it
            self._last_rx = (self._last_rx + bytes(data))[:400]
            received(data)

        protocol.data_received = keep  # type: ignore[method-assign]  # wraps this connection's receive, on purpose

    def _close(self) -> None:
        client, self._client = self._client, None
        tloop, self._tloop = self._tloop, None
        try:
            if client is not None:
                client.disconnect()
        finally:
            if tloop is not None:
                tloop.stop()  # ours, not the client's: it does not stop a loop it was given

    def _idle_dropped(self) -> bool:
        try:
            protocol = self._client.aio_obj.uaclient.protocol
        except AttributeError:
            return True
        transport = getattr(protocol, "transport", None)
        return (
            protocol is None
            or transport is None
            or transport.is_closing()
            or str(getattr(protocol, "state", "")).lower().endswith("closed")
        )

    def _refusal(self, exc: Exception) -> Exception:
        from asyncua import ua

        if isinstance(exc, ua.UaStatusCodeError):
            name, doc = ua.status_codes.get_name_and_doc(exc.code)
            return self.failure(
                f"bad status {name} ({doc})", RefusedError, "check the node, the value and the tool's state"
            )
        return exc

    def _read(self, point: OpcuaPoint) -> Any:
        try:
            return self._client.get_node(point.node).read_value()
        except Exception as exc:
            raise self._refusal(exc) from exc

    def _write(self, point: OpcuaPoint, value: Any) -> None:
        from asyncua import ua

        node = self._client.get_node(point.node)
        try:
            vtype = getattr(ua.VariantType, point.type) if point.type else node.read_data_type_as_variant_type()
            node.write_value(ua.DataValue(ua.Variant(_cast(value, vtype.name), vtype)))
        except Exception as exc:
            raise self._refusal(exc) from exc

    def _command(self, command: OpcuaCommand, args: dict[str, Any], timeout: float) -> Any:
        from asyncua import ua

        values = [args.get("value") if a == "{value}" else a for a in command.args]
        protocol = self._client.aio_obj.uaclient.protocol
        before = protocol.timeout
        protocol.timeout = timeout  # a method runs to completion: its reply may take the command's time
        try:
            result = self._client.get_node(command.object).call_method(ua.NodeId.from_string(command.method), *values)
        except Exception as exc:
            raise self._refusal(exc) from exc
        finally:
            if self._client is not None and self._client.aio_obj.uaclient.protocol is protocol:
                protocol.timeout = before
        return result[0] if isinstance(result, list) and len(result) == 1 else result


def _cast(value: Any, vtype: str) -> Any:
    if vtype in ("Double", "Float"):
        return float(value)
    if vtype in ("Boolean",):
        return bool(value)
    if vtype.startswith(("Int", "UInt", "Byte", "SByte")):
        return int(value)
    if vtype == "String":
        return str(value)
    return value
