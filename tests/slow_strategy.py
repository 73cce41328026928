"""A deliberately slow strategy plugin: the first ask answers at once (so trials start), later asks think for
``delay`` seconds, as a GP fit on thousands of points would. Used to prove control never waits on the optimizer."""

from __future__ import annotations

import threading
import time
from typing import Any

from labloop.strategy import RandomStrategy

ASKS: list[float] = []  # start time of every ask (perf_counter)


class SlowStrategy:
    def __init__(self, spec: Any, candidates: Any = None, **kw: Any):
        options = dict(spec.strategy.options)  # this plugin's own options; the random strategy gets none
        plain = spec.model_copy(update={"strategy": spec.strategy.model_copy(update={"options": {}})})
        self.inner = RandomStrategy(plain, candidates)
        self.delay = float(options.get("delay", 10.0))
        self.busy = bool(options.get("busy", False))  # burn CPU in Python (holding the GIL) instead of sleeping
        self.thinking = threading.Event()  # set while a slow ask of this instance is in progress
        self.asks = 0

    def ask(self, n: int, observations: list, pending: list) -> list:
        ASKS.append(time.perf_counter())
        self.asks += 1
        if self.asks > 1:
            self.thinking.set()
            try:
                end = time.perf_counter() + self.delay
                while time.perf_counter() < end:
                    if self.busy:
                        sum(i * i for i in range(2000))
                    else:
                        time.sleep(0.05)
            finally:
                self.thinking.clear()
        return self.inner.ask(n, observations, pending)
