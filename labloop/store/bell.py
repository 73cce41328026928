"""Bells: the writer of a row wakes the reader waiting for it (ARCHITECTURE principle 13).

The row stays the record: a request, an answer or a stream event is committed first, and only then is its channel
rung. A ring is only a hint that something may be new: the reader then reads the store as it always did, and keeps
polling slowly (:func:`fallback_s`) as a fallback, so a lost ring (nobody listening yet, a listener that died, a
connection that dropped) costs at most one fallback interval and never a row.

A channel is ``(purpose, campaign id)``: ``requests`` (the campaign's runner waits for them), ``answers`` (whoever
asked waits for them), ``events`` (the daemon's stream waits for them).

* **PostgreSQL**: ``LISTEN``/``NOTIFY``. Each process listens on one dedicated connection of its own; a ring is a
  ``pg_notify`` in the writer's transaction (:meth:`Bells.ring_in`: delivered at its commit, never before). Every
  listener of the channel hears it, on any host, so two daemons sharing a store are both woken.
* **SQLite** (one machine): a unix datagram socket per listening process and channel, in a folder of the user's
  temporary directory derived from the database file's path; a ring sends one byte to every socket of the channel
  found there. A socket whose process died refuses it, and the ringer removes it; a full socket is already rung.
  Processes of other users sharing the file are not rung (they are woken by the fallback poll).

``LABLOOP_WAKEUPS=0`` turns bells off: every reader polls at its old interval, as before bells existed (to compare
the two in one benchmark run). ``LABLOOP_WAKEUP_FALLBACK_S`` sets the fallback interval (tests set it high to prove
a wake-up came from the bell). Only the standard library is imported here: operator commands stay light.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .bell_backends import ALL as _ALL
from .bell_backends import Backend as _Backend
from .bell_backends import NotifyBackend as _NotifyBackend
from .bell_backends import SocketBackend as _SocketBackend
from .bell_backends import pg_channel as _pg_channel
from .bell_backends import socket_folder as _socket_folder

log = logging.getLogger(__name__)

ENV = "LABLOOP_WAKEUPS"
FALLBACK_ENV = "LABLOOP_WAKEUP_FALLBACK_S"
#: how often a reader still reads the store when bells are on, in case a ring was lost
FALLBACK_S = 0.5
#: how long a new listener waits for its subscription to be in place (a PostgreSQL connection to open)
SUBSCRIBE_WAIT_S = 5.0

Channel = tuple[str, int]  # (purpose, campaign id)
_PURPOSES = ("requests", "answers", "events")


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def fallback_s() -> float:
    try:
        return max(0.001, float(os.environ.get(FALLBACK_ENV, FALLBACK_S)))
    except ValueError:
        return FALLBACK_S


def channel_name(channel: Channel) -> str:
    purpose, cid = channel
    if purpose not in _PURPOSES:
        raise ValueError(f"no bell for {purpose!r}: one of {', '.join(_PURPOSES)}")
    return f"{purpose}.{int(cid)}"


def bells_for(engine: Any, sqlite_path: Path | None) -> Bells:
    """The bells of a store on SQLAlchemy ``engine``: on PostgreSQL, listening on a connection of the store's own
    driver (psycopg) opened outside the pool, ringing with ``pg_notify`` in the writer's transaction (or, after it,
    on a pooled connection)."""
    if engine.dialect.name != "postgresql":
        return Bells(sqlite_path=sqlite_path)

    def connect() -> Any:
        args, params = engine.dialect.create_connect_args(engine.url)
        conn = engine.dialect.loaded_dbapi.connect(*args, **params)
        conn.autocommit = True
        return conn

    def notify_in(conn: Any, name: str) -> None:
        from sqlalchemy import text

        conn.execute(text("SELECT pg_notify(:c, '')"), {"c": name})

    def notify(name: str) -> None:
        with engine.connect() as conn:
            notify_in(conn, name)
            conn.commit()

    return Bells(pg_connect=connect, pg_notify=notify, pg_notify_in=notify_in)


class Waiter:
    """One reader's wait on one or more channels. Listen first, then read the store, then :meth:`wait`: a ring
    after :meth:`listen` returned is never lost (it makes the next wait return at once)."""

    def __init__(self, bells: Bells):
        self._bells = bells
        self._cond = threading.Condition()
        self._rung = False
        self._names: set[str] = set()

    def listen(self, channel: Channel) -> bool:
        """Also wake on ``channel``; returns True when it newly listens (read the store again before waiting)."""
        name = channel_name(channel)
        if name in self._names:
            return False
        self._names.add(name)
        hub = self._bells._hub()
        if hub is not None:
            hub.subscribe(name, self)
        return True

    def forget(self, channel: Channel) -> None:
        name = channel_name(channel)
        if name in self._names:
            self._names.discard(name)
            hub = self._bells._hub()
            if hub is not None:
                hub.unsubscribe(name, self)

    def channels(self) -> set[Channel]:
        return {(p, int(c)) for p, c in (n.split(".") for n in self._names)}

    def wait(self, poll: float, limit: float | None = None) -> bool:
        """Wait for a ring, at most the fallback interval (bells on) or ``poll`` (bells off: today's polling), and
        at most ``limit`` seconds; returns whether it was rung (or interrupted)."""
        timeout = fallback_s() if self._bells.on else poll
        if limit is not None:
            timeout = min(timeout, max(0.0, limit))
        with self._cond:
            if not self._rung:
                self._cond.wait(timeout)
            rung, self._rung = self._rung, False
        return rung

    def interrupt(self) -> None:
        """Wake the wait now (from this process: a thread that ends it, a new channel to listen to)."""
        with self._cond:
            self._rung = True
            self._cond.notify_all()

    def close(self) -> None:
        hub = self._bells._hub() if self._names else None
        for name in list(self._names):
            if hub is not None:
                hub.unsubscribe(name, self)
        self._names.clear()


class Bells:
    """The bells of one store, for this process. ``sqlite_path``: the database file (SQLite); ``pg_connect``: opens
    a new autocommit psycopg connection to listen on, ``pg_notify(name)``: sends a notification (PostgreSQL). With
    neither (an in-memory store), rings reach this process's own waiters only."""

    def __init__(
        self,
        *,
        sqlite_path: Path | None = None,
        pg_connect: Callable[[], Any] | None = None,
        pg_notify: Callable[[str], None] | None = None,
        pg_notify_in: Callable[[Any, str], None] | None = None,
    ):
        self.on = enabled()
        self._sqlite_path, self._pg_connect, self._pg_notify = sqlite_path, pg_connect, pg_notify
        self._pg_notify_in = pg_notify_in
        self._lock = threading.Lock()
        self._the_hub: _Hub | None = None
        self._pid = os.getpid()
        self._naps: dict[str, Waiter] = {}

    def _backend(self) -> _Backend:
        if self._pg_connect is not None and self._pg_notify is not None:
            return _NotifyBackend(self._pg_connect, self._pg_notify)
        if self._sqlite_path is not None:
            folder = _socket_folder(self._sqlite_path)
            if folder is not None:
                return _SocketBackend(folder)
        return _Backend()

    def _hub(self) -> _Hub | None:
        if not self.on:
            return None
        with self._lock:
            if self._the_hub is None or self._pid != os.getpid():  # a forked child starts its own
                self._pid = os.getpid()
                self._the_hub = _Hub(self._backend())
            return self._the_hub

    def ring(self, channel: Channel) -> None:
        """Wake the channel's listeners (call after the commit). Never raises: a lost ring costs one fallback."""
        if not self.on:
            return
        try:
            name = channel_name(channel)
            hub = self._hub()
            if hub is not None:
                hub.ring(name)
        except Exception as exc:  # noqa: BLE001 - a hint only: the row is committed, the reader polls anyway
            log.debug("ringing %s failed: %s", channel, exc)

    def ring_in(self, session: Any, channel: Channel) -> bool:
        """On PostgreSQL, ring from inside the writer's transaction (``session``): the notification is delivered at
        its commit, with the row, for one statement (no connection checkout or commit of its own); returns True.
        Elsewhere (or bells off) returns False: :meth:`ring` after the commit."""
        if not self.on or self._pg_notify_in is None:
            return False
        self._pg_notify_in(session, _pg_channel(channel_name(channel)))
        return True

    def waiter(self, *channels: Channel) -> Waiter:
        w = Waiter(self)
        for ch in channels:
            w.listen(ch)
        return w

    def nap(self, channel: Channel, poll: float, stop: threading.Event) -> bool:
        """``stop.wait(poll)``, cut short by a ring of ``channel`` (and waiting up to the fallback interval instead
        of ``poll`` when bells are on); returns ``stop.is_set()``. For a loop of one thread that reads the store
        after each nap; :meth:`interrupt` wakes it when ``stop`` is set."""
        if stop.is_set():
            return True
        if not self.on:
            return stop.wait(poll)
        name = channel_name(channel)
        w = self._naps.get(name)
        if w is None:  # newly listening: read the store once more before the first real wait
            w = self._naps[name] = self.waiter(channel)
            return stop.is_set()
        w.wait(poll)
        return stop.is_set()

    def interrupt(self, channel: Channel) -> None:
        """Wake this process's :meth:`nap` on ``channel`` now."""
        w = self._naps.get(channel_name(channel))
        if w is not None:
            w.interrupt()

    def close(self) -> None:
        for w in self._naps.values():
            w.interrupt()
            w.close()
        self._naps.clear()
        with self._lock:
            hub, self._the_hub = self._the_hub, None
        if hub is not None and self._pid == os.getpid():
            hub.close()


class _Hub:
    """One thread per process and store: listens on the backend for the channels its waiters want and wakes them.
    Subscriptions are counted: the last waiter of a channel to leave ends its listening."""

    def __init__(self, backend: _Backend):
        self.backend = backend
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}
        self._ready: dict[str, threading.Event] = {}
        self._commands: deque[tuple[str, str, threading.Event | None]] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="labloop-bells", daemon=True)
        self._thread.start()

    def subscribe(self, name: str, waiter: Waiter) -> None:
        with self._lock:
            ws = self._waiters.setdefault(name, set())
            if not ws:
                self._ready[name] = threading.Event()
                self._commands.append(("listen", name, self._ready[name]))
            ws.add(waiter)
            ready = self._ready[name]
        self._poke()
        if not ready.wait(SUBSCRIBE_WAIT_S):
            log.debug("listening on %s is not in place yet: the fallback poll covers it", name)

    def unsubscribe(self, name: str, waiter: Waiter) -> None:
        with self._lock:
            ws = self._waiters.get(name)
            if ws is None or waiter not in ws:
                return
            ws.discard(waiter)
            if not ws:
                del self._waiters[name]
                self._ready.pop(name, None)
                self._commands.append(("unlisten", name, None))
        self._poke()

    def ring(self, name: str) -> None:
        self.backend.ring(name)
        if not self.backend.reaches_self:
            self._dispatch([name])

    def _poke(self) -> None:
        try:
            self._wake_w.send(b"!")
        except (BlockingIOError, OSError):  # full: it is woken already; closed: it has ended
            pass

    def _dispatch(self, names: Iterable[Any]) -> None:
        with self._lock:
            if _ALL in names:
                targets = {w for ws in self._waiters.values() for w in ws}
            else:
                targets = {w for n in names for w in self._waiters.get(n, ())}
        for w in targets:
            w.interrupt()

    def _run(self) -> None:
        while not self._closed:
            while True:
                with self._lock:
                    if not self._commands:
                        break
                    op, name, ready = self._commands.popleft()
                try:
                    if op == "listen":
                        self.backend.subscribe(name)
                    else:
                        self.backend.unsubscribe(name)
                except Exception as exc:  # noqa: BLE001 - a hint only: its waiters fall back to polling
                    log.debug("%s %s failed: %s", op, name, exc)
                if ready is not None:
                    ready.set()
            fds = [self._wake_r.fileno(), *self.backend.fds()]
            try:
                readable, _, _ = select.select(fds, [], [], self.backend.timeout())
            except (OSError, ValueError):  # a descriptor closed under it: look again
                readable = []
                time.sleep(0.01)
            if self._wake_r.fileno() in readable:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
            rung = self.backend.receive(set(readable))
            if rung:
                self._dispatch(rung)

    def close(self) -> None:
        self._closed = True
        self._poke()
        self._thread.join(2.0)
        self.backend.close()
        self._wake_r.close()
        self._wake_w.close()
