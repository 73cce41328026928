"""The scheduler: keeps every station busy, one worker thread (with its own RunEngine) per trial in flight.

Who does what, and which state each thread may touch:

* the **control thread** (the one in :meth:`Scheduler.run`) only decides and dispatches: it applies the stopping
  rules, hands the strategy a snapshot to think about and launches the trials it proposes. It alone changes
  ``stopping``, and it never waits on the optimizer or a device;
* the **request thread** answers operator requests (an emergency stop first), within one poll of ~20 ms of their
  commit whatever else is busy. Why not the control thread: its pass re-reads every trial, and at a high
  ``time_scale`` the RunEngines' callbacks make each of the many GIL handoffs of that read slow, so a request
  waited for the end of a pass (tens to hundreds of ms). It changes ``paused`` (as workers calling for an operator
  do), ``_stop_requested``, and launches the trials an operator approves (``_launched`` is guarded by ``_lock``);
  whatever it changes, it wakes the control thread. A launch racing a pause is harmless: every worker checks
  ``paused`` before each physical action;
* the **strategy thread** (:class:`~labloop.run.workers.AskService`) runs ``ask`` on copies of the observations;
* **worker threads** (:class:`~labloop.run.workers.WorkerPool`, one per trial in flight) do the physical work:
  each walks one trial through its workflow, reserving stations and the robot from
  :class:`~labloop.run.resources.LabResources` (which has its own lock), retrying failed steps with backoff, and
  committing every step before the next physical action. ``_unplaced`` and ``_active`` are shared between the
  control thread and the workers and are guarded by ``_lock``;
* a **heartbeat thread** writes the runner's sign of life, so a control loop is never mistaken for a dead one,
  and renews the campaign's lease (:mod:`labloop.run.lease`). A runner that loses its lease (another runner took
  the campaign over, or it could not renew in time) interrupts its running steps, starts no physical action and
  writes nothing more about the campaign (for the store it is as if it had been killed), and ends with rule
  ``lease_lost``.

The scheduler receives its collaborators (strategy, store, lab, stopping rules, evaluation, observer) explicitly;
it knows nothing of the campaign runner that built it.

Modes: ``async`` (default) starts a trial whenever a first-step station is free; ``batch`` proposes
``strategy.batch_size`` points, runs them all, then proposes again; ``sequential`` runs one trial at a time.
In async mode ``scheduling.lookahead`` proposals are made ahead and wait, unlaunched, for a free station; one that
is still waiting when results arrive that its ask did not see is re-asked in place (the trial keeps its number; the
replaced proposal is kept in ``info['replaced']`` and the audit log), so no trial starts on stale data when a fresh
ask was possible (issue 25). Every ask is given every unfinished trial as pending.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bluesky import RunEngine
from bluesky.suspenders import SuspendCeil, SuspendFloor, SuspendWhenOutsideBand

from labloop.errors import LabloopError, SpecError
from labloop.logs import Swallowed
from labloop.spec import CampaignSpec
from labloop.states import IN_FLIGHT, LEARNED_FROM, UNFINISHED, IllegalTransition, TrialState
from labloop.store import Store
from labloop.store.leases import LeaseLost
from labloop.store.repository import to_jsonable
from labloop.store.schema import Campaign, OperatorRequest, Trial, utcnow
from labloop.strategy.base import Observation, Strategy, observations_from, pending_points
from . import calibration
from .executor import StepFailed, TrialContext, TrialExecutor
from .lab import Lab, station_kinds
from .lease import CampaignLease
from .recovery import Resumption
from .resources import Cancelled, LabResources, NoStationLeft
from .stopping import StopDecision, budget_left, check
from .workers import AskService, WorkerPool

Observer = Callable[[str, dict[str, Any]], None]
StopRules = Callable[[Sequence[Trial], datetime], "StopDecision | None"]
S = TrialState

#: How often the control thread looks for operator requests (an indexed query of a few rows).
REQUEST_POLL_S = 0.02
#: How often it re-reads the trials when nothing woke it (time-based stopping rules, trials changed elsewhere).
REFRESH_S = 0.5
#: The longest a thread may hold the GIL while another waits for it (Python's default is 5 ms). The optimizer
#: computes in Python on its own thread; every handoff on the emergency-stop path would wait up to this long.
SWITCH_INTERVAL_S = 0.0005


@dataclass
class _Walk:
    """One trial as its worker walks it: the trial, its state as last committed, where its sample starts."""

    trial: Trial
    state: TrialState
    location: str


def failure_cause(reason: str | None) -> str:
    """A failure reason with its particulars (numbers, ids, quoted values) masked, so that 'the same cause'
    survives different samples, times and attempts."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason or "")
    return re.sub(r"\d+(\.\d+)?", "#", text).strip()


