"""Batch stations: which trials share one run of a station that takes several samples (a box furnace fires up to
four crucibles on one profile), and when a part-full batch fires rather than waits for company.

The rule, for one station kind with ``capacity`` C, ``batch_key`` K and ``max_wait_s`` W (lab seconds):

* A trial arriving at the station joins the oldest *open* (not yet fired) batch whose key (the trial's values of
  the parameters K, compared exactly) equals its own and that has room; otherwise it opens a new batch.
* An open batch fires at the first of:

  1. **full**: it holds C samples;
  2. **no company**: no *prospect* (a trial in flight or queued that has not yet reached this step, as the
     scheduler reports it) has the batch's key and could arrive before the wait runs out; a prospect whose
     arrival time is unknown counts as one that could;
  3. **waited**: W lab seconds have passed since the batch opened.

* A fired batch takes no more members. Its first member (the *leader*) runs the station once for all of them;
  the others wait for that run to end, then every member walks on alone.

With C = 1 every batch is full at its first sample, so a trial fires at once: a one-sample station as before.

Why this rule: waiting trades the idle slots of a part-full run (a furnace-day fired for one crucible) against the
time of every trial already loaded. A wait is worth it only when some trial could actually fill a slot, so the rule
waits only for a prospect with the same key, and W bounds what a wrong guess costs: no trial waits longer than W
for company. Every fired batch is recorded (size, why it fired, how long it waited): :meth:`BatchFormer.stats`
gives the fill ratio and the counts by reason, the measure of the rule on a campaign.

The device contract (see :meth:`BatchFormer.recipe`): a batch station is a ``Station`` (``set(recipe) -> Status``)
whose recipe carries the shared key fields plus ``samples`` (the sample ids it holds) and ``batch`` (the batch id).
It is ONE bluesky run, because it is one physical firing: one temperature history for every crucible, one run of
documents that each member's step row points to (with the batch id), rather than N runs faking N firings.

The clock is injected (lab seconds: simulated time for a simulated lab), so the rule is tested with a fake clock.

This rule only groups the trials it is given. With a continuous key they rarely share one; asking the optimizer for
proposals that do (``share_proposals``) is labloop/run/batch_share.py.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labloop.spec import BatchSpec

from .resources import Cancelled

FULL, NO_COMPANY, WAITED = "full", "no_company", "waited"


class BatchFailed(Exception):
    """The station's run for the whole batch failed: every member's step failed with it."""

    def __init__(self, batch: Batch, reason: str):
        self.batch, self.reason = batch, reason
        super().__init__(f"batch {batch.id} on '{batch.kind}' failed: {reason}")


@dataclass(frozen=True)
class Prospect:
    """A trial that has not reached the batch station yet and might: its key and, if known, in how many lab
    seconds it arrives."""

    trial: int
    key: tuple[Any, ...]
    eta_s: float | None = None


@dataclass
class Batch:
    """Samples that share one run of a station."""

    id: str
    kind: str
    key: tuple[Any, ...]
    opened_at: float
    members: list[int] = field(default_factory=list)  # trial ids, in arrival order; the first is the leader
    samples: list[str] = field(default_factory=list)
    fired_at: float | None = None
    reason: str | None = None  # full, no_company or waited
    arrived: set[int] = field(default_factory=set)  # members whose sample is in the station, at the step
    done: threading.Event = field(default_factory=threading.Event)  # the leader's run of the station ended
    error: str | None = None  # why that run failed, for every member
    run_uid: str | None = None  # the station's run for the batch (the leader's), every member's step row ends with it

    @property
    def fired(self) -> bool:
        return self.fired_at is not None

    @property
    def leader(self) -> int:
        return self.members[0]

    def info(self) -> dict[str, Any]:
        """What each member's step row carries (the shared batch id ties the rows of one firing together)."""
        return {"batch": self.id, "members": list(self.members), "fired_because": self.reason}


