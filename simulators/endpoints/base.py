"""A threaded, line-oriented TCP server with fault injection: the common part of every simulated endpoint.

A subclass implements :meth:`LineServer.handle` (one request line in, one reply line or ``None`` out). Faults are
queued with :meth:`LineServer.inject` and consumed by the next matching request:

* ``"slow"``: the reply is sent ``delay`` seconds late;
* ``"garbage"``: the reply is replaced by ``text`` (default: bytes no protocol allows);
* ``"silent"``: no reply at all (the request is still executed);
* ``"disconnect"``: the server closes the connection on receiving the request, without executing it.

``on="..."`` limits a fault to requests starting with that text (case-insensitive); ``count=None`` keeps it until
:meth:`LineServer.clear_faults`. :meth:`LineServer.drop_clients` closes every client connection now (the endpoint
"drops"); the server keeps listening, so a driver can reconnect.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from typing import Any

FAULT_KINDS = ("slow", "garbage", "silent", "disconnect")
GARBAGE = "\x15#\xfe?garbled reply 0x7f"


@dataclass
class Fault:
    kind: str
    count: int | None = 1
    delay: float = 1.0
    on: str | None = None
    text: str = GARBAGE

    def matches(self, line: str) -> bool:
        return self.on is None or line.strip().upper().startswith(self.on.strip().upper())


class FaultPlan:
    """Faults waiting for the next matching request; shared by servers that simulate one machine."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, kinds: tuple[str, ...], line: str) -> Fault | None:
        """The first fault of one of ``kinds`` matching ``line`` (consuming one of its uses), or None."""
        with self._lock:
            for f in self._faults:
                if f.kind in kinds and f.matches(line):
                    if f.count is not None:
                        f.count -= 1
                        if f.count <= 0:
                            self._faults.remove(f)
                    return f
        return None


class LineServer:
    """Listen on ``host:port`` (port 0: an ephemeral port), one thread per client, one request per line."""

    #: Line sent to each client on connect (e.g. a dashboard server's banner); None sends nothing.
    greeting: str | None = None
    terminator = "\n"
    encoding = "latin-1"  # garbage bytes must survive the trip

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, faults: FaultPlan | None = None):
        self._bind = (host, port)
        self.faults = faults or FaultPlan()
        self.requests: list[str] = []
        self.connections_accepted = 0
        self._listener: socket.socket | None = None
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def start(self) -> LineServer:
        if self._listener is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(self._bind)
        sock.listen(8)
        sock.settimeout(0.1)
        self._listener = sock
        self._spawn(self._accept_loop, "accept")
        return self

    def close(self) -> None:
        self._closing.set()
        if self._listener is not None:
            self._listener.close()
        self.drop_clients()
        for t in self._threads:
            t.join(timeout=1.0)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def host(self) -> str:
        assert self._listener is not None, "start the server first"
        return self._listener.getsockname()[0]

    @property
    def port(self) -> int:
        assert self._listener is not None, "start the server first"
        return self._listener.getsockname()[1]

    def connection_kwargs(self) -> dict[str, Any]:
        """Constructor options that point the matching driver at this endpoint."""
        return {"host": self.host, "port": self.port}

    # -- faults -----------------------------------------------------------------------------------------------------
    def inject(
        self, kind: str, *, count: int | None = 1, delay: float = 1.0, on: str | None = None, text: str = GARBAGE
    ) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r} (known: {', '.join(FAULT_KINDS)})")
        self.faults.add(Fault(kind, count, delay, on, text))

    def clear_faults(self) -> None:
        self.faults.clear()

    def drop_clients(self) -> None:
        """Close every client connection now, as an instrument does when it reboots or its network blips."""
        with self._lock:
            clients, self._clients = list(self._clients), set()
        for c in clients:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    # -- protocol ---------------------------------------------------------------------------------------------------
    def handle(self, line: str) -> str | None:
        """Execute one request; return the reply line, or None when the request has no reply."""
        raise NotImplementedError

    def on_connect(self) -> None:
        """Called for each new client (before the greeting)."""

    # -- internals --------------------------------------------------------------------------------------------------
    def _spawn(self, fn: Any, what: str, *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, name=f"{type(self).__name__}-{what}", daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self._clients.add(conn)
            self.connections_accepted += 1
            self._spawn(self._serve, "client", conn)

    def _send(self, conn: socket.socket, line: str) -> None:
        conn.sendall((line + self.terminator).encode(self.encoding, errors="replace"))

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        term = self.terminator.encode()
        try:
            self.on_connect()
            if self.greeting is not None:
                self._send(conn, self.greeting)
            while not self._closing.is_set():
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk
                while term in buf:
                    raw, _, buf = buf.partition(term)
                    line = raw.decode(self.encoding).strip("\r")
                    self.requests.append(line)
                    if self.faults.take(("disconnect",), line):
                        return
                    reply = self.handle(line)
                    if reply is None:
                        continue
                    fault = self.faults.take(("slow", "garbage", "silent"), line)
                    if fault is not None and fault.kind == "silent":
                        continue
                    if fault is not None and fault.kind == "slow":
                        if self._closing.wait(fault.delay):
                            return
                    if fault is not None and fault.kind == "garbage":
                        reply = fault.text
                    self._send(conn, reply)
        except OSError:
            return
        finally:
            with self._lock:
                self._clients.discard(conn)
            try:
                conn.close()
            except OSError:
                pass
