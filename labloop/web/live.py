"""Live events for the pages: a hub that fans a campaign's stream out to every open page, with catch-up.

Every message of a campaign's stream is first committed to the ``events`` table with its per-campaign ``seq``
(the daemon's rule), so a page that (re)connects with ``Last-Event-ID: n`` is sent the rows after ``n`` from the
store, then the live ones, skipping any it already has: no gap, no duplicate. Where live messages come from:

- inside the daemon, its stream feed calls :meth:`LiveHub.publish` for each message as it passes (lowest latency);
- otherwise (``labloop web`` beside a store, or a daemon that does not feed the hub) :class:`StoreTail` reads new
  rows of the ``events`` table every ``interval`` seconds, one indexed query per running campaign, and publishes
  them.

A slow page never slows anyone: each page has a bounded queue; a page that falls behind is told to reconnect and
then catches up from the store.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from labloop.store import Store
from labloop.store.events import CampaignTail, active_campaigns, events_after, last_seqs

from .thin import Thinner

#: messages a page may fall behind by before it is told to reconnect (and catch up from the store)
QUEUE = 10_000
KEEPALIVE_S = 15.0
#: rows read from the store per query while a page catches up
CATCH_UP = 5000
#: seconds the store tail keeps reading a campaign that ended (its last events)
LINGER_S = 10.0


def sse(seq: int | None, kind: str, data: Any) -> bytes:
    """One server-sent event frame."""
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _Page:
    """One open page: its queue of live events, and whether it fell behind (then it is dropped from the fan-out)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE)
        self.behind = False


class _EveryEvent:
    """The unthinned stream's framing (the :class:`~labloop.web.thin.Thinner` interface): every event as its own
    server-sent event, in ``seq`` order, nothing held."""

    holding = False

    def __init__(self, after: int):
        self.upto = after
        self._ready: list[bytes] = []

    def due(self, now: float) -> float:
        return 0.0

    def add(self, seq: int, kind: str, body: Any, now: float) -> None:
        self._ready.append(sse(seq, kind, body))
        self.upto = seq

    def frame(self, now: float | None = None) -> bytes | None:
        out, self._ready = b"".join(self._ready), []
        return out or None