class BatchFormer:
    """Forms the batches of one batch station kind and decides when each fires (the rule: module docstring).

    ``clock`` returns lab seconds; ``prospects`` returns the trials in flight or queued that have not yet reached
    this step (the scheduler knows them); it is called under the former's lock, so it must not wait for a lock a
    thread may hold while calling into the former. Thread-safe: trial workers join and wait; any of them may poll."""

    def __init__(
        self,
        kind: str,
        spec: BatchSpec,
        clock: Callable[[], float],
        prospects: Callable[[], Iterable[Prospect]] = lambda: (),
    ):
        self.kind, self.spec, self.clock, self.prospects = kind, spec, clock, prospects
        self.cond = threading.Condition()
        self.open: list[Batch] = []
        self.fired: list[Batch] = []
        self._seq = itertools.count(1)

    # ------------------------------------------------------------------ forming
    def key_of(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        missing = [k for k in self.spec.batch_key if k not in params]
        if missing:
            raise KeyError(f"batch station '{self.kind}': the trial has no value for batch_key {missing}")
        return tuple(params[k] for k in self.spec.batch_key)

    def join(self, trial: int, sample: str, params: Mapping[str, Any]) -> Batch:
        """Put ``trial``'s sample into the oldest open batch with its key and room, or open a new batch."""
        key = self.key_of(params)
        with self.cond:
            for batch in self.open:
                if batch.key == key and len(batch.members) < self.spec.capacity:
                    break
            else:
                batch = Batch(f"{self.kind}-{next(self._seq)}-{uuid.uuid4().hex[:8]}", self.kind, key, self.clock())
                self.open.append(batch)
            batch.members.append(trial)
            batch.samples.append(sample)
            self.cond.notify_all()
            return batch

    def leave(self, trial: int) -> None:
        """Take a cancelled trial out of its open batch (a fired batch keeps its members: its run is under way)."""
        with self.cond:
            for batch in self.open:
                if trial in batch.members:
                    i = batch.members.index(trial)
                    del batch.members[i], batch.samples[i]
                    batch.arrived.discard(trial)
            self.open = [b for b in self.open if b.members]
            self.cond.notify_all()

    # ------------------------------------------------------------------ the rule
    def due(self, batch: Batch, now: float) -> str | None:
        """Why ``batch`` must fire now (full, no_company, waited), or None while it should wait for company."""
        if len(batch.members) >= self.spec.capacity:
            return FULL
        left = self.spec.max_wait_s - (now - batch.opened_at)
        if left <= 0:
            return WAITED
        loaded = {t for b in self.open for t in b.members} | {t for b in self.fired for t in b.members}
        company = any(
            p.key == batch.key and p.trial not in loaded and (p.eta_s is None or p.eta_s <= left)
            for p in self.prospects()
        )
        return None if company else NO_COMPANY

    def poll(self) -> list[Batch]:
        """Fire every open batch that is due; returns the batches fired by this call."""
        with self.cond:
            now = self.clock()
            fired = []
            for batch in list(self.open):
                reason = self.due(batch, now)
                if reason is not None:
                    batch.fired_at, batch.reason = now, reason
                    self.open.remove(batch)
                    self.fired.append(batch)
                    fired.append(batch)
            if fired:
                self.cond.notify_all()
            return fired

    def next_deadline(self) -> float | None:
        """Lab seconds until the first open batch fires by waiting (for a scheduler's wake-up), or None."""
        with self.cond:
            now = self.clock()
            waits = [b.opened_at + self.spec.max_wait_s - now for b in self.open]
            return max(0.0, min(waits)) if waits else None

    def await_fire(
        self, batch: Batch, trial: int, cancelled: Callable[[], bool] = lambda: False, poll_s: float = 0.05
    ) -> None:
        """Block ``trial``'s worker until ``batch`` fires (re-checking the rule every ``poll_s`` real seconds and at
        every join); raise :class:`Cancelled` if the campaign stops first (the trial leaves the batch)."""
        with self.cond:
            while not batch.fired:
                if cancelled():
                    self.leave(trial)
                    raise Cancelled()
                self.poll()
                if not batch.fired:
                    self.cond.wait(poll_s)

    # ------------------------------------------------------------------ the run
    def share(
        self,
        trial: int,
        sample: str,
        params: Mapping[str, Any],
        run: Callable[[dict[str, Any]], None],
        cancelled: Callable[[], bool] = lambda: False,
        poll_s: float = 0.05,
    ) -> Batch:
        """One member's part in a batch step when it joins at the step itself: :meth:`join`, then
        :meth:`run_member`."""
        return self.run_member(self.join(trial, sample, params), trial, run, cancelled, poll_s)

    def run_member(
        self,
        batch: Batch,
        trial: int,
        run: Callable[[dict[str, Any]], None],
        cancelled: Callable[[], bool] = lambda: False,
        poll_s: float = 0.05,
    ) -> Batch:
        """``trial`` is at the batch step with its sample in the station (it may have joined earlier, when it
        reserved the station, so that its sample went into the batch's station). Wait until the batch fires; the
        leader then waits until every member's sample is in, and calls ``run(recipe)`` once for all of them (the
        station's one run) while the others wait for it to end. Raises :class:`BatchFailed` in every member when
        that run failed, :class:`Cancelled` when the campaign stops first."""
        with self.cond:
            batch.arrived.add(trial)
            self.cond.notify_all()
        self.await_fire(batch, trial, cancelled, poll_s)
        if trial == batch.leader:
            with self.cond:
                while not batch.arrived >= set(batch.members):
                    if cancelled():
                        self.finish(batch, "the leader's trial was cancelled before the station ran")
                        raise Cancelled()  # the members already in fail with BatchFailed, none waits forever
                    self.cond.wait(poll_s)
            try:
                run(self.recipe(batch))
            except BaseException as exc:
                self.finish(batch, f"{type(exc).__name__}: {exc}")
                raise
            self.finish(batch)
            return batch
        while not batch.done.wait(poll_s):
            if cancelled():
                raise Cancelled()  # the leader's run is aborted too; the trial is left for `labloop resume`
        if batch.error is not None:
            raise BatchFailed(batch, batch.error)
        return batch

    def recipe(self, batch: Batch) -> dict[str, Any]:
        """What the station is set to for the batch's one run: the shared key fields, the samples, the batch id."""
        return {**dict(zip(self.spec.batch_key, batch.key)), "samples": list(batch.samples), "batch": batch.id}

    def finish(self, batch: Batch, error: str | None = None) -> None:
        """The leader's run of the station ended (``error``: why it failed, for every member)."""
        batch.error = error
        batch.done.set()

    # ------------------------------------------------------------------ measured
    def stats(self) -> dict[str, Any]:
        """The rule on this campaign: batches fired, mean fill (samples / capacity), counts by reason, waits."""
        with self.cond:
            fired = list(self.fired)
        waits = [b.fired_at - b.opened_at for b in fired if b.fired_at is not None]
        return {
            "batches": len(fired),
            "samples": sum(len(b.members) for b in fired),
            "mean_fill": (sum(len(b.members) for b in fired) / (len(fired) * self.spec.capacity)) if fired else 0.0,
            "by_reason": {r: sum(1 for b in fired if b.reason == r) for r in (FULL, NO_COMPANY, WAITED)},
            "max_wait_s": max(waits, default=0.0),
        }
