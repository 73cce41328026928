"""Fire-and-forget coroutines for the protocol simulators, kept referenced until they finish.

asyncio holds only a weak reference to a task: one started with ``ensure_future`` and not stored may be garbage
collected before it runs (a fault write, a node update would then silently never happen). Every simulator that
starts such a task goes through :func:`background`, which keeps it in a set until it is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

_PENDING: set[asyncio.Future[Any]] = set()


def background(coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
    """Run ``coro`` on the running loop without awaiting it, keeping a reference until it is done; returns the task
    (to cancel it)."""
    task = asyncio.ensure_future(coro)
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)
    return task
