"""The one small interface every instrument transport offers, on top of the protocol's own well-kept library.

Why one interface: a declarative device (``labloop.declarative``) speaks to VISA, Modbus, OPC UA, EPICS, SiLA 2 and
serial instruments through the same six verbs, so the rules that keep a step honest when the wire is not live here
once, not once per protocol:

* **Lazy connect, with a timeout.** Nothing touches the network until the first request, so building a device never
  blocks (campaign validation builds devices to read their limits).
* **Every failure is a** :class:`TransportError` (a labloop ``DeviceError``) naming the transport, the address, the
  operation and what came back (the raw reply, the Modbus exception code, the bad status), so a failed step says why.
* **A broken exchange drops the connection.** After a timeout, a garbled reply or a hang-up the stream is in an
  unknown state, so the connection is closed and the next request reconnects. A request that was in flight is never
  re-sent blindly (a move must not run twice); only reads, which change nothing, are retried once on a fresh
  connection when the peer had hung up while we were idle.
* **One request at a time** per connection (a lock), whatever threads share the device.

A transport module implements ``_open``, ``_close``, ``_read``, ``_write`` and optionally ``_command`` and
``_idle_dropped``; it declares ``Point``, the pydantic model of how a signal is addressed (a register, a node id, a
SCPI query), which the declarative schema validates a YAML file against before anything connects.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from labloop.errors import DeviceError


class TransportError(DeviceError):
    """A transport operation failed. ``transport``, ``address``, ``operation`` and ``got`` (what came back, as
    text) are kept for whoever handles it; the message shows all four."""

    def __init__(self, transport: str, address: str, operation: str, got: str, fix: str | None = None):
        self.transport, self.address, self.operation, self.got = transport, address, operation, got
        super().__init__(
            f"{transport} {address}: {operation}: {got}",
            fix
            or "check that the instrument is on, reachable at this address and configured for "
            "this protocol; the device reconnects by itself on the next step",
        )


class ReplyError(TransportError):
    """The instrument answered, but not with what the point allows (garbage, wrong type, out of range)."""


class RefusedError(TransportError):
    """The instrument understood and refused (Modbus exception code, OPC UA bad status, SCPI error, SiLA error).
    The connection is healthy: it is kept."""


class PointModel(BaseModel):
    """Base of a transport's ``Point``: unknown keys are errors (a typo in a YAML file must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Transport:
    """A connection to one instrument at ``address`` through one protocol library (subclasses: one per protocol)."""

    #: The transport's name in YAML files and errors ("modbus", "visa", ...).
    kind: ClassVar[str] = "transport"
    #: How a signal names a value on this transport (validated from the YAML ``point:`` mapping).
    Point: ClassVar[type[PointModel]] = PointModel
    #: How a command is named (``commands:`` in YAML); None when the transport has no commands.
    Command: ClassVar[type[PointModel] | None] = None

    def __init__(
        self,
        address: str,
        *,
        timeout: float = 2.0,
        connect_timeout: float | None = None,
        name: str = "",
        **options: Any,
    ):
        self.address = address
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout if connect_timeout is not None else timeout)
        self.name = name or self.kind
        self.options = options
        #: Connections made so far: a device re-configures its instrument when this changes.
        self.generation = 0
        self._lock = threading.RLock()
        self._connected = False

    # -- the interface ------------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect now (within ``connect_timeout``) unless connected; raises :class:`TransportError`."""
        with self._lock:
            if self._connected:
                return
            try:
                self._open()
            except TransportError:
                self._safe_close()
                raise
            except Exception as exc:
                self._safe_close()
                raise self.error("connect", _describe(exc)) from exc
            self._connected = True
            self.generation += 1

    def close(self) -> None:
        """Close the connection (a later request reconnects)."""
        with self._lock:
            self._safe_close()

    def reconnect(self) -> None:
        with self._lock:
            self._safe_close()
            self.connect()

    def sever(self) -> None:
        """Cut the connection as a network blip would (the conformance kit's ``reconnect`` check)."""
        self.close()

    @property
    def connected(self) -> bool:
        return self._connected

    def read(self, point: Any) -> Any:
        """The typed value at ``point``."""
        return self._call("read", point, lambda: self._read(point), retry=True)

    def write(self, point: Any, value: Any) -> None:
        """Write the typed ``value`` at ``point``."""
        self._call(f"write {value!r} to", point, lambda: self._write(point, value))

    def command(self, command: Any, args: Mapping[str, Any] | None = None, timeout: float | None = None) -> Any:
        """Run ``command`` and wait (up to ``timeout`` s) for its completion; returns its result (or None)."""
        wait = self.timeout if timeout is None else float(timeout)
        return self._call("command", command, lambda: self._command(command, dict(args or {}), wait))

    def poll(
        self, point: Any, interval: float, callback: Callable[[Any, float], None], stop: threading.Event
    ) -> threading.Thread:
        """Call ``callback(value, time)`` with the value at ``point`` every ``interval`` s until ``stop`` is set.
        A failed read is passed as the exception instance (the caller decides). Protocols with subscriptions
        (OPC UA, EPICS) may override this with a real subscription."""

        def loop() -> None:
            while not stop.is_set():
                try:
                    callback(self.read(point), time.time())
                except TransportError as exc:
                    callback(exc, time.time())
                stop.wait(interval)

        t = threading.Thread(target=loop, name=f"{self.name}-poll", daemon=True)
        t.start()
        return t

    # -- errors -------------------------------------------------------------------------------------------------
    def error(
        self, operation: str, got: str, cls: type[TransportError] = TransportError, fix: str | None = None
    ) -> TransportError:
        return cls(self.kind, self.address, operation, got, fix)

    def describe_point(self, point: Any) -> str:
        if isinstance(point, BaseModel):
            fields = ", ".join(f"{k}={v!r}" for k, v in point.model_dump(exclude_defaults=True).items())
            return f"{type(point).__name__.lower()}({fields})"
        return repr(point)

    # -- for subclasses -----------------------------------------------------------------------------------------
    def _open(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _read(self, point: Any) -> Any:
        raise NotImplementedError

    def _write(self, point: Any, value: Any) -> None:
        raise NotImplementedError

    def _command(self, command: Any, args: dict[str, Any], timeout: float) -> Any:
        raise self.error(
            "command",
            f"the {self.kind} transport has no commands",
            ReplyError,
            "use signals (read/write) for this instrument",
        )

    def _idle_dropped(self) -> bool:
        """Whether the peer closed the connection while we were idle (checked before each request)."""
        return False

    # -- internals ----------------------------------------------------------------------------------------------
    def _safe_close(self) -> None:
        self._connected = False
        try:
            self._close()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail; it is closed either way
            pass

    def _call(self, operation: str, point: Any, fn: Callable[[], Any], retry: bool = False) -> Any:
        what = f"{operation} {self.describe_point(point)}"
        with self._lock:
            if self._connected and self._idle_dropped():
                self._safe_close()
            fresh = not self._connected
            self.connect()
            try:
                return fn()
            except TransportError as exc:
                if not isinstance(exc, RefusedError):  # the instrument said no: the connection is fine, keep it
                    self._safe_close()
                if exc.operation == "?":
                    raise self.error(what, exc.got, type(exc), exc.fix) from exc
                raise
            except Exception as exc:
                self._safe_close()
                if retry and not fresh and _is_connection_loss(exc):
                    # the peer hung up while we were idle and we could not tell: a read changes nothing, ask again
                    try:
                        self.connect()
                        return fn()
                    except Exception as again:
                        self._safe_close()
                        second = self._as_error(what, again)
                        raise self.error(
                            what, f"{_describe(exc)}; asking again on a new connection: {second.got}", type(second)
                        ) from again
                raise self._as_error(what, exc) from exc

    def _as_error(self, what: str, exc: BaseException) -> TransportError:
        if isinstance(exc, TransportError):
            return self.error(what, exc.got, type(exc), exc.fix) if exc.operation == "?" else exc
        return self.error(what, _describe(exc))

    def failure(self, got: str, cls: type[TransportError] = ReplyError, fix: str | None = None) -> TransportError:
        """An error raised inside ``_read``/``_write``/``_command``: the operation and point are filled in by
        the caller (``operation == "?"`` until then)."""
        return cls(self.kind, self.address, "?", got, fix)


def socket_hung_up(sock: Any) -> bool:
    """Whether the peer of a connected TCP socket closed it (readable with nothing to read); False for anything that
    is not a socket (the caller then learns of a hang-up on its next request)."""
    if not isinstance(sock, socket.socket):
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _is_connection_loss(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return isinstance(exc, (ConnectionError, BrokenPipeError)) or any(
        w in text for w in ("connection", "closed", "broken pipe", "reset by peer", "not connected")
    )


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower() or "timed out" in text.lower():
        return f"no reply in time ({type(exc).__name__}: {text})"
    return f"{type(exc).__name__}: {text}"
