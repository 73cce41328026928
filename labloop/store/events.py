"""The live stream's log: the ``events`` table, written by a campaign's process, read by the daemon.

Each campaign's events carry a sequence number that grows by one; one process writes a campaign's events at a time
(its runner), so ``seq > n`` in order is everything a subscriber lacks. Kept apart from the repository so that the
stream's reads and writes stay in one place.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import func, insert, select

from labloop.logs import Swallowed

from .repository import Store, to_jsonable
from .schema import Campaign, Event

log = logging.getLogger(__name__)
_tail_failed = Swallowed(log, "reading new stream events from the store")


def last_seq(store: Store, campaign_id: int) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.max(Event.seq)).where(Event.campaign_id == campaign_id)) or 0)


def add_events(store: Store, rows: list[dict[str, Any]]) -> None:
    """Insert ``{campaign_id, seq, at, kind, body}`` rows in one transaction."""
    if rows:
        cids = {int(r["campaign_id"]) for r in rows}
        with store.session() as s:
            s.execute(insert(Event), [{**r, "body": to_jsonable(r["body"])} for r in rows])
            rung = [cid for cid in cids if store.bells.ring_in(s, ("events", cid))]  # PostgreSQL: at the commit
        for cid in cids.difference(rung):  # committed: wake the daemons' stream
            store.ring(("events", cid))


def events_after(store: Store, campaign_id: int, after_seq: int, limit: int = 1000) -> list[Event]:
    """The campaign's events with ``seq > after_seq``, in order (at most ``limit``)."""
    with store.session() as s:
        q = (
            select(Event)
            .where(Event.campaign_id == campaign_id, Event.seq > after_seq)
            .order_by(Event.seq)
            .limit(limit)
        )
        return list(s.scalars(q))


def as_message(e: Event) -> dict[str, Any]:
    return {"seq": e.seq, "at": e.at.isoformat() if e.at else None, "kind": e.kind, "body": e.body}


def last_seqs(store: Store) -> dict[int, int]:
    """Every campaign's last ``seq`` (campaigns without events are absent)."""
    with store.session() as s:
        rows = s.execute(select(Event.campaign_id, func.max(Event.seq)).group_by(Event.campaign_id)).all()
    return {int(c): int(n) for c, n in rows}


def active_campaigns(store: Store) -> dict[int, str]:
    """id -> name of the campaigns running or paused now (one light query: no spec text)."""
    with store.session() as s:
        rows = s.execute(select(Campaign.id, Campaign.name).where(Campaign.state.in_(("running", "paused")))).all()
    return {int(i): str(n) for i, n in rows}


class CampaignTail:
    """Read positions in the ``events`` table, one per watched campaign: :meth:`read` returns each campaign's rows
    after the last ones it returned. Shared by the daemon's stream and the dashboard's store tail.

    Why per campaign and by ``seq`` (not by the table's global id): one writer per campaign, so its ``seq`` order is
    its commit order; a global id is not commit order on PostgreSQL, where two campaigns' transactions commit out
    of id order, and a reader going by id would skip the row committed late. Thread-safe (watch from one thread,
    read from another)."""

    def __init__(self, store: Store, batch: int = 500):
        self.store, self.batch = store, batch
        self._watch: dict[int, list[Any]] = {}  # campaign id -> [name, last returned seq, drop after (or None)]
        self._lock = threading.Lock()

    def watch(self, campaign_id: int, name: str, from_seq: int | None = None) -> None:
        """Return ``campaign_id``'s events after ``from_seq`` (default: those stored from now on)."""
        start = last_seq(self.store, campaign_id) if from_seq is None else from_seq
        with self._lock:
            if campaign_id in self._watch:
                self._watch[campaign_id][2] = None
            else:
                self._watch[campaign_id] = [name, start, None]

    def unwatch_later(self, campaign_id: int, linger: float) -> None:
        """Keep reading for ``linger`` more seconds (the campaign's last events), then drop it once it is quiet."""
        with self._lock:
            w = self._watch.get(campaign_id)
            if w is not None:
                w[2] = time.monotonic() + linger

    def watched(self) -> set[int]:
        with self._lock:
            return set(self._watch)

    def read(self) -> list[tuple[int, str, list[Event]]]:
        """``(campaign id, name, new rows)`` for each watched campaign that has new rows (at most ``batch`` each;
        the rest come with the next call). A store error leaves the positions where they were."""
        with self._lock:
            watched = [(cid, w[0], w[1], w[2]) for cid, w in self._watch.items()]
        out = []
        for cid, name, after, until in watched:
            try:
                rows = events_after(self.store, cid, after, self.batch)
            except Exception as exc:  # noqa: BLE001 - a store hiccup: the next read tries again, the rows stay
                _tail_failed(exc)
                continue
            with self._lock:
                w = self._watch.get(cid)
                if w is not None:
                    if rows:
                        w[1] = rows[-1].seq
                    elif until is not None and time.monotonic() > until:
                        del self._watch[cid]
            if rows:
                out.append((cid, name, rows))
        return out
