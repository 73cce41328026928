"""The control loop: on any change (or every ``REFRESH_S``), apply the stopping rules, look for a systematic failure,
and propose; when a rule fires, let in-flight trials finish, start nothing, and end the campaign in the store.

It only decides and dispatches: it never waits on the optimizer (:class:`~labloop.run.proposals.Proposer` hands
asks to their own thread) or a device (workers do the physical work). It alone changes ``stopping``. Between passes
it waits on the context's ``wake`` event, which every part sets when it changed something the loop should look at
(a worker finished, a proposal came, a request was answered), with a timeout at the next time-based look: the
periodic refresh and the moment the lease would lapse on this runner's own clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime

from labloop.states import UNFINISHED, IllegalTransition, TrialState
from labloop.store.schema import Trial, utcnow

from .context import RunContext
from .engines import EnginePool
from .failures import SystematicFailure
from .proposals import Proposer
from .stopping import StopDecision
from .workers import WorkerPool

S = TrialState
StopRules = Callable[[Sequence[Trial], datetime], "StopDecision | None"]

#: How often the loop re-reads the trials when nothing woke it (time-based stopping rules, trials changed elsewhere).
REFRESH_S = 0.5
#: How long the end of a campaign waits for its workers before it reports the ones that would not end.
JOIN_S = 5.0


class ControlLoop:
    """Decides and dispatches until a stopping rule fires (or the lease is lost); returns the decision."""

    def __init__(
        self,
        ctx: RunContext,
        proposer: Proposer,
        failures: SystematicFailure,
        workers: WorkerPool,
        engines: EnginePool,
        stop_rules: StopRules,
        stop_serving: Callable[[], None] = lambda: None,
    ):
        self.ctx = ctx
        self.proposer = proposer
        self.failures = failures
        self.workers = workers
        self.engines = engines
        self.stop_rules = stop_rules
        self.stop_serving = stop_serving  # no operator request is answered after this returns

    def run(self) -> StopDecision:
        c = self.ctx
        asker = self.proposer.asker
        stopping: StopDecision | None = None
        next_refresh = 0.0
        while True:
            if c.lease_lost():
                return self.end_lease_lost()
            now = time.monotonic()
            if c.wake.is_set() or now >= next_refresh:
                c.wake.clear()  # cleared before reading: a change after this read wakes the next pass
                next_refresh = now + REFRESH_S
                trials = c.store.trials(c.campaign.id)
                if stopping is None or (c.estopped.is_set() and stopping.rule != "estop"):
                    stopping = self.decision(trials)  # an emergency stop overrides a gentler ending
                if stopping is not None:
                    if not c.stopping.is_set():
                        self.begin_stopping()
                    if not self.workers.alive():
                        return self.finish(stopping)
                elif not c.paused.is_set():
                    self.failures.check(trials)
                    if not c.paused.is_set():
                        self.proposer.propose(trials)
            if asker.busy and self.proposer.take_answer():
                continue
            timeout = next_refresh - time.monotonic()
            if c.lease is not None:
                timeout = min(timeout, c.lease.seconds_left())
            c.wake.wait(max(0.0, timeout))

    def decision(self, trials: list[Trial]) -> StopDecision | None:
        c = self.ctx
        if c.estopped.is_set():
            return StopDecision(
                "estop", "emergency stop: every device was halted; interrupted trials continue after `labloop resume`"
            )
        decision = self.stop_rules(trials, c.campaign.created_at)
        if decision is None and c.stop_requested:
            decision = StopDecision("operator", "stopped by operator (in-flight trials were finished)")
        return decision

    def begin_stopping(self) -> None:
        """A stopping rule fired: in-flight trials finish; trials that hold nothing yet, or wait for a station that
        is gone, are cancelled (nothing physical happened to them); a proposal still being computed is dropped."""
        c = self.ctx
        c.stopping.set()
        c.paused.clear()
        self.proposer.drop_waiting()  # never launched: settle_leftovers cancels them with the campaign's reason
        with c.lock:
            unplaced = list(c.unplaced)
        for trial_id in unplaced:
            c.res.cancel_trial(trial_id)
        if c.need_operator:
            c.cancel_waits()

    def finish(self, stopping: StopDecision) -> StopDecision:
        c = self.ctx
        self.stop_serving()  # what is answered from now on would not be carried out
        if c.estopped.is_set() and stopping.rule != "estop":  # came in while the last trials finished
            stopping = self.decision([]) or stopping  # the estop's decision (never None while estopped)
        stragglers = self.workers.join(JOIN_S)
        if stragglers:
            c.alert(
                "campaign.stragglers", f"worker threads did not end: {', '.join(stragglers)}", {"threads": stragglers}
            )
        if stopping.rule != "estop":
            self.settle_leftovers(stopping)
        state = {"operator": "stopped", "estop": "estopped"}.get(stopping.rule, "finished")
        if c.lease_lost():  # taken over while the last trials finished: the new holder ends it
            return self.end_lease_lost()
        c.store.finish_campaign(c.campaign.id, state, stopping.reason)
        if c.lease is not None:
            c.lease.release()
        c.observer("stopped", {"decision": stopping})
        return stopping

    def settle_leftovers(self, stopping: StopDecision) -> None:
        """When a campaign ends, no trial stays unfinished: one that did nothing is cancelled, one whose sample was
        processed but not finished is failed with the reason."""
        store = self.ctx.store
        for t in store.trials(self.ctx.campaign.id):
            if t.state not in UNFINISHED:
                continue
            try:
                if not store.steps(t.id):
                    store.transition(
                        t.id,
                        t.state,
                        S.CANCELLED,
                        finished_at=utcnow(),
                        failure_reason=f"the campaign ended first ({stopping.reason})",
                    )
                else:
                    reason = f"the campaign ended before the trial finished ({stopping.reason})"
                    if t.failure_reason:
                        reason += f"; {t.failure_reason}"
                    store.transition(t.id, t.state, S.FAILED, finished_at=utcnow(), failure_reason=reason)
            except IllegalTransition:
                continue  # it moved on meanwhile (a last worker finished it)

    def on_lease_lost(self) -> None:
        """From any thread: stop every step this runner has running and unblock its waiting workers (they find the
        lease lost and end without writing), and wake the control loop."""
        self.ctx.cancel_waits()
        self.proposer.asker.discard()
        self.engines.interrupt_all()
        self.ctx.wake.set()

    def end_lease_lost(self) -> StopDecision:
        """End without touching the store: the campaign belongs to the lease's new holder, which resumes it."""
        c = self.ctx
        assert c.lease is not None
        self.on_lease_lost()
        stragglers = self.workers.join(JOIN_S)
        reason = f"lease lost: {c.lease.reason}; this runner stopped acting on the campaign"
        if stragglers:
            reason += f" (worker threads still ending: {', '.join(stragglers)})"
        decision = StopDecision("lease_lost", reason)
        c.observer("stopped", {"decision": decision})
        return decision
