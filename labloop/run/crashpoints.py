"""Deterministic crash injection, to prove that resume after ``kill -9`` loses and repeats nothing.

Set ``LABLOOP_CRASH_AT`` to ``<point>:<n>`` and the process dies with ``os._exit`` (no cleanup, no flush: what
``kill -9`` does) the n-th time it passes ``point``. Points: ``step_start`` (right after a step's start is
committed, before the device moves), ``step_mid`` (while the device works, ``LABLOOP_CRASH_DELAY`` seconds into
the step), ``step_end`` (right after a step's end is committed, before the next action). Unset: no cost but one
dictionary lookup.
"""

from __future__ import annotations

import os
import threading

_counts: dict[str, int] = {}
_lock = threading.Lock()


def _target() -> tuple[str, int] | None:
    spec = os.environ.get("LABLOOP_CRASH_AT")
    if not spec:
        return None
    point, _, n = spec.partition(":")
    return point, int(n or 1)


def reached(point: str) -> None:
    """Count a pass through ``point``; die here if this is the configured pass."""
    target = _target()
    if target is None or (target[0] != point and not (target[0] == "step_mid" and point == "step_start")):
        return
    with _lock:
        _counts[point] = _counts.get(point, 0) + 1
        hit = _counts[point] == target[1]
    if not hit:
        return
    if target[0] == "step_mid":
        delay = float(os.environ.get("LABLOOP_CRASH_DELAY", "0.05"))
        threading.Timer(delay, os._exit, args=(137,)).start()
        return
    os._exit(137)
