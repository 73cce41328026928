"""A small line-oriented TCP transport shared by the TCP drivers (SCPI instruments, robot dashboard servers).

One request at a time per connection (a lock serializes them); every request has a timeout. The rules that keep a
driver honest when the network is not:

* **Lazy connect.** Nothing touches the network until the first request, so constructing a driver never blocks
  (campaign validation instantiates drivers to read their limits).
* **Reconnect when the endpoint dropped.** Before each request the transport checks whether the peer closed the
  connection while it was idle and, if so, reconnects. A request that was *in flight* when the connection dropped is
  never re-sent blindly (a ``movej`` must not run twice): it fails, and the next request reconnects.
* **A timeout closes the connection.** After a reply did not arrive in time the stream is in an unknown state (the
  late reply would be read as the answer to the next question), so the connection is dropped and re-opened on the
  next request.
* **Raw replies are kept.** :class:`ReplyError` carries the command and the raw reply, and its message shows both,
  so a malformed reply fails the step with the evidence, never a bare ``ValueError`` deep in a parser.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from labloop.errors import DeviceError


class TransportError(DeviceError):
    """The endpoint is unreachable, closed the connection or did not answer in time."""


class ReplyError(DeviceError):
    """The endpoint answered, but not with what the protocol allows. ``raw`` is the reply as received."""

    def __init__(self, device: str, command: str, raw: str, expected: str, fix: str | None = None):
        self.command = command
        self.raw = raw
        super().__init__(
            f"{device}: malformed reply to {command!r}: expected {expected}, got raw reply {raw!r}",
            fix
            or "check that the endpoint is the instrument the driver is written for (model, firmware, "
            "protocol settings); the raw reply above is what it sent",
        )


class LineTransport:
    """Send lines, read line replies over one TCP connection, with timeouts and reconnection.

    ``greeting=True`` reads one line the server sends on connect (e.g. a dashboard server's banner) and keeps it
    in :attr:`greeting`. :attr:`generation` counts connections made, so a driver can re-configure an instrument
    after a reconnect (``if transport.generation != self._configured: ...``).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 2.0,
        connect_timeout: float | None = None,
        terminator: str = "\n",
        encoding: str = "ascii",
        greeting: bool = False,
        name: str = "transport",
        max_line: int = 65536,
    ):
        self.host = host
        self.port = int(port)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout if connect_timeout is not None else timeout)
        self.terminator = terminator
        self.encoding = encoding
        self.expect_greeting = greeting
        self.name = name
        self.max_line = max_line
        self.greeting: str | None = None
        self.generation = 0
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._lock = threading.RLock()

    # -- connection -------------------------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """Open the connection if it is not open (or if the peer closed it while idle)."""
        with self._locked():
            if self._sock is not None and not self._peer_closed():
                return
            self._close_socket()
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            except OSError as exc:
                raise TransportError(
                    f"{self.name}: cannot connect to {self.address}: {exc}",
                    "check that the instrument is powered, on the network, and that host/port in the device config "
                    "are right",
                ) from None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            self._buffer = b""
            self.generation += 1
            if self.expect_greeting:
                self.greeting = self._read_line("(greeting on connect)", self.timeout)

    def close(self) -> None:
        """Close the connection; the next request opens a new one."""
        with self._lock:
            self._close_socket()

    def abort(self) -> None:
        """Cut the connection now, from any thread, without waiting for a request in flight (it fails)."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    #: Conformance/testing hook: cut the connection under the driver as if the endpoint dropped it.
    sever = abort

    def _close_socket(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._buffer = b""

    def _peer_closed(self) -> bool:
        """True if the peer closed an idle connection; stale unsolicited bytes are discarded."""
        sock = self._sock
        if sock is None:
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            data = sock.recv(4096, socket.MSG_PEEK)
            if not data:
                return True
            sock.recv(len(data))  # unsolicited bytes would be read as the next reply: drop them
            self._buffer = b""
            return False
        except (OSError, ValueError):
            return True

    def _locked(self):
        return _TimedLock(self._lock, self.timeout + self.connect_timeout, self)

    # -- requests ---------------------------------------------------------------------------------------------------
    def write(self, line: str) -> None:
        """Send one line (no reply expected)."""
        with self._locked():
            self.connect()
            self._send(line)

    def query(self, line: str, timeout: float | None = None) -> str:
        """Send one line and return the reply line (without its terminator)."""
        with self._locked():
            self.connect()
            self._send(line)
            return self._read_line(line, self.timeout if timeout is None else float(timeout))

    def read_line(self, timeout: float | None = None, command: str = "(unsolicited)") -> str:
        """Read one more reply line (for protocols that answer a command with several lines)."""
        with self._locked():
            if self._sock is None:
                raise TransportError(f"{self.name}: not connected to {self.address}", "send a request first")
            return self._read_line(command, self.timeout if timeout is None else float(timeout))

    def _send(self, line: str) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall((line + self.terminator).encode(self.encoding))
        except OSError as exc:
            self._close_socket()
            raise TransportError(
                f"{self.name}: connection to {self.address} failed while sending {line!r}: {exc}",
                "the endpoint dropped the connection; the next request reconnects. Check the instrument if it "
                "keeps happening",
            ) from None

    def _read_line(self, command: str, timeout: float) -> str:
        sock = self._sock
        assert sock is not None
        term = self.terminator.encode(self.encoding)
        deadline = time.monotonic() + timeout
        while term not in self._buffer:
            if len(self._buffer) > self.max_line:
                raw = self._decode(self._buffer[:200])
                self._close_socket()
                raise ReplyError(self.name, command, raw + "...", f"a line shorter than {self.max_line} bytes")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._timed_out(command, timeout)
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                return self._timed_out(command, timeout)
            except OSError as exc:
                self._close_socket()
                raise TransportError(
                    f"{self.name}: connection to {self.address} failed while waiting for the reply to {command!r}: "
                    f"{exc}",
                    "the endpoint dropped the connection; the next request reconnects",
                ) from None
            if not chunk:
                partial = self._decode(self._buffer)
                self._close_socket()
                raise TransportError(
                    f"{self.name}: {self.address} closed the connection while the reply to {command!r} was awaited"
                    + (f" (partial raw reply {partial!r})" if partial else ""),
                    "the endpoint dropped the connection; the next request reconnects. If it keeps happening, check "
                    "the instrument's network settings and whether another client took its only connection",
                )
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(term)
        return self._decode(raw).rstrip("\r")

    def _decode(self, raw: bytes) -> str:
        """Bytes as text; bytes the encoding does not allow show as themselves (latin-1), so errors show them."""
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    def _timed_out(self, command: str, timeout: float) -> str:
        partial = self._decode(self._buffer)
        self._close_socket()  # a late reply would answer the next question: start over on a fresh connection
        raise TransportError(
            f"{self.name}: no reply to {command!r} from {self.address} within {timeout:g} s"
            + (f" (partial raw reply {partial!r})" if partial else ""),
            "check that the instrument is on and not busy; raise the driver's timeout if it is just slow",
        )


class _TimedLock:
    """Acquire the transport lock with a bound, so a wedged request cannot make every later caller hang."""

    def __init__(self, lock: Any, timeout: float, transport: LineTransport):
        self.lock, self.timeout, self.transport = lock, timeout, transport

    def __enter__(self) -> None:
        if not self.lock.acquire(timeout=self.timeout):
            raise TransportError(
                f"{self.transport.name}: {self.transport.address} is busy with another request (waited "
                f"{self.timeout:g} s)",
                "send one request at a time, or raise the driver's timeout",
            )

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


class TcpDevice:
    """Mixin for drivers that talk over :class:`LineTransport`: lists them for the conformance kit and closes them.

    A driver sets ``self._transports`` (e.g. in ``__init__``); :meth:`transports` is what the conformance kit's
    reconnect check cuts, and :meth:`disconnect` closes them all (the next request reconnects).
    """

    _transports: tuple[LineTransport, ...] = ()

    def transports(self) -> tuple[LineTransport, ...]:
        return tuple(self._transports)

    def disconnect(self) -> None:
        for t in self._transports:
            t.close()


def parse_fields(
    device: str, command: str, raw: str, count: int, convert: Callable[[str], Any] = float, sep: str = ","
) -> list[Any]:
    """Split ``raw`` into exactly ``count`` fields converted by ``convert``; a :class:`ReplyError` otherwise."""
    parts = [p.strip() for p in raw.split(sep)]
    if len(parts) != count:
        raise ReplyError(device, command, raw, f"{count} fields separated by '{sep}'")
    try:
        return [convert(p) for p in parts]
    except (TypeError, ValueError):
        raise ReplyError(device, command, raw, f"{count} {getattr(convert, '__name__', 'valid')} fields") from None


def expect_prefix(device: str, command: str, raw: str, prefixes: Iterable[str]) -> str:
    """Return the matching prefix of ``raw`` (case-insensitive), or raise :class:`ReplyError`."""
    prefixes = list(prefixes)
    for p in prefixes:
        if raw.lower().startswith(p.lower()):
            return p
    raise ReplyError(device, command, raw, " or ".join(repr(p + "...") for p in prefixes))
