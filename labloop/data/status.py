"""A campaign's status as plain data: what ``labloop status`` prints, locally or from a daemon.

A thin adapter over :mod:`labloop.data.view` (the one campaign view): the daemon answers ``status`` with the view,
the command line prints the same dict whether it read the store itself or asked a daemon, and the dashboard's page
and ``/api`` serve it too, so none of them can drift apart.
"""

from __future__ import annotations

from typing import Any

from labloop.store import Store
from labloop.store.schema import Campaign

from .view import STREAM_POINTS, campaign_view, fmt_params, pick_campaign

__all__ = ["STREAM_POINTS", "fmt_params", "pick_campaign", "snapshot"]


def snapshot(st: Store, ref: str | int | Campaign | None, *, page: bool = False) -> dict[str, Any]:
    """The campaign view; ``page``: with each running step's newest process points (what the page's charts draw)."""
    return campaign_view(st, ref, points=page)
