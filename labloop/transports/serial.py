"""Line-oriented serial instruments (balances speaking MT-SICS, syringe pumps, barcode readers) through pyserial.

Addresses are pyserial URLs: ``/dev/ttyUSB0`` or ``COM3`` (options ``baudrate``, ``bytesize``, ``parity``,
``stopbits``), ``socket://HOST:PORT`` (a serial-to-Ethernet server, and the simulators), ``rfc2217://HOST:PORT``.

A point is a query and the pattern of its reply (a regular expression whose group ``value``, or first group, is the
value); a writable point adds a ``write`` template (``"SP {value:.2f}"``) and the pattern of its acknowledgement. A
command is the same with its own timeout (a balance's ``S`` answers only once the weight is stable). ``refused``
is the pattern of replies by which the instrument says no (MT-SICS ``ES``/``EL``/``S I``): a :class:`RefusedError`,
the connection is kept; anything else that does not match is garbage: a :class:`ReplyError` showing the raw reply.
"""

from __future__ import annotations

import re
import time
from typing import Any

from pydantic import field_validator

from .base import PointModel, RefusedError, ReplyError, Transport, socket_hung_up


class SerialPoint(PointModel):
    query: str | None = None
    pattern: str = r"(?P<value>.*)"
    write: str | None = None
    ack: str | None = None
    refused: str | None = None

    @field_validator("pattern", "ack", "refused")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            re.compile(v)
        return v


class SerialCommand(PointModel):
    send: str
    pattern: str = r".*"
    refused: str | None = None

    # SerialPoint's check, reused: its function, under the classmethod pydantic made of it (untyped there)
    _regex = field_validator("pattern", "refused")(SerialPoint._regex.__func__)  # type: ignore[attr-defined]  # untyped


class SerialTransport(Transport):
    kind = "serial"
    Point = SerialPoint
    Command = SerialCommand

    def __init__(self, address: str, *, terminator: str = "\r\n", encoding: str = "ascii", **options: Any):
        super().__init__(address, **{k: v for k, v in options.items() if k in ("timeout", "connect_timeout", "name")})
        self.terminator, self.encoding = terminator, encoding
        self.serial_options = {
            k: v for k, v in options.items() if k in ("baudrate", "bytesize", "parity", "stopbits", "xonxoff", "rtscts")
        }
        self._port: Any = None

    def _open(self) -> None:
        import serial

        self._port = serial.serial_for_url(
            self.address, timeout=self.timeout, write_timeout=self.timeout, **self.serial_options
        )

    def _close(self) -> None:
        if self._port is not None:
            port, self._port = self._port, None
            port.close()

    def _idle_dropped(self) -> bool:
        return socket_hung_up(getattr(self._port, "_socket", None))

    def exchange(self, line: str, timeout: float) -> str:
        """Send one line and return the reply line (without its terminator)."""
        port = self._port
        port.reset_input_buffer()
        port.write((line + self.terminator).encode(self.encoding))
        term = self.terminator.encode(self.encoding)
        buf = b""
        deadline = time.monotonic() + timeout
        while not buf.endswith(term):
            left = deadline - time.monotonic()
            if left <= 0:
                raise self.failure(f"no reply in time (within {timeout:g} s); received so far {buf!r}", ReplyError)
            port.timeout = min(left, self.timeout)
            chunk = port.read_until(term)
            if not chunk and time.monotonic() >= deadline:
                continue
            buf += chunk
        return buf[: -len(term)].decode(self.encoding, errors="replace")

    def _match(self, reply: str, pattern: str, refused: str | None, asked: str) -> re.Match[str]:
        if refused is not None and re.match(refused, reply):
            raise self.failure(
                f"refused {asked!r} with {reply!r}",
                RefusedError,
                "see the instrument's manual for this reply; the command may be retried later",
            )
        m = re.fullmatch(pattern, reply.strip())
        if m is None:
            raise self.failure(f"raw reply {reply!r} to {asked!r} does not match {pattern!r}", ReplyError)
        return m

    def _read(self, point: SerialPoint) -> Any:
        if point.query is None:
            raise self.failure("this point has no query (it is write-only)")
        m = self._match(self.exchange(point.query, self.timeout), point.pattern, point.refused, point.query)
        return _value(m)

    def _write(self, point: SerialPoint, value: Any) -> None:
        if point.write is None:
            raise self.failure("this point has no write template (it is read-only)")
        line = point.write.format(value=value)
        reply = self.exchange(line, self.timeout)
        self._match(reply, point.ack or r".*", point.refused, line)

    def _command(self, command: SerialCommand, args: dict[str, Any], timeout: float) -> Any:
        line = command.send.format(**args)
        m = self._match(self.exchange(line, timeout), command.pattern, command.refused, line)
        return _value(m) if m.re.groups else None


def _value(m: re.Match[str]) -> str:
    return m.group("value") if "value" in m.re.groupindex else (m.group(1) if m.re.groups else m.group(0))
