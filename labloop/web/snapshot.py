"""The campaigns a user may open, and the campaign a page names.

A campaign page's data is :func:`labloop.data.status.snapshot` with ``page=True``: the same dict ``labloop status``
prints and the daemon answers, plus what the page draws. The page renders it, then applies the live events pushed
to it; on events that change the structure (a pause, the end) it asks for a fresh one. The store is the truth, so
the snapshot is always right even when the page missed something; the events only make it live.
"""

from __future__ import annotations

from typing import Any

from labloop.errors import LabloopError
from labloop.run.liveness import liveness
from labloop.store import Store
from labloop.store.schema import Campaign


def find_campaign(store: Store, name: str) -> Campaign | None:
    """The campaign called ``name`` (newest first), or with that id; None if there is none."""
    try:
        return store.campaign(name)
    except LabloopError:
        return None


def campaign_list(store: Store) -> list[dict[str, Any]]:
    rows = []
    for c in store.campaigns():
        rows.append({"id": c.id, "name": c.name, "state": c.state, "stop_reason": c.stop_reason,
                     "created": c.created_at.isoformat() if c.created_at else None, "liveness": liveness(c).state})
    return rows
