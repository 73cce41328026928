"""The trial walk's side of batch stations (``lab.batching`` with ``capacity`` > 1): joining a batch when a trial
reserves the station, the one run of the station per batch, each member's step row, and the prospects the firing
rule looks at (:mod:`labloop.run.batching` states the rule).

Why a part of its own: :class:`~labloop.run.walk.TrialWalker` walks one trial; a batch step is the one place where
trials wait for each other, and keeping that here leaves the walk of a one-sample station exactly as it was (a
station of capacity 1 has no former: :meth:`BatchSteps.former` is None and the walker never calls in).

What the store says about a batch, so a crash mid-firing is resumed like any other cut-short synthesis:

* the leader's step row is its own run of the station (``ex.run_step``), started and ended as any step;
* a follower's step row (same index, label and kind, on the same device) is committed *before* the follower waits
  for the run, so a crash while the station fires finds every member's row running, and resume applies the step's
  ``resume_policy`` to each (synthesize: ``fail``, every member fails: one firing, one fate);
* every member's row ends with the leader's run uid, and that run's start document carries ``batch`` (id, member
  trial ids, samples, why it fired): no new column, so no migration.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from labloop.spec import StepSpec

from .batching import Batch, BatchFailed, BatchFormer, Prospect
from .context import RunContext
from .executor import StepFailed, TrialContext, TrialExecutor

#: ``attempts(ex, tc, index, device, dest, batch)``: the walker's retried run of a step, returning the run uid
Attempts = Callable[[TrialExecutor, TrialContext, int, str, str | None, dict[str, Any] | None], str | None]


class BatchSteps:
    """The batch formers of a campaign's batch stations, the trials that may still reach them, and the batches the
    walking trials joined."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.formers: dict[str, BatchFormer] = {}
        self.step_of: dict[str, int] = {}  # batch kind -> index of the workflow step that runs it
        self.lock = threading.Lock()  # guards _at and _joined; never held while calling into a former
        self._at: dict[int, tuple[int, dict[str, Any]]] = {}  # walking trial -> (step index it is at, params)
        self._joined: dict[int, Batch] = {}
        #: proposals waiting unlaunched for a first station (async lookahead), set by the scheduler: prospects too
        self.queued: Callable[[], Iterable[Any]] = lambda: ()
        #: keys an ask in progress targets or chose (labloop/run/batch_share.py), set by the scheduler: prospects too
        self.promised: Callable[[str], Iterable[tuple[Any, ...]]] = lambda kind: ()
        # read loosely: a walker built on a partial context (a unit test's) has no batch station, as before
        batching = getattr(getattr(ctx.spec, "lab", None), "batching", None) or {}
        for kind, spec in batching.items():
            if spec.capacity <= 1:
                continue  # one sample a run: the walk of a plain station
            devices = ctx.kinds.get(kind, [kind])
            scale = ctx.lab.time_scale(devices[0] if devices else kind, ctx.time_scale)
            self.formers[kind] = BatchFormer(kind, spec, _lab_clock(scale), self._prospects_for(kind))
            self.step_of[kind] = next(
                i for i, s in enumerate(ctx.workflow) if s.kind != "transfer" and s.device == kind
            )

    def former(self, kind: str) -> BatchFormer | None:
        return self.formers.get(kind)

    # ------------------------------------------------------------------ prospects
    def track(self, trial: int, index: int, params: dict[str, Any]) -> None:
        """``trial`` is walking and at workflow step ``index`` (called as it starts each step)."""
        if self.formers:
            with self.lock:
                self._at[trial] = (index, params)

    def _prospects_for(self, kind: str) -> Callable[[], list[Prospect]]:
        def prospects() -> list[Prospect]:
            """Walking trials before the batch step, proposals queued unlaunched and proposals being asked for
            with a key (share_proposals), with their key (arrival time unknown: the rule counts them as
            could-arrive, bounded by max_wait_s)."""
            former, at = self.formers[kind], self.step_of[kind]
            with self.lock:
                walking = list(self._at.items())
            seen = {trial for trial, _ in walking}
            waiting = [(t.id, (0, dict(t.params))) for t in self.queued() if t.id not in seen]
            out = []
            for trial, (index, params) in walking + waiting:
                if index < at and all(k in params for k in former.spec.batch_key):
                    out.append(Prospect(trial, former.key_of(params)))
            # a proposal not yet made has no trial: negative ids, never a member of a batch
            out += [Prospect(-1 - i, key) for i, key in enumerate(self.promised(kind))]
            return out

        return prospects

    # ------------------------------------------------------------------ joining
    def join(self, kind: str, trial: int, sample: str, params: dict[str, Any]) -> str | None:
        """A trial about to reserve ``kind``: join a batch (None for a plain station); returns the batch id the
        reservation must carry, so the sample goes into the batch's station."""
        former = self.formers.get(kind)
        if former is None:
            return None
        batch = former.join(trial, sample, params)
        with self.lock:
            self._joined[trial] = batch
        return batch.id

    def forget(self, trial: int) -> None:
        """The trial's walk ended (or it failed before the station ran): it stops being a prospect, and a batch it
        joined but never reached does not wait for it. A fired batch whose leader is gone before its run fails for
        every member (nobody else is set to run the station)."""
        with self.lock:
            self._at.pop(trial, None)
            batch = self._joined.pop(trial, None)
        if batch is None:
            return
        former = self.formers[batch.kind]
        with former.cond:
            if not batch.fired:
                former.leave(trial)
                return
            if batch.done.is_set() or trial in batch.arrived or trial not in batch.members:
                return
            if trial == batch.leader:
                former.finish(batch, "the batch's leader ended before the station ran")
            else:
                i = batch.members.index(trial)
                del batch.members[i], batch.samples[i]
            former.cond.notify_all()

    # ------------------------------------------------------------------ the step
    def _alone(self, kind: str, tc: TrialContext) -> Batch:
        """A trial resumed with its sample already in the station (the batch it had joined died with the process):
        it fires alone, never joined to an open batch, whose samples may sit in another station. Should another
        resumed sample share its station, the furnace refuses the run (its recipe does not name every sample
        inside) and the step fails: no sample is fired that was not asked for."""
        former = self.formers[kind]
        now = former.clock()
        batch = Batch(f"{kind}-resumed-{tc.trial_id}", kind, former.key_of(tc.params), now, fired_at=now)
        batch.members.append(tc.trial_id)
        batch.samples.append(tc.sample_id)
        batch.reason = "resumed"
        with self.lock:
            self._joined[tc.trial_id] = batch
        return batch

    def run_step(self, ex: TrialExecutor, tc: TrialContext, index: int, device: str, attempts: Attempts) -> str | None:
        """Workflow step ``index`` (on a batch station, the trial's sample in ``device``) for one member: the
        leader runs the station once for the batch; a follower records its own step row ending with that run.
        Returns the run's uid."""
        c = self.ctx
        step: StepSpec = c.workflow[index]
        with self.lock:
            batch = self._joined.get(tc.trial_id)
        if batch is None:
            batch = self._alone(step.device or "", tc)
        former = self.formers[batch.kind]
        own: int | None = None
        if tc.trial_id != batch.leader:
            c.announce_step(tc.number, step.label, device, None, 1)
            ex.guard()
            own = c.store.start_step(tc.trial_id, index, step.label, step.kind, 1, device)

        def run(recipe: dict[str, Any]) -> None:
            if own is not None:  # became the leader after it started waiting: its own run is the record
                c.store.finish_step(own, "interrupted", None, "became the batch's leader; see its next row")
            info = {
                "batch": recipe["batch"],
                "samples": recipe["samples"],
                "trials": list(batch.members),
                "fired_because": batch.reason,
            }
            c.res.mark_busy(device, True)
            try:
                batch.run_uid = attempts(ex, tc, index, device, None, info)
            finally:
                c.res.mark_busy(device, False)

        try:
            former.run_member(batch, tc.trial_id, run, c.cancelled)
        except BatchFailed as exc:
            if own is not None:
                c.store.finish_step(own, "failed", batch.run_uid, exc.reason)
            raise StepFailed(step, index, f"the batch's run failed: {exc.reason}", device) from exc
        finally:
            with self.lock:
                self._joined.pop(tc.trial_id, None)
        if own is not None and tc.trial_id != batch.leader:
            c.store.finish_step(own, "done", batch.run_uid)
        return batch.run_uid


def _lab_clock(scale: float) -> Callable[[], float]:
    """Lab seconds: real seconds times the lab's time scale (a simulated lab runs ``scale`` times faster)."""
    return lambda: time.monotonic() * scale
