"""A deliberately slow strategy plugin: the first ask answers at once (so trials start), later asks think for
``delay`` seconds, as a GP fit on thousands of points would. Used to prove control never waits on the optimizer."""

from __future__ import annotations

import threading
import time
from typing import Any

from labloop.strategy import RandomStrategy

ASKS: list[float] = []  # start time of every ask (perf_counter)
THINKING = threading.Event()  # set while a slow ask is in progress


class SlowStrategy:
    def __init__(self, spec: Any, candidates: Any = None, delay: float = 10.0, **options: Any):
        self.inner = RandomStrategy(spec, candidates)
        self.delay = float(delay)

    def ask(self, n: int, observations: list, pending: list) -> list:
        ASKS.append(time.perf_counter())
        if len(ASKS) > 1:
            THINKING.set()
            try:
                time.sleep(self.delay)
            finally:
                THINKING.clear()
        return self.inner.ask(n, observations, pending)