class LiveHub:
    """Fans published events out to the pages watching each campaign. ``publish`` may be called from any thread."""

    def __init__(self, store: Store):
        self.store = store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pages: dict[int, set[_Page]] = {}
        self._inbox: collections.deque[tuple[int, tuple[int, str, dict[str, Any]]]] = collections.deque()
        self._woken = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, campaign_id: int, seq: int, kind: str, body: dict[str, Any]) -> None:
        """Hand one event to the pages. The loop is woken once for whatever was published meanwhile, not once per
        event: the stream publishes a poll's rows back to back (hundreds a second in a fast simulation)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        self._inbox.append((campaign_id, (seq, kind, body)))  # deque appends and pops are thread-safe
        if not self._woken:
            self._woken = True
            loop.call_soon_threadsafe(self._fan_out)

    def _fan_out(self) -> None:
        self._woken = False  # before draining: an event appended after this point wakes the loop again
        while self._inbox:
            campaign_id, item = self._inbox.popleft()
            for page in list(self._pages.get(campaign_id, ())):
                try:
                    page.queue.put_nowait(item)
                except asyncio.QueueFull:  # this page fell behind: it reconnects and catches up from the store
                    self._pages[campaign_id].discard(page)
                    page.behind = True

    def page_count(self, campaign_id: int | None = None) -> int:
        if campaign_id is None:
            return sum(len(v) for v in self._pages.values())
        return len(self._pages.get(campaign_id, ()))

    async def stream(self, campaign_id: int, after: int, thin: bool = False) -> AsyncIterator[bytes]:
        """Frames for one page: what the store holds after ``after``, then live events, in seq order; ``thin``:
        monitor readings thinned and events batched (:mod:`labloop.web.thin`), as the dashboard's pages ask."""
        page = _Page()
        self._pages.setdefault(campaign_id, set()).add(page)  # subscribe before reading the store: nothing slips by
        try:
            yield b"retry: 1000\n\n"  # a dropped page reconnects after 1 s (browsers' default: 3 s)
            async for frame in self._frames(page, campaign_id, Thinner(after) if thin else _EveryEvent(after)):
                yield frame
        finally:
            pages = self._pages.get(campaign_id)
            if pages is not None:
                pages.discard(page)

    async def _frames(self, page: _Page, campaign_id: int, framer: Thinner | _EveryEvent) -> AsyncIterator[bytes]:
        """Catch up from the store, then live events, through ``framer`` (which decides what a frame holds): a
        page that fell behind by a hundred events gets what is ready in one write, not a hundred."""
        while True:  # catch up from the store, a page of rows at a time (thinned by the events' own times)
            rows = await asyncio.to_thread(self._after, campaign_id, framer.upto, None)
            for seq, kind, body, at in rows:
                framer.add(seq, kind, body, at)
            frame = framer.frame()
            if frame:
                yield frame
            if len(rows) < CATCH_UP:
                break
        yield sse(None, "live", {"after": framer.upto})
        clock = asyncio.get_running_loop().time
        while True:
            if page.behind and page.queue.empty():
                return  # the browser's EventSource reconnects with Last-Event-ID and catches up
            try:
                async with asyncio.timeout(framer.due(clock()) if framer.holding else KEEPALIVE_S):  # no task per wait
                    items = [await page.queue.get()]
            except TimeoutError:
                frame = framer.frame(clock())
                yield frame or b": keepalive\n\n"
                continue
            while not page.queue.empty():  # everything that came meanwhile goes in the same write
                items.append(page.queue.get_nowait())
            now = clock()
            for seq, kind, body in items:
                if seq <= framer.upto:
                    continue
                if seq > framer.upto + 1:  # a gap (the feed dropped something): fill it from the store
                    for s2, k2, b2, _at in await asyncio.to_thread(self._after, campaign_id, framer.upto, seq - 1):
                        framer.add(s2, k2, b2, now)
                framer.add(seq, kind, body, now)
            frame = framer.frame(now)
            if frame:
                yield frame

    def _after(self, campaign_id: int, after: int, upto: int | None = None) -> list[tuple[int, str, dict, float]]:
        rows = events_after(self.store, campaign_id, after, limit=(upto - after) if upto is not None else CATCH_UP)
        return [(e.seq, e.kind, e.body, e.at.timestamp() if e.at else 0.0) for e in rows]


class StoreTail:
    """Publishes new ``events`` rows to a hub, reading the store every ``interval`` seconds on its own thread.

    It reads with the daemon stream's per-campaign tail (:class:`~labloop.store.events.CampaignTail`, by ``seq``),
    over the campaigns running or paused (looked up every ``discover`` seconds; one that ends is read a little
    longer, for its last events). Every event stored after the tail started is published once: a campaign seen
    later is read from where it stood at the start (from its first event, for one created since)."""

    def __init__(self, store: Store, hub: LiveHub, interval: float = 0.05, discover: float = 1.0):
        self.store, self.hub, self.interval, self.discover = store, hub, interval, discover
        self._stop = threading.Event()
        self._tail = CampaignTail(store)
        self._at_start = last_seqs(store)
        self._thread = threading.Thread(target=self._run, name="labloop-web-tail", daemon=True)
        self._bell = store.bells.waiter()  # a campaign's commit of events rings it: read at once, not next interval

    def start(self) -> StoreTail:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._bell.interrupt()
        self._thread.join(timeout=2)
        self._bell.close()

    def _look_for_campaigns(self) -> None:
        try:
            active = active_campaigns(self.store)
        except Exception:  # noqa: BLE001 - a store hiccup must not end the tail; the next look retries
            return
        watched = self._tail.watched()
        for cid, name in active.items():
            if cid not in watched:
                self._tail.watch(cid, name, self._at_start.get(cid, 0))
        for cid in watched - set(active):
            self._tail.unwatch_later(cid, LINGER_S)

    def _run(self) -> None:
        next_look = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_look:
                self._look_for_campaigns()
                next_look = time.monotonic() + self.discover
            watched = {("events", cid) for cid in self._tail.watched()}  # listened to before reading them
            for ch in self._bell.channels() - watched:
                self._bell.forget(ch)
            for ch in watched:
                self._bell.listen(ch)
            for cid, _, rows in self._tail.read():
                for e in rows:
                    self.hub.publish(cid, e.seq, e.kind, e.body)
            self._bell.wait(self.interval, next_look - time.monotonic())
