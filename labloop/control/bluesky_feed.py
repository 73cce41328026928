"""Feed the live stream's documents to ordinary bluesky callbacks.

The stream carries every event-model document unchanged (JSON, never pickle), so anything that takes
``(name, doc)`` works: ``BestEffortCallback``, ``LiveTable``, ``CallbackCounter``, a databroker/tiled writer::

    from bluesky.callbacks.core import CallbackCounter
    from labloop.control.bluesky_feed import documents
    from labloop.control.client import Client, Follower
    from labloop.identity.keys import load_client_key

    client = Client("tcp://lab-pc:7510", load_client_key("~/alice.key"))
    follower = Follower(client, "tcp://lab-pc:7511", "thinfilm-nb-tio2")
    counter = CallbackCounter()
    for name, doc in documents(follower, catch_up="thinfilm-nb-tio2"):
        counter(name, doc)

A follower that joined late (``catch_up``) or lost its connection gets the documents it missed first, in order,
exactly once: a callback never sees a stop before its start.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .client import Follower


def documents(
    follower: Follower, catch_up: str | int | None = None, timeout: float = 0.5, until_end: bool = True
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(name, doc)`` pairs of the followed campaigns; ends when a followed campaign ends (``until_end``)."""
    events = follower.catch_up(catch_up) if catch_up is not None else []
    while True:
        for e in events:
            if e["kind"] == "document":
                yield e["body"]["name"], e["body"]["doc"]
            elif e["kind"] == "campaign_end" and until_end:
                return
        events = follower.poll(timeout)
