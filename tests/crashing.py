"""Deterministic crash injection for tests, to prove that resume after ``kill -9`` loses and repeats nothing.

Run a campaign process as ``python tests/crashing.py run campaign.yaml ...`` (the ``labloop`` command's
arguments) with ``LABLOOP_CRASH_AT=<point>:<n>``: this entry point registers a hook on
:mod:`labloop.run.hookpoints` and then runs the ``labloop`` command, and the process dies with ``os._exit`` (no
cleanup, no flush: what ``kill -9`` does) the n-th time it passes ``point``. Points: ``step_start`` (right after a
step's start is committed, before the device moves), ``step_mid`` (while the device works,
``LABLOOP_CRASH_DELAY`` seconds into the step), ``step_end`` (right after a step's end is committed, before the
next action). ``<point>:<n>@<label>`` counts only the passes of steps with that label (``step_start:1@measure:balance``
dies as the process's first weighing starts): where steps of several trials run at once, the n-th step of any kind
depends on timing, the n-th of one label does not.

Why a separate entry point: the production step path only calls hook points nobody registered; the environment
variable is read here, in the test's child process, and nowhere in the runtime (a stray ``LABLOOP_CRASH_AT`` in an
operator's shell does nothing to ``labloop run``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from labloop.run import hookpoints


def crash_hook(at: str, delay: float = 0.05, die: Callable[[int], None] = os._exit) -> hookpoints.Hook:
    """A hook that calls ``die(137)`` on the n-th pass of a point (``at`` is ``<point>:<n>``, or
    ``<point>:<n>@<label>`` to count only the steps labelled so); ``step_mid`` counts ``step_start`` passes and dies
    ``delay`` seconds after the chosen one."""
    at, _, only = at.partition("@")
    target, _, n = at.partition(":")
    nth = int(n or 1)
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def hook(point: str, label: str = "") -> None:
        if target != point and not (target == "step_mid" and point == "step_start"):
            return
        if only and label != only:
            return
        with lock:
            counts[point] = counts.get(point, 0) + 1
            hit = counts[point] == nth
        if not hit:
            return
        if target == "step_mid":
            threading.Timer(delay, die, args=(137,)).start()
            return
        die(137)

    return hook


def install() -> hookpoints.Hook | None:
    """Register the crash hook ``LABLOOP_CRASH_AT`` asks for (none when it is unset)."""
    at = os.environ.get("LABLOOP_CRASH_AT")
    if not at:
        return None
    hook = crash_hook(at, float(os.environ.get("LABLOOP_CRASH_DELAY", "0.05")))
    hookpoints.add(hook)
    return hook


def main() -> None:
    install()
    from labloop.cli import main as labloop_main

    labloop_main()


if __name__ == "__main__":
    main()
