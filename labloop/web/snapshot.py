"""The campaigns a user may open, and the campaign a page names.

A campaign page's data is the campaign view (:func:`labloop.data.view.campaign_view`, with the running steps'
process points): the same dict ``labloop status --json`` prints and the daemon answers. The page renders it, then
applies the live events pushed to it with the same ``apply`` (``static/view.js``); an event whose effect it does not
carry (a pause, an alert, the end) makes it read the view again. The store is the truth, so a fresh view is always
right even when the page missed something; the events only make it live.
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
        rows.append(
            {
                "id": c.id,
                "name": c.name,
                "state": c.state,
                "stop_reason": c.stop_reason,
                "created": c.created_at.isoformat() if c.created_at else None,
                "liveness": liveness(c).state,
            }
        )
    return rows
