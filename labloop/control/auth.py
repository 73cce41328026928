"""The ZAP handler that admits only CURVE keys the store knows (the roles it hands on are
:mod:`labloop.identity.roles`).

Why ZAP against the store and not a list of keys in a folder: ``labloop users add`` and ``users revoke`` run on the
store (whoever can write it administers it), so every daemon sharing that store learns of a new or revoked key
within half a second, without a restart. The ZMQ "User-Id" of an admitted connection is the user's *name*, so the
daemon reads who sent a request from the message itself (``frames[-1].get("User-Id")``), never from its body.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from labloop.identity.roles import Identity
from labloop.identity.users import admitted

#: How often a background thread re-reads the store's users: a revoke takes effect within about this long.
REFRESH_S = 0.25
#: An unknown key makes the ZAP thread re-read the users at once, at most once per this many seconds.
MISS_REFRESH_S = 0.05
#: A key table older than this (the store could not be read) admits nobody but ``extra``: fail closed.
MAX_AGE_S = 1.0

log = logging.getLogger(__name__)


def _z85_of(key: bytes | str) -> bytes:
    """A public key as Z85 bytes, from Z85 (str or bytes) or the raw 32 bytes."""
    if isinstance(key, str):
        key = key.encode("ascii")
    return z85.encode(key) if len(key) == 32 else key


class _KeyTable:
    """The store's users as ``{z85 public key: Identity}`` and ``{name: Identity}``, re-read by a background thread
    every ``REFRESH_S``. Look-ups never touch the database, so neither the ZAP thread nor the daemon's request loop
    waits on a slow or lost database server; a table older than ``MAX_AGE_S`` admits nobody (fail closed)."""

    def __init__(self, store: Any, extra: dict[bytes, Identity] | None):
        self.store = store
        self.extra = {_z85_of(k): v for k, v in (extra or {}).items()}
        self.by_key: dict[bytes, Identity] = {}
        self.by_name: dict[str, Identity] = {}
        self.read_at = float("-inf")
        self.missed_at = float("-inf")
        self.failing = False

    def refresh(self) -> None:
        """Re-read the users; on failure keep the old table (it expires) and log once per outage."""
        started = time.monotonic()
        try:
            users = admitted(self.store)
        except Exception:
            if not self.failing:
                log.exception(
                    "cannot read the users of the store; refusing everyone once the key table is %.1f s old", MAX_AGE_S
                )
            self.failing = True
            return
        by_key = {u.public_key.encode("ascii"): Identity(u.name, u.role) for u in users}
        # plain assignments, read without a lock: each look-up sees one whole table, the old or the new one
        self.by_key, self.by_name = by_key, {i.name: i for i in by_key.values()}
        self.read_at, self.failing = started, False

    def _fresh(self) -> bool:
        return time.monotonic() - self.read_at < MAX_AGE_S

    def by_public(self, key: bytes) -> Identity | None:
        if key in self.extra:
            return self.extra[key]
        found = self.by_key.get(key) if self._fresh() else None
        now = time.monotonic()
        if found is None and not self.failing and now - self.missed_at >= MISS_REFRESH_S:
            # a key added a moment ago (`users add`, then connect at once): a refused handshake drops what the
            # client queued, so look once more now; rate-limited, so unknown keys cannot hammer the store
            self.missed_at = now
            self.refresh()
            found = self.by_key.get(key) if self._fresh() else None
        return found

    def named(self, name: str) -> Identity | None:
        for ident in self.extra.values():
            if ident.name == name:
                return ident
        return self.by_name.get(name) if self._fresh() else None


class StoreAuthenticator(ThreadAuthenticator):
    """The ZAP handler of a context: admits a CURVE client iff its public key is a non-revoked ``users`` row of the
    store (or in ``extra``, e.g. the daemon's own key that its campaign children use); the connection's User-Id is
    then the user's name. Sockets of ``ctx`` made with :func:`labloop.identity.keys.apply_server` use it.

    ``start()`` reads the users, binds ``inproc://zeromq.zap.01`` in ``ctx`` (one authenticator per context) and
    starts the thread that keeps the key table fresh; ``stop()`` ends both."""

    def __init__(
        self, ctx: zmq.Context, store: Any, domain: str = "labloop", extra: dict[bytes, Identity] | None = None
    ):
        super().__init__(context=ctx, log=log)
        self.domain = domain
        self._table = _KeyTable(store, extra)
        self._admitted: tuple[bytes, Identity] | None = None  # the ZAP thread's last admitted key, for its User-Id
        self._refresher: threading.Thread | None = None
        self._stopping = threading.Event()
        self.configure_curve_callback(domain, self)

    def start(self) -> None:
        self._table.refresh()
        super().start()
        self._stopping.clear()
        self._refresher = threading.Thread(target=self._keep_fresh, name="labloop-keys", daemon=True)
        self._refresher.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._refresher is not None:
            self._refresher.join()
            self._refresher = None
        super().stop()

    def _keep_fresh(self) -> None:
        while not self._stopping.wait(REFRESH_S):
            self._table.refresh()

    # called by pyzmq in the ZAP thread ------------------------------------------------------------------
    def callback(self, domain: str, key: bytes) -> bool:
        """Is this Z85 key one we admit? Never raises (an exception would end the ZAP thread)."""
        try:
            ident = self._table.by_public(key) if domain == self.domain else None
        except Exception:
            log.exception("ZAP look-up failed; refusing the connection")
            ident = None
        self._admitted = (key, ident) if ident is not None else None
        return ident is not None

    def curve_user_id(self, client_public_key: bytes) -> str:
        admitted = self._admitted
        self._admitted = None
        try:
            key = z85.encode(client_public_key)
        except Exception:  # noqa: BLE001 - never seen: libzmq hands 32 bytes
            key = b""
        if admitted is not None and admitted[0] == key:
            return admitted[1].name
        return "?"  # not reachable: pyzmq asks only after callback admitted this key

    # used by the daemon ---------------------------------------------------------------------------------
    def identify(self, user_id: str) -> Identity | None:
        """The identity behind a connection's User-Id, or None once that user is revoked (or unknown): the key
        table is about ``REFRESH_S`` old, so a revoke stops an open connection's requests well within a second."""
        if not user_id or user_id == "?":
            return None
        return self._table.named(user_id)

    def identity_of_key(self, public_key: bytes | str) -> Identity | None:
        """The identity whose public key (Z85 or raw) is ``public_key``, if admitted now."""
        return self._table.by_public(_z85_of(public_key))