class Scheduler:
    def __init__(self, *, spec: CampaignSpec, lab: Lab, store: Store, campaign: Campaign, strategy: Strategy,
                 evaluate: Callable[[Trial], Trial], prior: Sequence[Observation] = (),
                 observer: Observer | None = None, stop_rules: StopRules | None = None,
                 resumptions: Sequence[Resumption] = (),
                 documents: Callable[[str, dict[str, Any]], None] | None = None,
                 lease: CampaignLease | None = None):
        self.spec, self.lab, self.store, self.campaign = spec, lab, store, campaign
        self.lease = lease  # None: nobody else could act on this campaign (no lease kept)
        self.strategy = strategy
        self.evaluate = evaluate  # measured trial -> done or failed, committed (objective plugins)
        self.prior = list(prior)
        self.observer: Observer = observer or (lambda kind, data: None)
        self.documents = documents  # every RunEngine's documents, as they are emitted (the daemon's live stream)
        self.stop_rules: StopRules = stop_rules or (lambda trials, started: check(spec, trials, started))
        self.resumptions = list(resumptions)
        self.time_scale = spec.lab.time_scale if spec.lab else 1.0
        self.kinds = station_kinds(spec, lab)
        self.res = LabResources(self.kinds, spec.scheduling.quarantine_after, self._on_quarantine)
        self.workflow = spec.workflow
        self.first_kind = self._first_kind()
        self.workers = WorkerPool()
        self.wake = threading.Event()  # any change the control loop should look at: a worker, a proposal, a request
        self.asker = AskService(strategy.ask, on_done=self.wake.set)
        self._executors: list[TrialExecutor] = []  # idle executors, reused (guarded by _lock)
        self._lock = threading.Lock()
        self._unplaced: set[int] = set()  # launched trials not yet holding their first station (guarded by _lock)
        self._active: set[TrialExecutor] = set()  # executors running a trial now (guarded by _lock)
        self._launched: set[int] = set()  # launched trials (guarded by _lock: approvals launch from the request thread)
        self._first_move: dict[int, threading.Event] = {}  # resumed trials whose sample a robot holds (set: put down)
        # async lookahead: proposals waiting for a free first-step station, not launched yet, with the number of
        # results their ask saw (control thread only); re-asked in place when newer results arrive (_find_stale, _replace)
        self._queued: dict[int, tuple[Trial, int]] = {}
        self._asked_with = 0  # results (learned-from trials) in the snapshot of the ask in progress
        self._stale: dict[int, tuple[Trial, int]] = {}  # queued proposals made on stale data, awaiting their re-ask
        self._reasking: list[int] = []  # the stale trials the ask in progress replaces, in order
        self.estopped = threading.Event()
        self.stopping = threading.Event()  # a stopping rule fired: finish in-flight trials, start nothing
        self._beat = threading.Event()  # set when the campaign ends: the heartbeat thread stops
        self._beat_failed = Swallowed(logging.getLogger(__name__), f"campaign {campaign.id}'s heartbeat")
        self.paused = threading.Event()
        self.need_operator: str | None = None
        self._failure_streak_seen: int | None = None  # the last trial of a same-cause streak we paused for
        self._stop_requested = False  # an operator's stop was accepted (set by the request thread)
        self._serving = threading.Lock()  # held while requests are answered: one server at a time
        self._announce: list[tuple[str, dict[str, Any]]] = []  # observer events of the request being answered
        self._requests_end = threading.Event()  # set: the request thread stops (the campaign is ending)

    # ------------------------------------------------------------------ setup
    def _first_kind(self) -> str | None:
        for step in self.workflow:
            if step.kind == "transfer" and step.to in self.kinds:
                return step.to
            if step.kind != "transfer":
                return step.device
        return None

    def _on_quarantine(self, device: str, reason: str) -> None:
        self.store.audit(self.campaign.id, "station.quarantine", {"device": device, "reason": reason}, user="labloop")
        self.observer("alert", {"message": f"station {device} taken out of service: {reason}", "device": device,
                                "action": "station.quarantine"})

    def _alert(self, action: str, message: str, detail: dict[str, Any]) -> None:
        """A safety-relevant event: audited, shown to the operator, never swallowed."""
        try:
            self.store.audit(self.campaign.id, action, {**detail, "message": message}, user="labloop")
        finally:
            self.observer("alert", {"message": message})

    def _executor(self) -> TrialExecutor:
        with self._lock:
            if self._executors:
                return self._executors.pop()
        ex = TrialExecutor(self.spec, self.lab, self.store, RunEngine(context_managers=[]),
                           on_alert=self._alert)
        if self.documents is not None:
            ex.RE.subscribe(self.documents)
        if self.lease is not None:
            ex.guard = self.lease.check  # before every physical action, and before recording a failed one
        for s in self.spec.lab.suspenders if self.spec.lab else []:
            ex.RE.install_suspender(self._suspender(s))
        return ex

    def _suspender(self, s: Any) -> Any:
        dev, _, comp = s.signal.partition(".")
        signal = getattr(self.lab[dev], comp, None)
        if signal is None:
            raise SpecError(f"lab.suspenders: device '{dev}' has no signal '{comp}'", "name a component of the device")
        sleep = s.resume_after / self.time_scale
        if s.low is not None and s.high is not None:
            return SuspendWhenOutsideBand(signal, s.low, s.high, sleep=sleep)
        if s.low is not None:
            return SuspendFloor(signal, s.low, sleep=sleep)
        return SuspendCeil(signal, s.high, sleep=sleep)

    # ------------------------------------------------------------------ main loop
    def run(self) -> StopDecision:
        cid = self.campaign.id
        for r in self.resumptions:  # samples sitting in stations keep them: claim before anyone else can
            if r.held is not None:
                self.res.claim(r.held, r.trial.id)
        # a stop an earlier runner accepted before it died still holds (the campaign's standing control)
        self._stop_requested = self.store.campaign(cid).control == "stop"
        self.store.heartbeat(cid)  # who runs the campaign is known before anything moves
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        heartbeat.start()
        # Process-wide, and safe to change here: it only decides how soon a thread that waits for the GIL gets it
        # (no thread's results depend on it); set before any worker starts, restored after they are joined.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, SWITCH_INTERVAL_S))
        requests = threading.Thread(target=self._request_loop, name="requests", daemon=True)
        try:
            self._serve_requests()  # requests queued while no process ran (a stop is honoured before anything moves)
            requests.start()
            self._resume_gripper_moves()
            for r in self.resumptions:
                if not r.in_gripper:
                    self._launch(r.trial, r)
            return self._loop()
        finally:
            self._stop_serving()
            if requests.is_alive():
                requests.join(5.0)
            self.asker.shutdown()
            self._beat.set()
            sys.setswitchinterval(switch)

    def _resume_gripper_moves(self) -> None:
        """A sample a robot still holds (its move was cut short) is put down before anything else uses the robot:
        every other move would be refused while the gripper is full. Operator requests are served meanwhile (by
        the request thread)."""
        first = [r for r in self.resumptions if r.in_gripper]
        for r in first:
            self._first_move[r.trial.id] = threading.Event()
            self._launch(r.trial, r)
        while (not all(self._first_move[r.trial.id].is_set() for r in first)
               and not self.estopped.is_set() and not self.stopping.is_set()):
            time.sleep(REQUEST_POLL_S)

    def _release_robot(self, trial: Trial) -> None:
        self.res.release_robot(trial.id)
        moved = self._first_move.get(trial.id)
        if moved is not None:
            moved.set()

    def _loop(self) -> StopDecision:
        """On any change (or every REFRESH_S), apply the stopping rules and propose."""
        cid = self.campaign.id
        stopping: StopDecision | None = None
        next_refresh = 0.0
        while True:
            if self._lease_lost():
                return self._end_lease_lost()
            now = time.monotonic()
            if self.wake.is_set() or now >= next_refresh:
                self.wake.clear()  # cleared before reading: a change after this read wakes the next pass
                next_refresh = now + REFRESH_S
                trials = self.store.trials(cid)
                if stopping is None or (self.estopped.is_set() and stopping.rule != "estop"):
                    stopping = self._stop_decision(trials)  # an emergency stop overrides a gentler ending
                if stopping is not None:
                    if not self.stopping.is_set():
                        self._begin_stopping()
                    if not self.workers.alive():
                        return self._finish(stopping)
                elif not self.paused.is_set():
                    self._check_systematic_failure(trials)
                    if not self.paused.is_set():
                        self._propose_and_launch(trials)
            if self.asker.busy and self._ask_ready():
                continue
            self.wake.wait(REQUEST_POLL_S)

    def _stop_decision(self, trials: list[Trial]) -> StopDecision | None:
        if self.estopped.is_set():
            return StopDecision("estop", "emergency stop: every device was halted; "
                                         "interrupted trials continue after `labloop resume`")
        decision = self.stop_rules(trials, self.campaign.created_at)
        if decision is None and self._stop_requested:
            decision = StopDecision("operator", "stopped by operator (in-flight trials were finished)")
        return decision

    def _finish(self, stopping: StopDecision) -> StopDecision:
        self._stop_serving()  # what is answered from now on would not be carried out
        if self.estopped.is_set() and stopping.rule != "estop":  # came in while the last trials finished
            stopping = self._stop_decision([])
        stragglers = self.workers.join(5.0)
        if stragglers:
            self._alert("campaign.stragglers", f"worker threads did not end: {', '.join(stragglers)}",
                        {"threads": stragglers})
        if stopping.rule != "estop":
            self._settle_leftovers(stopping)
        state = {"operator": "stopped", "estop": "estopped"}.get(stopping.rule, "finished")
        if self._lease_lost():  # taken over while the last trials finished: the new holder ends it
            return self._end_lease_lost()
        self.store.finish_campaign(self.campaign.id, state, stopping.reason)
        if self.lease is not None:
            self.lease.release()
        self.observer("stopped", {"decision": stopping})
        return stopping

    def _lease_lost(self) -> bool:
        return self.lease is not None and not self.lease.ok()

    def _on_lease_lost(self) -> None:
        """From any thread: stop every step this runner has running and unblock its waiting workers (they find the
        lease lost and end without writing), and wake the control loop."""
        self.res.cancel()
        self.asker.discard()
        with self._lock:
            active = list(self._active)
        for ex in active:
            ex.interrupt()
        self.wake.set()

    def _end_lease_lost(self) -> StopDecision:
        """End without touching the store: the campaign belongs to the lease's new holder, which resumes it."""
        assert self.lease is not None
        self._on_lease_lost()
        stragglers = self.workers.join(5.0)
        reason = f"lease lost: {self.lease.reason}; this runner stopped acting on the campaign"
        if stragglers:
            reason += f" (worker threads still ending: {', '.join(stragglers)})"
        decision = StopDecision("lease_lost", reason)
        self.observer("stopped", {"decision": decision})
        return decision

    def _heartbeat(self) -> None:
        """Beat from its own thread: a sign of life that nothing else in the process can delay."""
        while True:
            if self.lease is not None and not self.lease.renew():
                self._on_lease_lost()
                return  # the campaign's new holder beats for it
            try:
                self.store.heartbeat(self.campaign.id, self.need_operator
                                     or ("paused by operator" if self.paused.is_set() else None))
            except Exception as exc:  # noqa: BLE001 - a missed beat is harmless; the next one retries
                self._beat_failed(exc)
            if self._beat.wait(1.0):
                return

    def _begin_stopping(self) -> None:
        """A stopping rule fired: in-flight trials finish; trials that hold nothing yet, or wait for a station that
        is gone, are cancelled (nothing physical happened to them); a proposal still being computed is dropped."""
        self.stopping.set()
        self.paused.clear()
        self.asker.discard()
        self._queued.clear()  # never launched: _settle_leftovers cancels them with the campaign's reason
        self._stale.clear()
        with self._lock:
            unplaced = list(self._unplaced)
        for trial_id in unplaced:
            self.res.cancel_trial(trial_id)
        if self.need_operator:
            self.res.cancel()

    def _settle_leftovers(self, stopping: StopDecision) -> None:
        """When a campaign ends, no trial stays unfinished: one that did nothing is cancelled, one whose sample was
        processed but not finished is failed with the reason."""
        for t in self.store.trials(self.campaign.id):
            if t.state not in UNFINISHED:
                continue
            try:
                if not self.store.steps(t.id):
                    self.store.transition(t.id, t.state, S.CANCELLED, finished_at=utcnow(),
                                          failure_reason=f"the campaign ended first ({stopping.reason})")
                else:
                    reason = f"the campaign ended before the trial finished ({stopping.reason})"
                    if t.failure_reason:
                        reason += f"; {t.failure_reason}"
                    self.store.transition(t.id, t.state, S.FAILED, finished_at=utcnow(), failure_reason=reason)
            except IllegalTransition:
                continue  # it moved on meanwhile (a last worker finished it)

    # ------------------------------------------------------------------ operator requests
    def _request_loop(self) -> None:
        """The request thread: poll for requests every REQUEST_POLL_S (one indexed select) and answer them."""
        said = None
        while not self.store.bells.nap(("requests", self.campaign.id), REQUEST_POLL_S, self._requests_end):
            try:
                self._serve_requests()
                said = None
            except Exception as exc:  # noqa: BLE001 - a store hiccup: the request stays pending, the next poll retries
                problem = f"{type(exc).__name__}: {exc}"
                if problem != said:  # once per problem, not every poll
                    print(f"labloop: serving operator requests failed, retrying: {problem}", file=sys.stderr,
                          flush=True)
                    said = problem

    def _stop_serving(self) -> None:
        """No request is answered after this returns (one being answered now is finished first)."""
        with self._serving:
            self._requests_end.set()
            self.store.bells.interrupt(("requests", self.campaign.id))

    def _serve_requests(self) -> None:
        """Answer every pending operator request: done with what happened, or refused with why. An emergency stop
        acts straight from the poll, before any other request is even loaded."""
        with self._serving:
            if not self._requests_end.is_set() and not self._lease_lost():
                self._serve_pending()

    def _serve_pending(self) -> None:
        pending = self.store.pending_actions(self.campaign.id)
        if not pending:
            return
        estop_outcome = None
        if any(action == "estop" for _, action in pending) and not self.estopped.is_set():
            estop_outcome = self._emergency_stop()
        for req in self.store.pending_requests(self.campaign.id):
            if req.action == "estop" and estop_outcome is not None:
                self.store.answer_request(req.id, "done", estop_outcome)
                estop_outcome = "already halted by the emergency stop above"
                continue
            changes: dict[str, Any] = {}  # the campaign row's, committed with the answer
            self._announce = []
            try:
                state, outcome = self._handle(req, changes)
            except LabloopError as exc:
                state, outcome = "refused", exc.problem
            self.store.answer_request(req.id, state, outcome, campaign=changes)
            for kind, data in self._announce:  # announced once committed: a reader of the event finds it stored
                self.observer(kind, data)

    def _handle(self, req: OperatorRequest, changes: dict[str, Any]) -> tuple[str, str]:
        """Carry out one request; what it changes on the campaign row goes in ``changes`` (committed with the
        answer: one transaction, where the write lock is shared with every commit of the running lab)."""
        action = req.action
        if action == "estop":  # a second estop while halted
            return "done", "every device was already told to stop (emergency stop in force)"
        if self.estopped.is_set():
            return "refused", "the campaign is in emergency stop; run `labloop resume` to restart it"
        if action == "stop":
            self._stop_requested = True
            changes.update(control="stop")
            self.wake.set()
            return "done", "stopping: trials in flight finish, nothing new starts"
        if action == "pause":
            if self.stopping.is_set():
                return "refused", "the campaign is ending; in-flight trials finish whatever a pause says"
            if self.paused.is_set():
                return "done", "already paused" + (f" ({self.need_operator})" if self.need_operator else "")
            self.paused.set()
            changes.update(state="paused", control="pause", note="paused by operator")
            self._announce.append(("paused", {"reason": f"paused by {req.user}"}))
            return "done", "paused: steps running now finish, nothing new starts"
        if action == "resume":
            if not self.paused.is_set():
                return "done", "the campaign was not paused; it runs"
            restored = self.res.restore() if self.need_operator else []
            if self.spec.lab is not None and self.spec.lab.calibration:
                # a calibration recorded meanwhile (`labloop calibrate` while paused) is put in force here
                restored += [f"{d} (calibration)" for d in calibration.restore(self.store, self.lab)]
            back = [d for d in restored if not d.endswith(" (calibration)")]
            if back:  # the one record that these stations are back in service (the campaign view reads it)
                self.store.audit(self.campaign.id, "station.restore", {"devices": back}, user=req.user)
            self.need_operator = None
            self.paused.clear()
            changes.update(state="running", control="run", note=None)
            self._announce.append(("resumed", {"restored": restored}))
            self.wake.set()
            return "done", "resumed" + (f"; back in service: {', '.join(restored)}" if restored else "")
        if action in ("approve", "reject"):
            return "done", self._decide(req)
        return "refused", f"unknown request '{action}' (known: pause, resume, stop, estop, approve, reject)"

    def _decide(self, req: OperatorRequest) -> str:
        """Approve or reject proposed trials: all of them or none (each checked before any is changed)."""
        if not self.spec.scheduling.approval:
            raise LabloopError(f"campaign '{self.campaign.name}' does not wait for approval "
                               f"(scheduling.approval is false)")
        by_number = {t.number: t for t in self.store.trials(self.campaign.id)}
        numbers = [int(n) for n in req.args.get("trials", [])]
        for n in numbers:
            t = by_number.get(n)
            if t is None:
                raise LabloopError(f"campaign '{self.campaign.name}' has no trial {n} "
                                   f"(trials awaiting approval: {self._awaiting(by_number.values())})")
            if t.state != S.PROPOSED:
                raise LabloopError(f"trial {n} is {t.state}, not waiting for approval; only proposed trials can be "
                                   f"approved or rejected (awaiting now: {self._awaiting(by_number.values())})")
        done = []
        for n in numbers:
            t = by_number[n]
            if req.action == "approve":
                t = self.store.transition(t.id, S.PROPOSED, S.APPROVED)
                self.store.audit(self.campaign.id, "trial.approve", {"trial": n}, req.user)
                self.observer("approved", {"trial": t})
                if not self.stopping.is_set():
                    self._launch(t)
            else:
                reason = req.args.get("reason") or "no reason given"
                t = self.store.transition(t.id, S.PROPOSED, S.REJECTED, finished_at=utcnow(),
                                          failure_reason=f"rejected by {req.user}: {reason}")
                self.store.audit(self.campaign.id, "trial.reject", {"trial": n, "reason": reason}, req.user)
                self.observer("finished", {"trial": t})
            done.append(n)
        self.wake.set()
        verb = "approved" if req.action == "approve" else "rejected"
        return f"{verb}: trial{'s' if len(done) > 1 else ''} {', '.join(map(str, done))}"

    @staticmethod
    def _awaiting(trials: Any) -> str:
        nums = [str(t.number) for t in trials if t.state == S.PROPOSED]
        return ", ".join(nums) if nums else "none"

    def _emergency_stop(self) -> str:
        """Halt every device now. Cancelling waits and calling ``stop()`` come first; every failure to stop is
        audited and shown (a device that will not stop is the one an operator must go to by hand)."""
        t0 = time.perf_counter()
        self.estopped.set()
        self.res.cancel()
        failures = self.lab.stop_all()
        with self._lock:
            active = list(self._active)
        for ex in active:
            ex.interrupt()  # also ends runs held by a suspender; a failure to halt is alerted by the executor
        stop_ms = (time.perf_counter() - t0) * 1000
        self.asker.discard()
        self.store.update_campaign(self.campaign.id, state="estopped", control="estop", note="emergency stop")
        for device, error in failures:
            self._alert("estop.device_failed", f"EMERGENCY STOP: device '{device}' did not accept stop(): {error}; "
                        f"make it safe by hand", {"device": device, "error": error})
        n = len(self.lab.devices)
        self.observer("alert", {"message": f"EMERGENCY STOP: stop() sent to {n - len(failures)} of {n} devices in "
                                           f"{stop_ms:.0f} ms"})
        self.wake.set()
        if failures:
            return (f"stop() sent to every device in {stop_ms:.0f} ms; {len(failures)} refused: "
                    + "; ".join(f"{d}: {e}" for d, e in failures) + " (make those safe by hand)")
        return f"every device halted: stop() sent to {n} devices in {stop_ms:.0f} ms"

    # ------------------------------------------------------------------ proposals
    def _check_systematic_failure(self, trials: list[Trial]) -> None:
        """N trials in a row failed in the same step with the same cause: a systematic fault (a missing file, a
        dead instrument). Pause with the cause named instead of spending the budget on it."""
        n = self.spec.scheduling.pause_after_same_failures
        if n <= 0:
            return
        ended = sorted((t for t in trials if t.state in (S.DONE, S.FAILED) and t.finished_at is not None),
                       key=lambda t: (t.finished_at, t.number))
        last = ended[-n:]
        if len(last) < n or any(t.state != S.FAILED for t in last):
            return
        # only faults of the lab count (a step that failed): an objective plugin's QC rejection is data about
        # the region the strategy is exploring, and the strategy learns to leave it
        labels = {step.label for step in self.workflow}
        if any((t.failure_reason or "").split(": ", 1)[0] not in labels for t in last):
            return
        if len({failure_cause(t.failure_reason) for t in last}) != 1 or self._failure_streak_seen == last[-1].id:
            return
        # and only a step that failed on the device: a step cut short by a crash or a kill is not the lab's fault
        # (read from the store last, and only for a streak not yet paused for)
        if any(not any(st.state == "failed" for st in self.store.steps(t.id)) for t in last):
            return
        self._failure_streak_seen = last[-1].id
        nums = ", ".join(str(t.number) for t in last)
        self._pause_for_operator(f"{n} trials in a row ({nums}) failed with the same cause: {last[-1].failure_reason}; "
                                 f"fix the cause, then run `labloop resume`")

    def _slots(self, trials: list[Trial]) -> int:
        in_flight = [t for t in trials if t.state in IN_FLIGHT]
        mode = self.spec.scheduling.mode
        if mode == "sequential":
            return 0 if in_flight else 1
        if mode == "batch":
            return 0 if in_flight else self.spec.strategy.batch_size
        if self.first_kind is None:
            return 0 if in_flight else 1
        free = len(self.res.free(self.first_kind)) + self.spec.scheduling.lookahead
        with self._lock:
            awaiting = sum(1 for t in trials if t.state == S.PROPOSED and t.id not in self._launched)
            unplaced = len(self._unplaced)
        return max(0, free - unplaced - awaiting)

    def _propose_and_launch(self, trials: list[Trial]) -> None:
        """Hand the strategy a snapshot when slots are free; never wait for its answer here."""
        if self.asker.busy:
            return
        if self.first_kind and budget_left(self.spec, trials) and not self.res.in_service(self.first_kind):
            self._call_operator(NoStationLeft(self.first_kind, self.res.out_of_service(self.first_kind)))
            return
        stale: list[int] = []
        if self._queues():
            stale = self._find_stale(sum(1 for t in trials if t.state in LEARNED_FROM))
            self._launch_queued()
        # stale proposals are re-asked in place: their slots count as free here (they are awaiting in _slots)
        n = min(self._slots(trials), budget_left(self.spec, trials)) + len(stale)
        if n <= 0:
            return
        observations = observations_from(trials)
        self._asked_with = len(observations)
        self._reasking = stale
        self.asker.submit(n, self.prior + observations, pending_points(t for t in trials if t.id not in stale))

    def _queues(self) -> bool:
        """Async lookahead without approval: proposals beyond the free stations wait unlaunched in ``_queued``."""
        return (self.spec.scheduling.mode == "async" and self.first_kind is not None
                and not self.spec.scheduling.approval)

    def _find_stale(self, known: int) -> list[int]:
        """Queued proposals whose ask saw fewer results than are known now (made on stale data) leave the queue to
        be re-asked in place (:meth:`_replace`); returns every trial waiting for its re-ask. Why: with lookahead a
        proposal made one trial ahead could wait a whole deposition for its station while results it never saw
        came in (issue 25)."""
        for trial_id, (trial, seen) in list(self._queued.items()):
            if seen < known:
                self._stale[trial_id] = self._queued.pop(trial_id)
        return list(self._stale)

    def _replace(self, trial_id: int, proposal: Any, seconds: float) -> Trial:
        """Give a stale queued trial (still proposed, never launched) the re-asked proposal. Nothing is lost: the
        replaced proposal is kept in the trial's ``info['replaced']`` and in the audit log, with why."""
        trial, seen = self._stale.pop(trial_id)
        old = {"params": dict(trial.params), "source": trial.source, "results_seen": seen,
               "reason": f"re-asked: {self._asked_with} results known before a station was free, {seen} seen"}
        info = {**proposal.info, "ask_seconds": seconds, "replaced": [*(trial.info or {}).get("replaced", []), old]}
        self.store.update_trial(trial_id, params=to_jsonable(proposal.params), source=proposal.source,
                                info=to_jsonable(info))
        self.store.audit(self.campaign.id, "trial.reasked",
                         {"trial": trial.number, **old, "new_params": to_jsonable(proposal.params)}, user="labloop")
        return self.store.trial(trial_id)

    def _launch_queued(self) -> None:
        """Launch queued proposals, oldest first, onto the first-step stations that are free and not promised to a
        launched trial."""
        if not self._queued or self.first_kind is None:
            return
        with self._lock:
            unplaced = len(self._unplaced)
        room = len(self.res.free(self.first_kind)) - unplaced
        for trial_id in list(self._queued)[:max(0, room)]:
            trial, _ = self._queued.pop(trial_id)
            self._launch(trial)

    def _ask_ready(self) -> bool:
        """Take the strategy's answer if it is there: store the proposals and launch them. True if one came."""
        result = self.asker.poll()
        if result is None:
            return False
        if self.stopping.is_set() or self.paused.is_set() or self.estopped.is_set():
            self._reasking = []  # stale trials stay in _stale: the next ask re-asks them (or the end cancels them)
            return True  # decided while the lab changed its mind: drop it (the strategy keeps no state)
        if result.error is not None:
            exc = result.error
            self._reasking = []
            self._pause_for_operator(f"the optimizer failed to propose: {type(exc).__name__}: {exc}; fix the "
                                     f"strategy settings, then run `labloop resume`")
            return True
        approval = self.spec.scheduling.approval
        proposals = list(result.proposals or [])
        reasked = [i for i in self._reasking if i in self._stale][:len(proposals)]
        for trial_id, proposal in zip(reasked, proposals):
            trial = self._replace(trial_id, proposal, result.seconds)
            self._queued[trial.id] = (trial, self._asked_with)
        self._reasking = []
        trials = self.store.trials(self.campaign.id)
        n = min(result.n - len(reasked), budget_left(self.spec, trials))
        for proposal in proposals[len(reasked):][:max(0, n)]:
            info = {**proposal.info, "ask_seconds": result.seconds}
            trial = self.store.add_trial(self.campaign.id, proposal.params, proposal.source, info,
                                         self.campaign.uid[:8])
            self.observer("proposed", {"trial": trial, "approval": approval,
                                       "of": self.spec.stopping.max_trials})
            if self._queues():
                self._queued[trial.id] = (trial, self._asked_with)
            elif not approval:
                self._launch(trial)
        self._launch_queued()
        self.wake.set()
        return True

    def _launch(self, trial: Trial, resumption: Resumption | None = None) -> None:
        with self._lock:
            self._launched.add(trial.id)
            if resumption is None or resumption.held is None:
                self._unplaced.add(trial.id)
        self.workers.start(trial.id, str(trial.number), self._worker, trial, resumption)

    # ------------------------------------------------------------------ waiting, pausing
    def _cancelled(self) -> bool:
        return self.estopped.is_set() or self.res.cancelled.is_set()

    def _wait_while_paused(self) -> None:
        while self.paused.is_set() and not self._cancelled():
            time.sleep(0.02)
        if self._cancelled():
            raise Cancelled()

    def _reserve(self, kind: str, trial: Trial, device: str | None = None) -> str:
        """Reserve a station; when none of the kind is in service, pause the campaign for an operator."""
        while True:
            try:
                return self.res.reserve(kind, trial.id, device)
            except NoStationLeft as exc:
                if self.stopping.is_set():
                    raise Cancelled() from None  # the campaign ends; this trial cannot finish
                self._call_operator(exc)
                self.wake.set()
                self._wait_while_paused()

    def _call_operator(self, exc: NoStationLeft) -> None:
        self._pause_for_operator(f"no '{exc.kind}' station left in service ({exc.detail}); fix one, then "
                                 f"run `labloop resume` to put the stations back in service")

    def _pause_for_operator(self, reason: str) -> None:
        """Pause the campaign with the reason, until an operator's resume request lifts it. Called from the
        control thread or a worker; the first reason wins."""
        with self._lock:
            if self.need_operator is not None:
                return
            self.need_operator = reason
        self.store.update_campaign(self.campaign.id, state="paused", control="pause", note=reason)
        self.store.audit(self.campaign.id, "campaign.pause", {"reason": reason}, user="labloop")
        self.paused.set()
        self.observer("alert", {"message": reason})

    # ------------------------------------------------------------------ worker (one thread per trial)
    def _worker(self, trial: Trial, resumption: Resumption | None) -> None:
        """Walk one trial through its workflow (a worker thread). ``walk.state`` is the trial's state as this worker
        last committed it: every change is a compare-and-set from it. The trial becomes running when its first
        physical action is about to start (:meth:`_begin`), not while it waits for a station."""
        ex: TrialExecutor | None = None
        held = resumption.held if resumption else None
        location = resumption.location if resumption else self.lab.sample_entry
        start = resumption.start_step if resumption else 0
        walk = _Walk(trial, TrialState(trial.state), location)
        ctx = TrialContext(self.campaign.id, self.campaign.uid, self.campaign.name, trial.id, trial.number,
                           trial.sample_id, dict(trial.params), location)
        try:
            ex = self._executor()
            ex.abort_check = self._cancelled
            with self._lock:
                self._active.add(ex)
            if resumption is not None and resumption.evaluate_only:
                self.observer("finished", {"trial": self.evaluate(trial)})
                return
            if held is not None:
                self.res.claim(held, trial.id)
                signal = getattr(self.lab[held], "sample", None)
                if signal is not None and not signal.get():
                    signal.put(trial.sample_id)  # the sample is physically there; the new process must know
            if resumption is not None and resumption.cleanup_only:
                self._placed(trial)
                self._clear_station(ex, ctx, trial, held)
                return
            for index in range(start, len(self.workflow)):
                self._wait_while_paused()
                held = self._step(ex, ctx, walk, index, held)
            self._placed(trial)
            if self.lease is not None:
                self.lease.check()
            self.store.transition(trial.id, walk.state, S.MEASURED)
            walk.state = S.MEASURED
            self.observer("finished", {"trial": self.evaluate(trial)})
        except LeaseLost:
            pass  # nothing more is written: the lease's new holder resumes the trial
        except StepFailed as exc:
            self._placed(trial)
            if self._lease_lost():
                pass  # nothing more is written: the lease's new holder resumes the trial
            elif self.estopped.is_set():
                self._interrupt(trial, walk.state, f"{exc.step.label}: {exc.reason}")
            else:
                done = self.store.transition(trial.id, walk.state, S.FAILED, finished_at=utcnow(),
                                             failure_reason=f"{exc.step.label}: {exc.reason}")
                walk.state = S.FAILED
                self.observer("finished", {"trial": done})
                held = self._holding(ctx)
                try:
                    self._clear_station(ex, ctx, trial, held)
                except Cancelled:
                    pass  # the sample stays recorded where it is; `labloop resume` takes it out
        except Cancelled:
            self._placed(trial)
            if (resumption and resumption.cleanup_only) or self._lease_lost():
                pass
            elif not self.estopped.is_set() and walk.state in UNFINISHED and not self.store.steps(trial.id):
                # nothing physical happened to it: cancelled, one word for it live and in the store
                done = self.store.transition(trial.id, walk.state, S.CANCELLED, finished_at=utcnow(),
                                             failure_reason="the campaign ended before the trial reached a station")
                self.observer("finished", {"trial": done})
            else:
                self._interrupt(trial, walk.state, "emergency stop" if self.estopped.is_set() else
                                "the campaign stopped while the trial waited for a station")
        except Exception as exc:  # noqa: BLE001 - no worker failure may leave a trial in flight forever
            if self._lease_lost():
                return
            self._alert("trial.internal_error", f"trial {trial.number} interrupted by an internal error: "
                        f"{type(exc).__name__}: {exc}; `labloop resume` continues it",
                        {"trial": trial.number, "error": f"{type(exc).__name__}: {exc}"})
            self._interrupt(trial, walk.state, f"labloop error: {type(exc).__name__}: {exc}")
        finally:
            self._placed(trial)
            self.res.release_all(trial.id)
            if trial.id in self._first_move:
                self._first_move[trial.id].set()  # whatever happened, the others may go now
            if ex is not None:
                with self._lock:
                    self._active.discard(ex)
                    self._executors.append(ex)
            self.wake.set()

    def _begin(self, walk: "_Walk") -> None:
        """The trial's first physical action is next: it is running from now (committed before anything moves)."""
        if walk.state == S.RUNNING:
            return
        if self.lease is not None:
            self.lease.check()
        first = walk.trial.started_at is None
        self.store.transition(walk.trial.id, walk.state, S.RUNNING, **({"started_at": utcnow()} if first else {}))
        walk.state = S.RUNNING
        if first:
            self.store.locate_sample(self.campaign.id, walk.trial.sample_id, walk.location, walk.trial.id)
        self.observer("started", {"trial": walk.trial, "of": self.spec.stopping.max_trials, "location": walk.location})

    def _placed(self, trial: Trial) -> None:
        with self._lock:
            if trial.id not in self._unplaced:
                return
            self._unplaced.discard(trial.id)
        self.wake.set()

    def _interrupt(self, trial: Trial, state: TrialState, reason: str) -> None:
        """Leave the trial for `labloop resume` (unless it already ended)."""
        if state not in UNFINISHED or state == S.INTERRUPTED:
            return
        try:
            done = self.store.transition(trial.id, state, S.INTERRUPTED, failure_reason=reason)
        except IllegalTransition as exc:
            self._alert("trial.state_conflict", exc.problem, {"trial": trial.number})
            return
        self.observer("finished", {"trial": done})

    def _step(self, ex: TrialExecutor, ctx: TrialContext, walk: "_Walk", index: int, held: str | None) -> str | None:
        """Run one step with its reservations and retries; returns the station now holding the sample."""
        trial = walk.trial
        step = self.workflow[index]
        if step.kind == "transfer":
            dest = step.to or ""
            if dest in self.kinds:
                if held is not None and self._should_park(held, dest):
                    self._begin(walk)
                    held = self._park(ex, ctx, trial, index, held)
                dest = self._reserve(dest, trial)
                self._placed(trial)
            self._begin(walk)
            self._take_robot(trial, 0 if held else 1)
            try:
                self._attempts(ex, ctx, index, step.robot, dest)
            finally:
                self._release_robot(trial)
            if held is not None and held != dest:
                self.res.release(held, trial.id)
            self.wake.set()
            return dest if dest in self.res.stations else None
        kind = step.device or ""
        if held is not None and held in self.res.devices_of(kind):
            device = held
        else:
            device = self._reserve(kind, trial)
            self._placed(trial)
            self._wait_while_paused()
        self._begin(walk)
        self.res.mark_busy(device, True)
        try:
            self._calibrate_if_expired(ex, ctx, trial, index, device)
            self._attempts(ex, ctx, index, device, None)
        finally:
            self.res.mark_busy(device, False)
        return held

    def _calibrate_if_expired(self, ex: TrialExecutor, ctx: TrialContext, trial: Trial, index: int,
                              device: str) -> None:
        """Campaign option ``lab.calibration.<device>``: before a step on a device whose calibration is older than
        ``max_age``, calibrate it (a recorded step of kind ``calibrate``; its failure fails the trial like a failed
        step) or pause the campaign saying how to calibrate. The device is reserved by this trial already, so no
        other trial uses it meanwhile. After an operator resumes a paused campaign without calibrating, the step
        runs and its reading is flagged ``calibration_expired`` (by the executor)."""
        if not ex.calibration_expired(device):
            return
        policy = self.spec.lab.calibration[device]  # type: ignore[union-attr]  # expired implies a policy
        if policy.on_expiry == "calibrate":
            self.observer("step", {"trial": ctx.number, "of": self.spec.stopping.max_trials,
                                   "step": f"calibrate:{device}", "device": device, "to": None, "attempt": 1})
            ex.run_calibration(ctx, index, device)
            return
        age = calibration.age_s(self.lab.devices.get(device))
        shown = "unknown" if age is None else f"{age:.0f} s"
        self._pause_for_operator(
            f"calibration of '{device}' expired (age {shown} > max_age {policy.max_age:g} s) before trial "
            f"{ctx.number}'s step '{self.workflow[index].label}'; calibrate it with "
            f"`labloop calibrate {device} --campaign {self.campaign.id}`, then `labloop resume` (resuming without "
            f"calibrating goes on with readings flagged calibration_expired)")
        self.wake.set()
        self._wait_while_paused()

    def _should_park(self, held: str, next_kind: str) -> bool:
        """Park when the next station is busy and another trial waits for the station this sample blocks."""
        buffers = self.spec.lab.buffers if self.spec.lab else []
        if not buffers or self.res.free(next_kind):
            return False
        held_kind = self.res.stations[held].kind
        return any(kind in (held_kind, held) or held in self.res.devices_of(kind)
                   for kind in list(self.res.waiting.values()))

    def _park(self, ex: TrialExecutor, ctx: TrialContext, trial: Trial, index: int, held: str) -> None:
        """Move the sample to a buffer place and free its station for the trial waiting for it."""
        assert self.spec.lab is not None
        place = self.spec.lab.buffers[0]
        self._take_robot(trial, 0)
        try:
            ex.run_step(ctx, index, None, place, park=True)
        finally:
            self._release_robot(trial)
        self.res.release(held, trial.id)
        self.wake.set()
        return None

    def _take_robot(self, trial: Trial, priority: int) -> None:
        """Take the robot, but never start a move while the campaign is paused."""
        while True:
            self._wait_while_paused()
            self.res.acquire_robot(trial.id, priority)
            if not self.paused.is_set():
                return
            self.res.release_robot(trial.id)

    def _attempts(self, ex: TrialExecutor, ctx: TrialContext, index: int, device: str, dest: str | None) -> None:
        step = self.workflow[index]
        for attempt in range(1, step.retries + 2):
            if self._cancelled():
                raise Cancelled()
            station = step.kind != "transfer"  # robot moves are not station health
            self.observer("step", {"trial": ctx.number, "of": self.spec.stopping.max_trials, "step": step.label,
                                   "device": device, "to": dest, "attempt": attempt})
            try:
                ex.run_step(ctx, index, device if station else None, dest, attempt)
                if station:
                    self.res.record(device, True)
                return
            except StepFailed as exc:
                if self.estopped.is_set():
                    raise  # an emergency stop is not the station's fault
                quarantined = station and self.res.record(device, False, exc.reason)
                if attempt > step.retries or quarantined:
                    raise
                self.store.audit(self.campaign.id, "step.retry", {"trial": ctx.number, "step": step.label,
                                                                  "attempt": attempt, "reason": exc.reason}, "labloop")
                delay = step.retry_backoff * 2 ** (attempt - 1) / self.lab.time_scale(device, self.time_scale)
                if self.estopped.wait(delay):
                    raise

    def _holding(self, ctx: TrialContext) -> str | None:
        """The station the trial's sample sits in now (its recorded location), if any."""
        return ctx.location if ctx.location in self.res.stations else None

    def _clear_station(self, ex: TrialExecutor, ctx: TrialContext, trial: Trial, held: str | None) -> None:
        """After a failure, take the sample out of the station it blocks (to the workflow's last place). The move
        is a recorded step, committed before the robot moves, so a crash in the middle is resumed like any other."""
        if held is None:
            return
        places = [s.to for s in self.workflow if s.kind == "transfer" and s.to not in self.kinds and s.to]
        if not places:
            return
        robot = next(s.robot for s in self.workflow if s.kind == "transfer")
        self.res.claim(held, trial.id)
        self._take_robot(trial, 0)
        try:
            ex.run_cleanup(ctx, robot, places[-1])
        except StepFailed as exc:  # a stuck sample takes its station out of service, not the lab
            self.res.quarantine(held, f"failed sample {ctx.sample_id} is stuck in it ({exc.reason})")
        finally:
            self._release_robot(trial)
