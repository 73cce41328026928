"""The two ways a bell rings between processes (:mod:`labloop.store.bell`): unix datagram sockets beside a SQLite
store, ``LISTEN``/``NOTIFY`` on PostgreSQL. Every method but :meth:`Backend.ring` runs on the hub's thread only."""

from __future__ import annotations

import atexit
import hashlib
import itertools
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("labloop.store.bell")

#: how long a PostgreSQL listener waits before connecting again after losing its connection
RECONNECT_S = 1.0
ALL = object()  # every channel: after a reconnection, anything may have been missed


class Backend:
    """Within this process only (an in-memory store): a ring reaches this process's waiters, nothing else."""

    reaches_self = False

    def subscribe(self, name: str) -> None:
        pass

    def unsubscribe(self, name: str) -> None:
        pass

    def fds(self) -> list[int]:
        return []

    def timeout(self) -> float | None:
        return None

    def receive(self, readable: set[int]) -> set[Any]:
        return set()

    def ring(self, name: str) -> None:
        pass

    def close(self) -> None:
        pass


def socket_folder(db: Path) -> Path | None:
    """The folder of ``db``'s bells: in this user's temporary directory, named by the database file's real path
    (short, so that socket paths stay under the 107 bytes a unix socket address allows)."""
    key = hashlib.sha256(str(Path(db).resolve()).encode()).hexdigest()[:16]
    base = Path(tempfile.gettempdir()) / f"labloop-bells-{os.getuid()}"
    folder = base / key
    if len(str(folder)) > 60:
        return None
    try:
        for p in (base, folder):
            p.mkdir(mode=0o700, exist_ok=True)
            st = os.lstat(p)
            if st.st_uid != os.getuid() or not os.path.isdir(p) or os.path.islink(p):
                return None
    except OSError:
        return None
    return folder


class SocketBackend(Backend):
    """SQLite: a unix datagram socket per listening process and channel, named ``CHANNEL.PID.N`` in the store's
    folder; a ring sends one byte to each."""

    reaches_self = True
    _counter = itertools.count()

    def __init__(self, folder: Path):
        self.folder = folder
        self._socks: dict[str, tuple[socket.socket, str]] = {}
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)

    def subscribe(self, name: str) -> None:
        path = str(self.folder / f"{name}.{os.getpid()}.{next(self._counter)}")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.setblocking(False)
            for last in (False, True):  # another process's close may remove the folder (empty) under us: once more
                self.folder.mkdir(mode=0o700, exist_ok=True)
                try:
                    s.bind(path)
                    break
                except FileNotFoundError:
                    if last:
                        raise
        except OSError:
            s.close()
            raise
        self._socks[name] = (s, path)
        _BOUND[path] = os.getpid()

    def unsubscribe(self, name: str) -> None:
        got = self._socks.pop(name, None)
        if got is not None:
            _unbind(*got)

    def fds(self) -> list[int]:
        return [s.fileno() for s, _ in self._socks.values()]

    def receive(self, readable: set[int]) -> set[Any]:
        rung = set()
        for name, (s, _) in list(self._socks.items()):
            if s.fileno() in readable:
                try:
                    while s.recv(64):
                        pass
                except (BlockingIOError, OSError):
                    pass
                rung.add(name)
        return rung

    def ring(self, name: str) -> None:
        prefix = name + "."
        try:
            entries = [e.name for e in os.scandir(self.folder) if e.name.startswith(prefix)]
        except OSError:
            return
        for entry in entries:
            path = str(self.folder / entry)
            try:
                self._sender.sendto(b"!", path)
            except BlockingIOError:  # its queue is full: it has been rung and not read yet
                pass
            except (ConnectionRefusedError, FileNotFoundError):  # its process died: nobody will read it
                try:
                    os.unlink(path)
                except OSError:
                    pass
            except OSError:
                pass

    def close(self) -> None:
        for s, path in self._socks.values():
            _unbind(s, path)
        self._socks.clear()
        self._sender.close()
        try:  # the last one out removes the store's folder (only if empty: others' sockets keep it)
            self.folder.rmdir()
        except OSError:
            pass


