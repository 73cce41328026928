"""Exceptions a loop survives, made visible: the first one is a warning with its traceback, the later ones are
counted (a warning with the count every ``every``), so a broken store or lease shows in the log without flooding it.

Why not just ``pass``: a heartbeat that silently fails for an hour looks, from outside, exactly like a dead runner;
the operator reading the daemon's log must see the cause the first time it happens.
"""

from __future__ import annotations

import logging
import threading


class Swallowed:
    """Call with the exception a loop catches and goes on after (``except Exception as exc: swallowed(exc)``)."""

    def __init__(self, logger: logging.Logger, what: str, every: int = 100):
        self.logger, self.what, self.every = logger, what, every
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, exc: BaseException) -> None:
        with self._lock:
            self.count += 1
            n = self.count
        if n == 1:
            self.logger.warning(
                "%s failed (carrying on; later failures are counted): %s: %s",
                self.what,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
        elif n % self.every == 0:
            self.logger.warning("%s failed %d times so far; the latest: %s: %s", self.what, n, type(exc).__name__, exc)
