"""Modbus TCP and RTU through pymodbus' synchronous client.

Addresses: ``tcp://HOST:PORT`` (Modbus TCP), ``rtu+tcp://HOST:PORT`` (RTU frames through a serial-to-Ethernet
gateway), ``rtu:///dev/ttyUSB0`` (RTU on a serial line; ``baudrate``, ``parity``, ``stopbits``, ``bytesize`` as
transport options). ``unit`` (the device id on the bus, default 1) is a transport option too.

A point is a register (or a bit of one) with its type, word order and scale: what a controller's manual lists. The
instrument's exception replies (illegal address, illegal value, device busy) become :class:`RefusedError` naming the
code; a reply pymodbus cannot frame becomes an error that shows the raw bytes received (kept by ``trace_packet``).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Literal
from urllib.parse import parse_qs, urlparse

from pydantic import Field, model_validator

from .base import PointModel, RefusedError, ReplyError, Transport, socket_hung_up

# pymodbus logs each bad frame and each missed reply at ERROR itself; this transport turns each into a DeviceError that
# names what came back, so the library's own lines would only repeat it, unformatted, in an operator's terminal.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

_WORDS = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
    "bool": 1,
}
_INT_RANGE = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


with warnings.catch_warnings():  # "register" is the word in every controller manual; pydantic's own is unused
    warnings.filterwarnings("ignore", message=".*shadows an attribute.*")

    class _RegisterField(PointModel):
        register: int = Field(ge=0, le=65535)


class ModbusPoint(_RegisterField):
    """Where a value lives: ``table`` (holding / input registers, coils, discrete inputs), ``register`` (0-based
    address), ``type``, ``word_order`` of multi-register values, and ``scale``/``offset`` (physical = raw * scale +
    offset). ``bit`` reads one bit (0 = least significant) of a 16-bit register, e.g. an alarm word."""

    table: Literal["holding", "input", "coil", "discrete"] = "holding"
    type: Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "bool"] = "uint16"
    word_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    offset: float = 0.0
    bit: int | None = Field(None, ge=0, le=15)

    @model_validator(mode="after")
    def _consistent(self) -> ModbusPoint:
        if self.table in ("coil", "discrete") and self.type != "bool":
            raise ValueError(f"a {self.table} holds one bit: type must be bool")
        if self.bit is not None and self.type not in ("uint16", "int16", "bool"):
            raise ValueError("bit selects a bit of a 16-bit register: type uint16 (or bool)")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self

    @property
    def writable(self) -> bool:
        return self.table in ("holding", "coil")


class ModbusTransport(Transport):
    kind = "modbus"
    Point = ModbusPoint

    def __init__(self, address: str, *, unit: int = 1, **options: Any):
        super().__init__(address, **options)
        self.unit = int(unit)
        self._client: Any = None
        self._last_rx = b""

    # -- connection ---------------------------------------------------------------------------------------------
    def _open(self) -> None:
        from pymodbus import FramerType
        from pymodbus.client import ModbusSerialClient, ModbusTcpClient

        url = urlparse(self.address)
        common: dict[str, Any] = dict(timeout=self.timeout, retries=0, trace_packet=self._trace, reconnect_delay=0)
        client: ModbusTcpClient | ModbusSerialClient
        if url.scheme in ("tcp", "rtu+tcp"):
            if not url.hostname or not url.port:
                raise self.error(
                    "connect",
                    "the address needs a host and a port",
                    ReplyError,
                    "write tcp://HOST:PORT (Modbus TCP's usual port is 502)",
                )
            framer = FramerType.RTU if url.scheme == "rtu+tcp" else FramerType.SOCKET
            client = ModbusTcpClient(url.hostname, port=url.port, framer=framer, **common)
            client.comm_params.timeout_connect = self.connect_timeout
        elif url.scheme == "rtu":
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            opts = {k: self.options.get(k, q.get(k)) for k in ("baudrate", "parity", "stopbits", "bytesize")}
            line: dict[str, Any] = {k: (v if k == "parity" else int(v)) for k, v in opts.items() if v}
            client = ModbusSerialClient(url.path, framer=FramerType.RTU, **common, **line)
        else:
            raise self.error(
                "connect",
                f"unknown address scheme '{url.scheme}'",
                ReplyError,
                "write tcp://HOST:PORT, rtu+tcp://HOST:PORT or rtu:///dev/ttyUSB0",
            )
        self._client = client
        if not client.connect():
            raise self.error("connect", f"refused or unreachable within {self.connect_timeout:g} s")

    def _close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()

    def _idle_dropped(self) -> bool:
        return socket_hung_up(getattr(self._client, "socket", None))

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._last_rx = bytes(data)
        return data

    # -- values -------------------------------------------------------------------------------------------------
    def _read(self, point: ModbusPoint) -> Any:
        c = self._client
        self._last_rx = b""
        if point.table in ("coil", "discrete"):
            fn = c.read_coils if point.table == "coil" else c.read_discrete_inputs
            return bool(self._checked(fn(point.register, count=1, device_id=self.unit)).bits[0])
        fn = c.read_holding_registers if point.table == "holding" else c.read_input_registers
        regs = self._checked(fn(point.register, count=_WORDS[point.type], device_id=self.unit)).registers
        if point.bit is not None:
            return bool((regs[0] >> point.bit) & 1)
        if point.type == "bool":
            return bool(regs[0])
        raw = c.convert_from_registers(regs, getattr(c.DATATYPE, point.type.upper()), word_order=point.word_order)
        value = raw * point.scale + point.offset
        if point.type.startswith(("int", "uint")) and point.scale == 1 and point.offset == 0:
            return int(value)
        return float(value)

    def _write(self, point: ModbusPoint, value: Any) -> None:
        c = self._client
        if not point.writable:
            raise self.failure(
                f"{point.table} registers are read-only", ReplyError, "write to a holding register or a coil"
            )
        self._last_rx = b""
        if point.table == "coil":
            self._checked(c.write_coil(point.register, bool(value), device_id=self.unit))
            return
        if point.bit is not None or point.type == "bool":
            raise self.failure(
                "writing single bits of a register is not supported",
                ReplyError,
                "write the whole register (type uint16)",
            )
        raw = (float(value) - point.offset) / point.scale
        if point.type in _INT_RANGE:
            lo, hi = _INT_RANGE[point.type]
            raw = round(raw)
            if not lo <= raw <= hi:
                raise self.failure(
                    f"{value!r} does not fit a {point.type} register (raw {raw})",
                    ReplyError,
                    "check the point's type and scale",
                )
        regs = c.convert_to_registers(raw, getattr(c.DATATYPE, point.type.upper()), word_order=point.word_order)
        self._checked(c.write_registers(point.register, regs, device_id=self.unit))

    def _checked(self, response: Any) -> Any:
        if response.isError():
            code = getattr(response, "exception_code", None)
            if code is not None:
                raise self.failure(
                    f"Modbus exception code {code} ({_exception_name(code)})",
                    RefusedError,
                    "check the register map and the value against the instrument's manual",
                )
            raise self.failure(f"error reply {response!r}{self._raw()}")
        return response

    def _raw(self) -> str:
        return f"; raw reply {self._last_rx!r}" if self._last_rx else ""

    def _as_error(self, what: str, exc: BaseException) -> Any:
        if "no response received" in str(exc).lower():  # pymodbus' words for a timeout or an unframeable reply
            got = f"no reply in time (none it could frame within {self.timeout:g} s){self._raw()}"
            return self.error(what, got)
        err = super()._as_error(what, exc)
        if self._last_rx and "raw reply" not in err.got:
            err = self.error(what, err.got + self._raw(), type(err), err.fix)
        return err


def _exception_name(code: int) -> str:
    try:
        from pymodbus.constants import ExcCodes

        return ExcCodes(code).name.lower().replace("_", " ")
    except (ImportError, ValueError):
        return "unknown code"