#: this process's socket files (path -> pid: a forked child leaves its parent's alone), removed at its exit (a
#: killed process's, by the next ring)
_BOUND: dict[str, int] = {}


@atexit.register
def _unbind_all() -> None:
    for path, pid in list(_BOUND.items()):
        if pid != os.getpid():
            continue
        for remove in (os.unlink, os.rmdir):  # the socket, then its store's folder if nobody else's is in it
            try:
                remove(path)
            except OSError:
                break
            path = os.path.dirname(path)


def _unbind(s: socket.socket, path: str) -> None:
    _BOUND.pop(path, None)
    s.close()
    try:
        os.unlink(path)
    except OSError:
        pass


def pg_channel(name: str) -> str:
    return f"labloop.{name}"


class NotifyBackend(Backend):
    """PostgreSQL: ``LISTEN`` on a dedicated connection of this process; a ring is ``pg_notify``. A lost connection
    is opened again after :data:`RECONNECT_S`, listening to every channel again, and wakes every waiter (whatever
    was rung meanwhile was not heard)."""

    reaches_self = True

    def __init__(self, connect: Callable[[], Any], notify: Callable[[str], None]):
        self._connect, self._notify = connect, notify
        self._conn: Any = None
        self._names: set[str] = set()
        self._retry_at = 0.0
        self._lost = False
        self._look = False  # a statement ran: notifications it read wait in psycopg's backlog, not on the socket

    def _connection(self) -> Any:
        if self._conn is None and time.monotonic() >= self._retry_at:
            try:
                conn = self._connect()
                for name in self._names:
                    conn.execute(f'LISTEN "{pg_channel(name)}"')
                self._conn = conn
                self._look = True  # connected again: wake every waiter now (see receive)
            except Exception as exc:  # noqa: BLE001 - the server is away: poll until it is back
                log.debug("listening connection failed: %s", exc)
                self._retry_at = time.monotonic() + RECONNECT_S
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._lost = True
        self._retry_at = time.monotonic() + RECONNECT_S
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is being dropped because it is broken
                pass

    def subscribe(self, name: str) -> None:
        self._names.add(name)
        conn = self._connection()
        if conn is not None:
            try:
                conn.execute(f'LISTEN "{pg_channel(name)}"')
                self._look = True
            except Exception:
                self._drop()
                raise

    def unsubscribe(self, name: str) -> None:
        self._names.discard(name)
        if self._conn is not None:
            try:
                self._conn.execute(f'UNLISTEN "{pg_channel(name)}"')
                self._look = True
            except Exception:  # noqa: BLE001 - a broken connection: it is opened again when needed
                self._drop()

    def fds(self) -> list[int]:
        conn = self._conn if self._conn is not None or not self._names else self._connection()
        return [conn.fileno()] if conn is not None else []

    def timeout(self) -> float | None:
        if self._conn is None:
            return RECONNECT_S if self._names else None
        return 0.0 if self._look else None  # something to read now, not when the socket next has data

    def receive(self, readable: set[int]) -> set[Any]:
        rung: set[Any] = set()
        if self._lost and self._conn is not None:  # connected again: what was rung meanwhile was not heard
            self._lost = False
            rung.add(ALL)
        if self._conn is not None and (self._look or self._conn.fileno() in readable):
            self._look = False
            try:
                for n in self._conn.notifies(timeout=0):
                    if n.channel.startswith("labloop."):
                        rung.add(n.channel[len("labloop.") :])
            except Exception as exc:  # noqa: BLE001 - the connection broke: wake everyone, open it again
                log.debug("listening connection lost: %s", exc)
                self._drop()
                rung.add(ALL)
        return rung

    def ring(self, name: str) -> None:
        self._notify(pg_channel(name))

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing at the end: nothing to do about it
                pass
            self._conn = None
