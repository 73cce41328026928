"""The live stream's publishing side: tail the ``events`` table, publish each row on a PUB socket.

Why tail the store instead of receiving from the children: what is published has been stored first, so
``missed(campaign, after_seq)`` returns exactly what the stream carried; a daemon restarted mid-campaign loses
nothing; and no child ever waits on a socket. Each watched campaign is read by ``seq`` (one writer per campaign,
so ``seq`` order is commit order; a global id would not be on PostgreSQL, where two campaigns' transactions commit
out of id order). A PUB socket drops messages for a subscriber whose queue is full (high-water mark), so a slow or
stuck subscriber never slows the daemon or the lab; it notices the gap in ``seq`` and asks ``missed``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import zmq

from labloop.store import Store
from labloop.store.events import CampaignTail

from . import protocol

#: how often the tail reads the store when bells are off (``LABLOOP_WAKEUPS=0``); with them, a child's commit of
#: events rings the campaign's ``events`` bell and the tail reads at once (and at least every fallback interval)
POLL_S = 0.005
LINGER_S = 10.0  # keep publishing an ended campaign this long after its process exits (its last events)
HWM = 20_000
#: a view marked stale is read again this long after the event that marked it: the runner commits what an
#: operator's request changed (a pause's state) just after it announces it on the stream
REREAD_AFTER_S = 0.3
#: a followed campaign silent this long: ask the daemon for what the stream may have dropped (``missed``)
QUIET_CATCH_UP_S = 1.0
#: campaign events kept to apply on top of the next read (a read far behind them is read again anyway)
SINCE_READ = 10_000


class Publisher:
    """Owns the PUB socket (one thread: zmq sockets are not thread-safe)."""

    def __init__(self, ctx: zmq.Context[Any], store: Store, bind: str, secure: Any):
        self.store = store
        self.sock = ctx.socket(zmq.PUB)
        secure(self.sock)
        self.sock.setsockopt(zmq.SNDHWM, HWM)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(bind)
        self.tail = CampaignTail(store)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labloop-stream", daemon=True)
        self._also: list[Any] = []
        self._bell = store.bells.waiter()

    def also(self, listener: Any) -> None:
        """Also hand every published event to ``listener(campaign_id, seq, kind, body)`` (the dashboard's hub);
        it must return at once. Call before :meth:`start`."""
        self._also.append(listener)

    def start(self) -> None:
        self._thread.start()

    def watch(self, campaign_id: int, name: str, from_seq: int | None = None) -> None:
        """Publish ``campaign_id``'s events after ``from_seq`` (default: those stored from now on)."""
        self.tail.watch(campaign_id, name, from_seq)
        self._bell.interrupt()  # the loop listens to its bell, then reads

    def unwatch_later(self, campaign_id: int) -> None:
        self.tail.unwatch_later(campaign_id, LINGER_S)

    def _listen(self) -> None:
        """Listen to the ``events`` bell of exactly the watched campaigns (before reading them: no ring is lost)."""
        watched = {("events", cid) for cid in self.tail.watched()}
        for ch in self._bell.channels() - watched:
            self._bell.forget(ch)
        for ch in watched:
            self._bell.listen(ch)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._listen()
            sent = 0
            for cid, name, rows in self.tail.read():
                for e in rows:
                    frames = protocol.stream_message(name, cid, e.seq, e.at.isoformat() if e.at else "", e.kind, e.body)
                    try:
                        self.sock.send_multipart(frames, zmq.NOBLOCK)
                    except zmq.Again:  # only when no subscriber's queue has room: they recover through missed
                        pass
                    for listener in self._also:
                        listener(cid, e.seq, e.kind, e.body)
                    sent += 1
            if not sent:
                self._bell.wait(POLL_S)

    def close(self) -> None:
        self._stop.set()
        self._bell.interrupt()
        self._thread.join(5)
        self._bell.close()
        self.sock.close(0)


class LiveView:
    """The subscribing side: one campaign's view (:mod:`labloop.data.view`), read once through the daemon's
    ``status`` and kept live by applying each stream event to it, the way ``watch`` and scripts follow a campaign.

    An event whose effect it does not carry (a pause, an alert, a crash, a resume) marks the view stale: it is read
    again (:data:`REREAD_AFTER_S` later), and the events received meanwhile that the read does not include are
    applied on top, so the view ends where a fresh read would.
    """

    def __init__(self, client: Any, stream: str, campaign: str | int):
        from .client import Follower

        self.client = client
        self.view: dict[str, Any] = client.call("status", campaign=campaign)
        self.cid = self.view["campaign"]["id"]
        self.follower = Follower(client, stream, self.view["campaign"]["name"], after={self.cid: self.view["last_seq"]})
        self._since_read: list[dict[str, Any]] = []
        self._reread_at: float | None = None
        self._quiet_since = time.monotonic()
        self.rereads = 0
        # what was published between the read and the subscription (a new subscriber misses the first messages:
        # and a campaign that then pauses sends nothing more that would reveal the gap)
        self._take(self.follower.catch_up(self.cid, self.view["last_seq"]))

    def poll(self, timeout: float = 0.1) -> list[dict[str, Any]]:
        """Apply the events that arrive within ``timeout`` seconds (the view is read again when one asks); returns
        them."""
        events = [e for e in self.follower.poll(timeout) if e.get("campaign_id", self.cid) == self.cid]
        now = time.monotonic()
        if events:
            self._quiet_since = now
        elif now - self._quiet_since >= QUIET_CATCH_UP_S:  # quiet: ask what the stream may have dropped
            self._quiet_since = now
            events = self.follower.catch_up(self.cid, self.follower.last.get(self.cid, self.view["last_seq"]))
        self._take(events)
        return events

    def _take(self, events: list[dict[str, Any]]) -> None:
        from labloop.data.view import apply

        for e in events:
            apply(self.view, e)
            if e.get("kind") != "document":  # documents change nothing in a view
                self._since_read.append(e)
        del self._since_read[:-SINCE_READ]
        if self.view.pop("stale", False) and self._reread_at is None:
            self._reread_at = time.monotonic() + REREAD_AFTER_S
        if self._reread_at is not None and time.monotonic() >= self._reread_at:
            self.reread()

    def reread(self) -> None:
        """Read the view again; apply on top the events already received that the read does not include."""
        from labloop.data.view import apply

        fresh = self.client.call("status", campaign=self.cid)
        for e in self._since_read:
            apply(fresh, e)
        fresh.pop("stale", None)
        self.view, self._since_read, self._reread_at = fresh, [], None
        self.rereads += 1

    def close(self) -> None:
        self.follower.close()
