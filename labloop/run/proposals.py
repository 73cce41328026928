"""Proposals: when to ask the strategy, how many points, and what to do with its answer. Used by the control thread
alone (so its bookkeeping needs no lock); the ask itself runs on :class:`~labloop.run.workers.AskService`'s thread.

Modes: ``async`` (default) starts a trial whenever a first-step station is free; ``batch`` proposes
``strategy.batch_size`` points, runs them all, then proposes again; ``sequential`` runs one trial at a time.
In async mode ``scheduling.lookahead`` proposals are made ahead and wait, unlaunched, for a free station; one that
is still waiting when results arrive that its ask did not see is re-asked in place (the trial keeps its number; the
replaced proposal is kept in ``info['replaced']`` and the audit log), so no trial starts on stale data when a fresh
ask was possible (issue 25). Every ask is given every unfinished trial as pending.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from labloop.states import IN_FLIGHT, LEARNED_FROM, TrialState
from labloop.store.repository import to_jsonable
from labloop.store.schema import Trial
from labloop.strategy.base import Observation, observations_from, pending_points

from .context import RunContext
from .failures import failed_on_the_lab
from .resources import NoStationLeft
from .stopping import budget_left
from .workers import AskService

S = TrialState


class Proposer:
    """Hands the strategy snapshots and launches (or queues) what it proposes; never waits for an answer."""

    def __init__(
        self,
        ctx: RunContext,
        asker: AskService,
        launch: Callable[[Trial], None],
        call_operator: Callable[[NoStationLeft], None],
        prior: Sequence[Observation] = (),
    ):
        self.ctx = ctx
        self.asker = asker
        self.launch = launch
        self.call_operator = call_operator
        self.prior = list(prior)
        self._labels = {step.label for step in ctx.spec.workflow}  # a failure reason naming a step: a lab fault
        # async lookahead: proposals waiting for a free first-step station, not launched yet, with the number of
        # results their ask saw; re-asked in place when newer results arrive (_find_stale, _replace)
        self.queued: dict[int, tuple[Trial, int]] = {}
        self._asked_with = 0  # results (learned-from trials) in the snapshot of the ask in progress
        self.stale: dict[int, tuple[Trial, int]] = {}  # queued proposals made on stale data, awaiting their re-ask
        self._reasking: list[int] = []  # the stale trials the ask in progress replaces, in order
        #: called once an answer was taken or dropped (its trials stored): batch_share's promises end there
        self.answered: Callable[[], None] = lambda: None

    def drop_waiting(self) -> None:
        """The campaign is ending: forget unlaunched proposals (the end cancels them) and the ask in progress."""
        self.asker.discard()
        self.queued.clear()
        self.stale.clear()
        self.answered()

    def slots(self, trials: list[Trial]) -> int:
        """How many new proposals the lab has room for now."""
        c = self.ctx
        in_flight = [t for t in trials if t.state in IN_FLIGHT]
        mode = c.spec.scheduling.mode
        if mode == "sequential":
            return 0 if in_flight else 1
        if mode == "batch":
            return 0 if in_flight else c.spec.strategy.batch_size
        if c.first_kind is None:
            return 0 if in_flight else 1
        free = len(c.res.free(c.first_kind)) + c.spec.scheduling.lookahead
        with c.lock:
            awaiting = sum(1 for t in trials if t.state == S.PROPOSED and t.id not in c.launched)
            unplaced = len(c.unplaced)
        room = max(0, free - unplaced - awaiting)
        cap = c.spec.scheduling.max_in_flight
        return room if cap is None else min(room, max(0, cap - len(in_flight)))

    def propose(self, trials: list[Trial]) -> None:
        """Hand the strategy a snapshot when slots are free; never wait for its answer here."""
        c = self.ctx
        if self.asker.busy:
            return
        # queued proposals wait for a first-step station too, even when they used up the budget: without this a
        # campaign whose last trials are queued behind a quarantined station would wait forever, still "running"
        waiting = budget_left(c.spec, trials) or self.queued or self.stale
        if c.first_kind and waiting and not c.res.in_service(c.first_kind):
            self.call_operator(NoStationLeft(c.first_kind, c.res.out_of_service(c.first_kind)))
            return
        # results known now (a lab fault is one too: it ends a trial in flight, though the strategy is not told it);
        # what a queued proposal's ask saw is counted the same way
        known = sum(1 for t in trials if t.state in LEARNED_FROM)
        stale: list[int] = []
        if self.queues():
            stale = self._find_stale(known)
            self.launch_queued()
        # stale proposals are re-asked in place: their slots count as free here (they are awaiting in slots)
        n = min(self.slots(trials), budget_left(c.spec, trials)) + len(stale)
        if n <= 0:
            return
        observations = observations_from(
            trials, lambda t: t.state == S.FAILED and failed_on_the_lab(t.failure_reason, self._labels)
        )
        self._asked_with = known
        self._reasking = stale
        self.asker.submit(n, self.prior + observations, pending_points(t for t in trials if t.id not in stale))

    def queues(self) -> bool:
        """Async lookahead without approval: proposals beyond the free stations wait unlaunched in ``queued``."""
        sched = self.ctx.spec.scheduling
        return sched.mode == "async" and self.ctx.first_kind is not None and not sched.approval

    def _find_stale(self, known: int) -> list[int]:
        """Queued proposals whose ask saw fewer results than are known now (made on stale data) leave the queue to
        be re-asked in place (:meth:`_replace`); returns every trial waiting for its re-ask. Why: with lookahead a
        proposal made one trial ahead could wait a whole deposition for its station while results it never saw
        came in (issue 25)."""
        for trial_id, (_trial, seen) in list(self.queued.items()):
            if seen < known:
                self.stale[trial_id] = self.queued.pop(trial_id)
        return list(self.stale)

    def _replace(self, trial_id: int, proposal: Any, seconds: float) -> Trial:
        """Give a stale queued trial (still proposed, never launched) the re-asked proposal. Nothing is lost: the
        replaced proposal is kept in the trial's ``info['replaced']`` and in the audit log, with why."""
        c = self.ctx
        trial, seen = self.stale.pop(trial_id)
        old = {
            "params": dict(trial.params),
            "source": trial.source,
            "results_seen": seen,
            "reason": f"re-asked: {self._asked_with} results known before a station was free, {seen} seen",
        }
        info = {**proposal.info, "ask_seconds": seconds, "replaced": [*(trial.info or {}).get("replaced", []), old]}
        c.store.update_trial(
            trial_id, params=to_jsonable(proposal.params), source=proposal.source, info=to_jsonable(info)
        )
        c.store.audit(
            c.campaign.id,
            "trial.reasked",
            {"trial": trial.number, **old, "new_params": to_jsonable(proposal.params)},
            user="labloop",
        )
        return c.store.trial(trial_id)

    def launch_queued(self) -> None:
        """Launch queued proposals, oldest first, onto the first-step stations that are free and not promised to a
        launched trial."""
        c = self.ctx
        if not self.queued or c.first_kind is None:
            return
        with c.lock:
            unplaced = len(c.unplaced)
        room = len(c.res.free(c.first_kind)) - unplaced
        for trial_id in list(self.queued)[: max(0, room)]:
            trial, _ = self.queued.pop(trial_id)
            self.launch(trial)

    def take_answer(self) -> bool:
        """Take the strategy's answer if it is there: store the proposals and launch them. True if one came."""
        taken = self._take_answer()
        if taken:
            self.answered()
        return taken

    def _take_answer(self) -> bool:
        c = self.ctx
        result = self.asker.poll()
        if result is None:
            return False
        if c.stopping.is_set() or c.paused.is_set() or c.estopped.is_set():
            self._reasking = []  # stale trials stay in stale: the next ask re-asks them (or the end cancels them)
            return True  # decided while the lab changed its mind: drop it (the strategy keeps no state)
        if result.error is not None:
            exc = result.error
            self._reasking = []
            c.pause_for_operator(
                f"the optimizer failed to propose: {type(exc).__name__}: {exc}; fix the "
                f"strategy settings, then run `labloop resume`"
            )
            return True
        approval = c.spec.scheduling.approval
        proposals = list(result.proposals or [])
        reasked = [i for i in self._reasking if i in self.stale][: len(proposals)]
        for trial_id, proposal in zip(reasked, proposals):
            trial = self._replace(trial_id, proposal, result.seconds)
            self.queued[trial.id] = (trial, self._asked_with)
        self._reasking = []
        trials = c.store.trials(c.campaign.id)
        n = min(result.n - len(reasked), budget_left(c.spec, trials))
        for proposal in proposals[len(reasked) :][: max(0, n)]:
            info = {**proposal.info, "ask_seconds": result.seconds}
            trial = c.store.add_trial(c.campaign.id, proposal.params, proposal.source, info, c.campaign.uid[:8])
            c.observer("proposed", {"trial": trial, "approval": approval, "of": c.spec.stopping.max_trials})
            if self.queues():
                self.queued[trial.id] = (trial, self._asked_with)
            elif not approval:
                self.launch(trial)
        self.launch_queued()
        c.wake.set()
        return True
