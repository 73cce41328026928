"""The RunEngines of a campaign: one :class:`~labloop.run.executor.TrialExecutor` (with its RunEngine) per trial in
flight, reused by the next trial, and the set of those running now, so an emergency stop or a lost lease can
interrupt every run at once.

Why a pool: a RunEngine is costly to build (it starts an event loop thread) and a lab runs the same few trials in
parallel for days; reusing idle ones keeps that cost to the number of stations.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from bluesky import RunEngine
from bluesky.suspenders import SuspendCeil, SuspendFloor, SuspendWhenOutsideBand

from labloop.errors import SpecError

from .context import RunContext
from .executor import TrialExecutor


class EnginePool:
    """Idle executors to reuse and the active ones to interrupt; its own lock (any thread may use it)."""

    def __init__(
        self,
        ctx: RunContext,
        documents: Callable[[str, dict[str, Any]], None] | None = None,
        make: Callable[[], TrialExecutor] | None = None,
    ):
        self.ctx = ctx
        self.documents = documents  # every RunEngine's documents, as they are emitted (the daemon's live stream)
        self._make = make or self._build
        self._idle: list[TrialExecutor] = []
        self._active: set[TrialExecutor] = set()
        self._lock = threading.Lock()

    def take(self) -> TrialExecutor:
        """An executor for one trial, counted active until :meth:`give_back`."""
        with self._lock:
            ex = self._idle.pop() if self._idle else None
        if ex is None:
            ex = self._make()
        with self._lock:
            self._active.add(ex)
        return ex

    def give_back(self, ex: TrialExecutor) -> None:
        with self._lock:
            self._active.discard(ex)
            self._idle.append(ex)

    def active(self) -> list[TrialExecutor]:
        with self._lock:
            return list(self._active)

    def interrupt_all(self) -> None:
        """End every run now (emergency stop, lost lease); a run that will not halt is alerted by its executor."""
        for ex in self.active():
            ex.interrupt()

    def _build(self) -> TrialExecutor:
        ctx = self.ctx
        ex = TrialExecutor(ctx.spec, ctx.lab, ctx.store, RunEngine(context_managers=[]), on_alert=ctx.alert)
        if self.documents is not None:
            ex.RE.subscribe(self.documents)
        if ctx.lease is not None:
            ex.guard = ctx.lease.check  # before every physical action, and before recording a failed one
        for s in ctx.spec.lab.suspenders if ctx.spec.lab else []:
            ex.RE.install_suspender(suspender(ctx, s))
        return ex


def suspender(ctx: RunContext, s: Any) -> Any:
    """The bluesky suspender for one ``lab.suspenders`` entry (its sleep in the lab's time)."""
    dev, _, comp = s.signal.partition(".")
    signal = getattr(ctx.lab[dev], comp, None)
    if signal is None:
        raise SpecError(f"lab.suspenders: device '{dev}' has no signal '{comp}'", "name a component of the device")
    sleep = s.resume_after / ctx.time_scale
    if s.low is not None and s.high is not None:
        return SuspendWhenOutsideBand(signal, s.low, s.high, sleep=sleep)
    if s.low is not None:
        return SuspendFloor(signal, s.low, sleep=sleep)
    return SuspendCeil(signal, s.high, sleep=sleep)
