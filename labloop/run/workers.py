"""The threads a scheduler owns: trial workers, and the strategy's own thread.

Why owned: a thread nobody joins outlives the campaign that started it, and a campaign that ends while one of its
workers still moves a sample has not ended. :class:`WorkerPool` starts each trial's worker, counts the live ones,
and joins them when the campaign stops (reporting any that would not end). :class:`AskService` runs the strategy's
``ask`` (a GP fit: seconds at n = 2000) on a thread of its own, so the control loop keeps serving operator
requests, an emergency stop above all, while the model thinks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


class WorkerPool:
    """One thread per trial in flight, keyed by trial id. Used by the control thread and the request thread (an
    approval launches its trials), never by the workers themselves."""

    def __init__(self, prefix: str = "trial"):
        self.prefix = prefix
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, key: int, name: str, fn: Callable[..., None], *args: Any) -> None:
        # daemon: a worker stuck in a driver call must not keep a killed campaign's process alive; the scheduler
        # still joins every worker before it reports the campaign ended.
        th = threading.Thread(target=fn, args=args, name=f"{self.prefix}-{name}", daemon=True)
        with self._lock:
            self._threads[key] = th
        th.start()

    def _all(self) -> list[tuple[int, threading.Thread]]:
        with self._lock:
            return list(self._threads.items())

    def alive(self) -> list[int]:
        return [k for k, th in self._all() if th.is_alive()]

    def join(self, timeout: float) -> list[str]:
        """Join every worker (``timeout`` seconds in all); returns the names of those still running."""
        deadline = time.monotonic() + timeout
        for _, th in self._all():
            th.join(max(0.0, deadline - time.monotonic()))
        return [th.name for _, th in self._all() if th.is_alive()]


@dataclass
class AskResult:
    n: int
    proposals: list[Any] | None
    error: BaseException | None
    seconds: float


class AskService:
    """The strategy's thread: at most one ``ask`` at a time, off the control thread.

    ``submit`` hands it a snapshot (observations and pending points are copied by the caller), ``poll`` returns the
    result once it is ready and never blocks. Process-wide torch state (thread count) is only ever changed by the
    strategy, and only this one thread runs the strategy, so nothing else in the process sees it change: the
    RunEngines and drivers do not use torch."""

    def __init__(
        self,
        ask: Callable[[int, list[Any], list[dict[str, Any]]], list[Any]],
        on_done: Callable[[], None] | None = None,
    ):
        self._ask = ask
        self._on_done = on_done or (lambda: None)  # wakes the control loop the moment a proposal is ready
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="strategy")
        self._future: Future[AskResult] | None = None

    @property
    def busy(self) -> bool:
        return self._future is not None

    def submit(self, n: int, observations: list[Any], pending: list[dict[str, Any]]) -> None:
        if self._future is not None:
            raise RuntimeError("an ask is already running")
        self._future = self._pool.submit(self._run, n, observations, pending)
        self._future.add_done_callback(lambda _f: self._on_done())  # after the result is set: poll() sees it

    def _run(self, n: int, observations: list[Any], pending: list[dict[str, Any]]) -> AskResult:
        t0 = time.perf_counter()
        try:
            return AskResult(n, list(self._ask(n, observations, pending)), None, time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - handed to the control thread, which pauses the lab with it
            return AskResult(n, None, exc, time.perf_counter() - t0)

    def poll(self) -> AskResult | None:
        if self._future is None or not self._future.done():
            return None
        result, self._future = self._future.result(), None
        return result

    def discard(self) -> None:
        """Forget a running ask (the campaign is ending): its result is dropped when it comes."""
        self._future = None

    def shutdown(self) -> None:
        """Let a running ask finish in the background; the campaign does not wait for the model."""
        self._future = None
        self._pool.shutdown(wait=False, cancel_futures=True)
