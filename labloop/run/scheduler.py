"""The scheduler: keeps every station busy, one worker thread (with its own RunEngine) per trial in flight.

The main thread owns decisions: it reads operator requests and the trials from the store, applies the stopping
rules, and asks the strategy for new points (never on a RunEngine's loop) whenever a first-step station frees, with
all in-flight trials as pending points. Worker threads own doing: each walks one trial through its workflow,
reserving stations and the robot from :class:`~labloop.run.resources.LabResources`, retrying failed steps with
backoff, and committing every step before the next physical action.

Modes: ``async`` (default) starts a trial whenever a first-step station is free; ``batch`` proposes
``strategy.batch_size`` points, runs them all, then proposes again; ``sequential`` runs one trial at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bluesky import RunEngine
from bluesky.suspenders import SuspendCeil, SuspendFloor, SuspendWhenOutsideBand

from labloop.errors import SpecError
from .executor import StepFailed, TrialContext, TrialExecutor
from .lab import station_kinds
from .resources import Cancelled, LabResources, NoStationLeft
from .stopping import StopDecision, budget_left, check
from labloop.store import Store
from labloop.store.schema import Campaign, Trial, utcnow

IN_FLIGHT = ("proposed", "approved", "running", "measured")
Observer = Callable[[str, dict[str, Any]], None]


@dataclass
class Resumption:
    """Where a trial interrupted by a crash or an emergency stop picks up."""

    trial: Trial
    start_step: int
    location: str
    held: str | None  # the station the sample sits in (reserved again before anything moves)
    evaluate_only: bool = False
    cleanup_only: bool = False  # a failed trial whose sample must leave the station it blocks


class Scheduler:
    def __init__(self, runner: Any, resumptions: list[Resumption] | None = None):
        self.runner = runner
        self.spec = runner.spec
        self.lab = runner.p.lab
        self.store: Store = runner.store
        self.campaign: Campaign = runner.campaign
        self.observer: Observer = runner.observer
        self.time_scale = self.spec.lab.time_scale if self.spec.lab else 1.0
        self.kinds = station_kinds(self.spec, self.lab)
        self.res = LabResources(self.kinds, self.spec.scheduling.quarantine_after, self._on_quarantine)
        self.workflow = self.spec.workflow
        self.first_kind = self._first_kind()
        self.resumptions = list(resumptions or [])
        self._executors: list[TrialExecutor] = []
        self._executors_lock = threading.Lock()
        self._threads: dict[int, threading.Thread] = {}
        self._unplaced: set[int] = set()  # launched trials not yet holding their first station
        self._launched: set[int] = set()
        self.wake = threading.Event()
        self.estopped = threading.Event()
        self.stopping = threading.Event()  # a stopping rule fired: finish in-flight trials, start nothing
        self._beat = threading.Event()  # set when the campaign ends: the heartbeat thread stops
        self._active: set[TrialExecutor] = set()  # executors running a trial now (estop halts their RunEngines)
        self.paused = threading.Event()
        self.need_operator: str | None = None

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
        self.observer("alert", {"message": f"station {device} taken out of service: {reason}"})

    def _executor(self) -> TrialExecutor:
        with self._executors_lock:
            if self._executors:
                return self._executors.pop()
        ex = TrialExecutor(self.spec, self.lab, self.store, RunEngine(context_managers=[]))
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

    def _return_executor(self, ex: TrialExecutor) -> None:
        with self._executors_lock:
            self._executors.append(ex)

    # ------------------------------------------------------------------ main loop
    def run(self) -> StopDecision:
        cid = self.campaign.id
        for r in self.resumptions:  # samples sitting in stations keep them: claim before anyone else can
            if r.held is not None:
                self.res.claim(r.held, r.trial.id)
        for r in self.resumptions:
            self._launch(r.trial, r)
        stopping: StopDecision | None = None
        self.store.heartbeat(cid)  # who runs the campaign is known before anything moves
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()
        while True:
            was_paused = self.paused.is_set()  # read before the store: a pause is committed before it is set
            campaign = self.store.campaign(cid)
            control = campaign.control
            if control == "estop" and not self.estopped.is_set():
                self._emergency_stop()
            if self.stopping.is_set():
                pass  # ending: in-flight trials finish whatever pause or resume requests say
            elif control == "run" and was_paused:
                self.paused.clear()
                restored = self.res.restore() if self.need_operator else []
                self.need_operator = None
                self.store.update_campaign(cid, state="running", note=None)
                self.observer("resumed", {"restored": restored})
            elif control == "pause" and not self.paused.is_set():
                self.paused.set()
                self.store.update_campaign(cid, state="paused", note="paused by operator")
                self.observer("paused", {"reason": "paused by operator"})
            trials = self.store.trials(cid)
            if stopping is None:
                stopping = check(self.spec, trials, self.campaign.created_at)
                if stopping is None and control == "stop":
                    stopping = StopDecision("operator", "stopped by operator (in-flight trials were finished)")
                if stopping is None and self.estopped.is_set():
                    stopping = StopDecision("estop", "emergency stop: every device was halted; "
                                                     "interrupted trials continue after `labloop resume`")
            alive = [t for t in self._threads.values() if t.is_alive()]
            if stopping is not None:
                if not self.stopping.is_set():
                    self._begin_stopping()
                if not alive:
                    if stopping.rule != "estop":
                        self._settle_leftovers(stopping)
                    state = {"operator": "stopped", "estop": "estopped"}.get(stopping.rule, "finished")
                    self.store.finish_campaign(cid, state, stopping.reason)
                    self._beat.set()
                    self.observer("stopped", {"decision": stopping})
                    return stopping
            elif not self.paused.is_set():
                if self.first_kind and budget_left(self.spec, trials) and not self.res.in_service(self.first_kind):
                    self._call_operator(NoStationLeft(self.first_kind, self.res.out_of_service(self.first_kind)))
                else:
                    self._propose_and_launch(trials)
            self.wake.wait(0.05)
            self.wake.clear()

    def _heartbeat(self) -> None:
        """Beat from its own thread: a main loop busy in a long optimizer call must not look dead."""
        while True:
            try:
                self.store.heartbeat(self.campaign.id, self.need_operator
                                     or ("paused by operator" if self.paused.is_set() else None))
            except Exception:  # noqa: BLE001 - a missed beat is harmless; the next one retries
                pass
            if self._beat.wait(1.0):
                return

    def _begin_stopping(self) -> None:
        """A stopping rule fired: in-flight trials finish; trials that hold nothing yet, or wait for a station that
        is gone, are cancelled (nothing physical happened to them)."""
        self.stopping.set()
        self.paused.clear()
        for trial_id in list(self._unplaced):
            self.res.cancel_trial(trial_id)
        if self.need_operator:
            self.res.cancel()

    def _settle_leftovers(self, stopping: StopDecision) -> None:
        """When a campaign ends, no trial stays in flight: one that did nothing is cancelled, one whose sample was
        processed but not finished is failed with the reason."""
        for t in self.store.trials(self.campaign.id):
            if t.state not in IN_FLIGHT + ("interrupted",):
                continue
            if not self.store.steps(t.id):
                self.store.update_trial(t.id, state="cancelled", finished_at=utcnow(),
                                        failure_reason=f"cancelled: the campaign ended ({stopping.reason})")
            else:
                self.store.update_trial(t.id, state="failed", finished_at=utcnow(),
                                        failure_reason=f"the campaign ended before the trial finished "
                                                       f"({stopping.reason}); {t.failure_reason or ''}".rstrip("; "))

    def _slots(self, trials: list[Trial]) -> int:
        in_flight = [t for t in trials if t.state in IN_FLIGHT]
        mode = self.spec.scheduling.mode
        if mode == "sequential":
            return 0 if in_flight else 1
        if mode == "batch":
            return 0 if in_flight else self.spec.strategy.batch_size
        if self.first_kind is None:
            return 0 if in_flight else 1
        awaiting = sum(1 for t in trials if t.state == "proposed" and t.id not in self._launched)
        free = len(self.res.free(self.first_kind)) + self.spec.scheduling.lookahead
        return max(0, free - len(self._unplaced) - awaiting)

    def _propose_and_launch(self, trials: list[Trial]) -> None:
        approval = self.spec.scheduling.approval
        if approval:
            for t in trials:
                if t.state == "approved" and t.id not in self._launched:
                    self._launch(t)
        n = min(self._slots(trials), budget_left(self.spec, trials))
        if n <= 0:
            return
        from .campaign import observations, pending

        t0 = time.perf_counter()
        try:
            proposals = self.runner.p.strategy.ask(n, self.runner.prior + observations(trials), pending(trials))
        except Exception as exc:  # noqa: BLE001 - an optimizer bug pauses the lab with the reason, never crashes it
            self._pause_for_operator(f"the optimizer failed to propose: {type(exc).__name__}: {exc}; fix the "
                                     f"strategy settings, then run `labloop resume`")
            return
        ask_s = time.perf_counter() - t0
        for proposal in proposals[:n]:
            info = {**proposal.info, "ask_seconds": ask_s}
            trial = self.store.add_trial(self.campaign.id, proposal.params, proposal.source, info,
                                         self.campaign.uid[:8], state="proposed")
            self.observer("proposed", {"trial": trial, "approval": approval})
            if not approval:
                self._launch(trial)

    def _launch(self, trial: Trial, resumption: Resumption | None = None) -> None:
        self._launched.add(trial.id)
        if resumption is None or resumption.held is None:
            self._unplaced.add(trial.id)
        th = threading.Thread(target=self._worker, args=(trial, resumption), name=f"trial-{trial.number}",
                              daemon=True)
        self._threads[trial.id] = th
        th.start()

    # ------------------------------------------------------------------ operator actions
    def _emergency_stop(self) -> None:
        self.estopped.set()
        self.res.cancel()
        self.lab.stop_all()
        for ex in list(self._active):
            ex.interrupt()  # also ends runs held by a suspender
        self.store.update_campaign(self.campaign.id, state="estopped", note="emergency stop")
        self.observer("alert", {"message": "EMERGENCY STOP: all devices halted"})

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
        """Pause the campaign (committed as a pause request, so `labloop resume` lifts it) with the reason."""
        if self.need_operator is not None:
            return
        self.need_operator = reason
        self.store.update_campaign(self.campaign.id, state="paused", note=self.need_operator)
        self.store.set_control(self.campaign.id, "pause", user="labloop", detail={"reason": self.need_operator})
        self.paused.set()
        self.observer("alert", {"message": self.need_operator})

    # ------------------------------------------------------------------ worker
    def _worker(self, trial: Trial, resumption: Resumption | None) -> None:
        ex: TrialExecutor | None = None
        held = resumption.held if resumption else None
        location = resumption.location if resumption else self.lab.sample_entry
        start = resumption.start_step if resumption else 0
        ctx = TrialContext(self.campaign.id, self.campaign.uid, self.campaign.name, trial.id, trial.number,
                           trial.sample_id, dict(trial.params), location)
        try:
            ex = self._executor()
            ex.abort_check = self._cancelled
            self._active.add(ex)
            if resumption is not None and resumption.evaluate_only:
                self.runner.finish_measured(trial)
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
            if trial.started_at is None:
                self.store.update_trial(trial.id, state="running", started_at=utcnow())
                self.store.locate_sample(self.campaign.id, trial.sample_id, location, trial.id)
            else:
                self.store.update_trial(trial.id, state="running")
            self.observer("started", {"trial": trial})
            for index in range(start, len(self.workflow)):
                self._wait_while_paused()
                held = self._step(ex, ctx, trial, index, held)
            self._placed(trial)
            self.store.update_trial(trial.id, state="measured")
            self.runner.finish_measured(trial)
        except StepFailed as exc:
            self._placed(trial)
            if self.estopped.is_set():
                self._interrupt(trial, f"{exc.step.label}: {exc.reason}")
            else:
                self.store.update_trial(trial.id, state="failed", finished_at=utcnow(),
                                        failure_reason=f"{exc.step.label}: {exc.reason}")
                self.observer("finished", {"trial": self.store.trial(trial.id)})
                held = self._holding(ctx)
                try:
                    self._clear_station(ex, ctx, trial, held)
                except Cancelled:
                    pass  # the sample stays recorded where it is; `labloop resume` takes it out
        except Cancelled:
            self._placed(trial)
            if not (resumption and resumption.cleanup_only):
                self._interrupt(trial, "emergency stop" if self.estopped.is_set() else "campaign stopped while "
                                       "the trial waited for a station")
        except Exception as exc:  # noqa: BLE001 - no worker failure may leave a trial in flight forever
            self._interrupt(trial, f"labloop error: {type(exc).__name__}: {exc}")
            self.observer("alert", {"message": f"trial {trial.number} interrupted by an internal error: {exc}; "
                                               f"`labloop resume` continues it"})
        finally:
            self._placed(trial)
            self.res.release_all(trial.id)
            if ex is not None:
                self._active.discard(ex)
                self._return_executor(ex)
            self.wake.set()

    def _placed(self, trial: Trial) -> None:
        if trial.id in self._unplaced:
            self._unplaced.discard(trial.id)
            self.wake.set()

    def _interrupt(self, trial: Trial, reason: str) -> None:
        self.store.update_trial(trial.id, state="interrupted", failure_reason=f"interrupted: {reason}")
        self.observer("finished", {"trial": self.store.trial(trial.id)})

    def _step(self, ex: TrialExecutor, ctx: TrialContext, trial: Trial, index: int, held: str | None) -> str | None:
        """Run one step with its reservations and retries; returns the station now holding the sample."""
        step = self.workflow[index]
        if step.kind == "transfer":
            dest = step.to or ""
            if dest in self.kinds:
                if held is not None and self._should_park(held, dest):
                    held = self._park(ex, ctx, trial, index, held)
                dest = self._reserve(dest, trial)
                self._placed(trial)
            self._take_robot(trial, 0 if held else 1)
            try:
                self._attempts(ex, ctx, index, step.robot, dest)
            finally:
                self.res.release_robot(trial.id)
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
        self.res.mark_busy(device, True)
        try:
            self._attempts(ex, ctx, index, device, None)
        finally:
            self.res.mark_busy(device, False)
        return held

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
            self.res.release_robot(trial.id)
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
                delay = step.retry_backoff * 2 ** (attempt - 1) / self.time_scale
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
            self.res.release_robot(trial.id)
