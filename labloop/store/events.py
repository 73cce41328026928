"""The live stream's log: the ``events`` table, written by a campaign's process, read by the daemon.

Each campaign's events carry a sequence number that grows by one; one process writes a campaign's events at a time
(its runner), so ``seq > n`` in order is everything a subscriber lacks. Kept apart from the repository so that the
stream's reads and writes stay in one place.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select

from .repository import Store, to_jsonable
from .schema import Event


def last_seq(store: Store, campaign_id: int) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.max(Event.seq)).where(Event.campaign_id == campaign_id)) or 0)


def add_events(store: Store, rows: list[dict[str, Any]]) -> None:
    """Insert ``{campaign_id, seq, at, kind, body}`` rows in one transaction."""
    if rows:
        with store.session() as s:
            s.execute(insert(Event), [{**r, "body": to_jsonable(r["body"])} for r in rows])


def events_after(store: Store, campaign_id: int, after_seq: int, limit: int = 1000) -> list[Event]:
    """The campaign's events with ``seq > after_seq``, in order (at most ``limit``)."""
    with store.session() as s:
        q = (select(Event).where(Event.campaign_id == campaign_id, Event.seq > after_seq)
             .order_by(Event.seq).limit(limit))
        return list(s.scalars(q))


def as_message(e: Event) -> dict[str, Any]:
    return {"seq": e.seq, "at": e.at.isoformat() if e.at else None, "kind": e.kind, "body": e.body}
