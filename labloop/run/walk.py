"""Walking one trial through its workflow, on a worker thread of its own: stations and the robot reserved from
:class:`~labloop.run.resources.LabResources`, expired calibrations handled, samples parked when they block a
station, failed steps retried with backoff, and every step committed before the next physical action.

:class:`TrialWalker` owns the workers (:class:`~labloop.run.workers.WorkerPool`) and what only they touch; it reads
the campaign's flags from the :class:`~labloop.run.context.RunContext` and changes only ``unplaced`` (under its
lock), the trial's state (compare-and-set in the store) and, when a station is gone or a calibration expired, the
pause (:meth:`~labloop.run.context.RunContext.pause_for_operator`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labloop.states import UNFINISHED, IllegalTransition, TrialState
from labloop.store.leases import LeaseLost
from labloop.store.schema import Trial, utcnow

from . import calibration
from .batch_steps import BatchSteps
from .context import Flag, RunContext
from .engines import EnginePool
from .executor import StepFailed, TrialContext, TrialExecutor
from .identity import IdentityCheck, SampleMismatch
from .recovery import Resumption
from .resources import Cancelled, NoStationLeft
from .workers import WorkerPool

S = TrialState


@dataclass
class Walk:
    """One trial as its worker walks it: the trial, its state as last committed, where its sample starts."""

    trial: Trial
    state: TrialState
    location: str
    reattach: list[str] | None = None  # resumed mid-program: the samples whose program its first step follows


class TrialWalker:
    """Launches trials onto worker threads and walks each through the workflow."""

    def __init__(
        self,
        ctx: RunContext,
        engines: EnginePool,
        evaluate: Callable[[Trial], Trial],
        workers: WorkerPool | None = None,
    ):
        self.ctx = ctx
        self.engines = engines
        self.evaluate = evaluate  # measured trial -> done or failed, committed (objective plugins)
        self.workers = workers or WorkerPool()
        self.identity = IdentityCheck(ctx)  # barcode checks before a step on a station with a reader
        self._first_move: dict[int, Flag] = {}  # resumed trials whose sample a robot holds (set: put down)
        self.batches = BatchSteps(ctx)  # batch stations (lab.batching capacity > 1); inert without them

    # ------------------------------------------------------------------ launching
    def launch(self, trial: Trial, resumption: Resumption | None = None) -> None:
        """Start the trial's worker (from the control thread, or the request thread for an approval)."""
        ctx = self.ctx
        with ctx.lock:
            ctx.launched.add(trial.id)
            if resumption is None or resumption.held is None:
                ctx.unplaced.add(trial.id)
        if self.batches.formers:  # a prospect of a batch station from now on
            self.batches.track(trial.id, resumption.start_step if resumption else 0, dict(trial.params))
        self.workers.start(trial.id, str(trial.number), self.walk, trial, resumption)

    def resume_gripper_moves(self, resumptions: list[Resumption]) -> None:
        """A sample a robot still holds (its move was cut short) is put down before anything else uses the robot:
        every other move would be refused while the gripper is full. Any other cut-short move goes first too: it
        may have finished, into a station that cannot say so, and another trial moving there first would collide. Waits on the context's condition until every
        such trial put its sample down (or ended), or the campaign is stopping."""
        first = [r for r in resumptions if r.in_gripper]
        for r in first:
            self._first_move[r.trial.id] = Flag(self.ctx.changed)
            self.launch(r.trial, r)
        ctx = self.ctx
        with ctx.changed:
            ctx.changed.wait_for(
                lambda: (
                    all(self._first_move[r.trial.id].is_set() for r in first)
                    or ctx.estopped.is_set()
                    or ctx.stopping.is_set()
                )
            )

    def _release_robot(self, trial: Trial) -> None:
        self.ctx.res.release_robot(trial.id)
        moved = self._first_move.get(trial.id)
        if moved is not None:
            moved.set()

    # ------------------------------------------------------------------ one trial (a worker thread)
    def walk(self, trial: Trial, resumption: Resumption | None) -> None:
        """Walk one trial through its workflow. ``walk.state`` is the trial's state as this worker last committed
        it: every change is a compare-and-set from it. The trial becomes running when its first physical action is
        about to start (:meth:`_begin`), not while it waits for a station."""
        c = self.ctx
        ex: TrialExecutor | None = None
        held = resumption.held if resumption else None
        location = resumption.location if resumption else c.lab.sample_entry
        start = resumption.start_step if resumption else 0
        walk = Walk(trial, TrialState(trial.state), location, resumption.reattach if resumption else None)
        tc = TrialContext(
            c.campaign.id,
            c.campaign.uid,
            c.campaign.name,
            trial.id,
            trial.number,
            trial.sample_id,
            dict(trial.params),
            location,
        )
        try:
            ex = self.engines.take()
            ex.abort_check = c.cancelled
            if resumption is not None and resumption.evaluate_only:
                c.observer("finished", {"trial": self.evaluate(trial)})
                return
            if held is not None:
                c.res.claim(held, trial.id)
                slots = getattr(c.lab[held], "samples", None)  # a batch station: one sample among others
                signal = getattr(c.lab[held], "sample", None)
                if slots is not None:
                    if trial.sample_id not in (slots.get() or []):
                        slots.put([*(slots.get() or []), trial.sample_id])
                elif signal is not None and not signal.get():
                    signal.put(trial.sample_id)  # the sample is physically there; the new process must know
            if resumption is not None and resumption.cleanup_only:
                c.placed(trial.id)
                self._clear_station(ex, tc, trial, held)
                return
            for index in range(start, len(c.workflow)):
                self.batches.track(trial.id, index, tc.params)
                c.wait_while_paused()
                held = self.step(ex, tc, walk, index, held)
            c.placed(trial.id)
            if c.lease is not None:
                c.lease.check()
            c.store.transition(trial.id, walk.state, S.MEASURED)
            walk.state = S.MEASURED
            c.observer("finished", {"trial": self.evaluate(trial)})
        except LeaseLost:
            pass  # nothing more is written: the lease's new holder resumes the trial
        except StepFailed as exc:
            c.placed(trial.id)
            if c.lease_lost():
                pass  # nothing more is written: the lease's new holder resumes the trial
            elif c.estopped.is_set():
                self._interrupt(trial, walk.state, f"{exc.step.label}: {exc.reason}")
            else:
                done = c.store.transition(
                    trial.id,
                    walk.state,
                    S.FAILED,
                    finished_at=utcnow(),
                    failure_reason=f"{exc.step.label}: {exc.reason}",
                )
                walk.state = S.FAILED
                c.observer("finished", {"trial": done})
                held = tc.location if tc.location in c.res.stations else None  # where its sample sits now
                if isinstance(exc, SampleMismatch):
                    return  # the lab holds another sample than the store says: an operator takes it out
                assert ex is not None  # a step failed: it ran on this executor
                try:
                    self._clear_station(ex, tc, trial, held)
                except Cancelled:
                    pass  # the sample stays recorded where it is; `labloop resume` takes it out
        except Cancelled:
            c.placed(trial.id)
            if (resumption and resumption.cleanup_only) or c.lease_lost():
                pass
            elif not c.estopped.is_set() and walk.state in UNFINISHED and not c.store.steps(trial.id):
                # nothing physical happened to it: cancelled, one word for it live and in the store
                done = c.store.transition(
                    trial.id,
                    walk.state,
                    S.CANCELLED,
                    finished_at=utcnow(),
                    failure_reason="the campaign ended before the trial reached a station",
                )
                c.observer("finished", {"trial": done})
            else:
                self._interrupt(
                    trial,
                    walk.state,
                    "emergency stop"
                    if c.estopped.is_set()
                    else "the campaign stopped while the trial waited for a station",
                )
        except Exception as exc:  # noqa: BLE001 - no worker failure may leave a trial in flight forever
            if c.lease_lost():
                return
            c.alert(
                "trial.internal_error",
                f"trial {trial.number} interrupted by an internal error: "
                f"{type(exc).__name__}: {exc}; `labloop resume` continues it",
                {"trial": trial.number, "error": f"{type(exc).__name__}: {exc}"},
            )
            self._interrupt(trial, walk.state, f"labloop error: {type(exc).__name__}: {exc}")
        finally:
            c.placed(trial.id)
            self.batches.forget(trial.id)
            c.res.release_all(trial.id)
            if trial.id in self._first_move:
                self._first_move[trial.id].set()  # whatever happened, the others may go now
            if ex is not None:
                self.engines.give_back(ex)
            c.wake.set()

    def _begin(self, walk: Walk) -> None:
        """The trial's first physical action is next: it is running from now (committed before anything moves)."""
        c = self.ctx
        if walk.state == S.RUNNING:
            return
        if c.lease is not None:
            c.lease.check()
        first = walk.trial.started_at is None
        fields: dict[str, Any] = {"started_at": utcnow()} if first else {}
        if walk.state == S.INTERRUPTED:
            fields["failure_reason"] = None  # running again: the crash is history (the audit log's trial.resume)
        c.store.transition(walk.trial.id, walk.state, S.RUNNING, **fields)
        walk.state = S.RUNNING
        if first:
            c.store.locate_sample(c.campaign.id, walk.trial.sample_id, walk.location, walk.trial.id)
        c.observer("started", {"trial": walk.trial, "of": c.spec.stopping.max_trials, "location": walk.location})

    def _interrupt(self, trial: Trial, state: TrialState, reason: str) -> None:
        """Leave the trial for `labloop resume` (unless it already ended)."""
        if state not in UNFINISHED or state == S.INTERRUPTED:
            return
        try:
            done = self.ctx.store.transition(trial.id, state, S.INTERRUPTED, failure_reason=reason)
        except IllegalTransition as exc:
            self.ctx.alert("trial.state_conflict", exc.problem, {"trial": trial.number})
            return
        self.ctx.observer("finished", {"trial": done})

    # ------------------------------------------------------------------ one step
    def step(self, ex: TrialExecutor, tc: TrialContext, walk: Walk, index: int, held: str | None) -> str | None:
        """Run one step with its reservations and retries; returns the station now holding the sample."""
        c = self.ctx
        trial = walk.trial
        step = c.workflow[index]
        if step.kind == "transfer":
            dest = step.to or ""
            if dest in c.kinds:
                if held is not None and self._should_park(held, dest):
                    self._begin(walk)
                    self._park(ex, tc, trial, index, held)
                    held = None
                batch = self.batches.join(dest, trial.id, trial.sample_id, tc.params)
                dest = self._reserve(dest, trial, batch=batch)
                c.placed(trial.id)
            self._begin(walk)
            self._take_robot(trial, 0 if held else 1)
            try:
                self.attempts(ex, tc, index, step.robot, dest)
            finally:
                self._release_robot(trial)
            if held is not None and held != dest:
                c.res.release(held, trial.id)
            c.wake.set()
            return dest if dest in c.res.stations else None
        kind = step.device or ""
        if walk.reattach is not None and held is not None:  # the station ran on while no process did: follow it
            members, walk.reattach = walk.reattach, None
            self._begin(walk)
            self.attempts(ex, tc, index, held, None, {"batch": f"{held}-reattached", "samples": members, "reattach": 1})
            return held
        if held is not None and held in c.res.devices_of(kind):
            device = held
        else:
            device = self._reserve(kind, trial)
            c.placed(trial.id)
            c.wait_while_paused()
        self._begin(walk)
        if self.batches.former(kind) is not None:
            self.identity.check(ex.guard, tc, index, device)
            self.batches.run_step(ex, tc, index, device, self.attempts)
            return held
        c.res.mark_busy(device, True)
        try:
            self.identity.check(ex.guard, tc, index, device)
            self._calibrate_if_expired(ex, tc, index, device)
            self.attempts(ex, tc, index, device, None)
        finally:
            ex.verdicts.pop(device, None)  # a verdict is for this step only (executors are reused)
            c.res.mark_busy(device, False)
        return held

    def _calibrate_if_expired(self, ex: TrialExecutor, tc: TrialContext, index: int, device: str) -> None:
        """Campaign option ``lab.calibration.<device>``: before a step on a device whose calibration is older than
        ``max_age``, calibrate it (a recorded step of kind ``calibrate``; its failure fails the trial like a failed
        step) or pause the campaign saying how to calibrate. The device is reserved by this trial already, so no
        other trial uses it meanwhile. After an operator resumes a paused campaign without calibrating, the step
        runs and its reading is flagged ``calibration_expired`` (by the executor)."""
        c = self.ctx
        ex.verdicts[device] = False  # fresh, or calibrated below (the step's flag follows this verdict)
        if not ex.calibration_expired(device):
            return
        policy = c.spec.lab.calibration[device]  # type: ignore[union-attr]  # expired implies a policy
        if policy.on_expiry == "calibrate":
            c.announce_step(tc.number, f"calibrate:{device}", device, None, 1)
            ex.run_calibration(tc, index, device)
            return
        dev = c.lab.devices.get(device)
        age = calibration.age_s(dev)
        in_force = _calibration_id(dev)
        shown = "unknown" if age is None else f"{age:.0f} s"
        c.pause_for_operator(
            f"calibration of '{device}' expired (age {shown} > max_age {policy.max_age:g} s) before trial "
            f"{tc.number}'s step '{c.workflow[index].label}'; calibrate it with "
            f"`labloop calibrate {device} --campaign {c.campaign.id}`, then `labloop resume` (resuming without "
            f"calibrating goes on with readings flagged calibration_expired)"
        )
        c.wake.set()
        c.wait_while_paused()
        if _calibration_id(dev) != in_force and ex.calibration_expired(device):
            # calibrated during the pause (put in force on resume), and expired again before this step could start
            # (a machine that stalled longer than max_age in the lab's time): the policy says pause, so pause again
            # rather than take a reading flagged calibration_expired
            self._calibrate_if_expired(ex, tc, index, device)
        elif _calibration_id(dev) == in_force:
            ex.verdicts[device] = True  # the operator went on without calibrating: the reading is flagged

    def _should_park(self, held: str, next_kind: str) -> bool:
        """Park when the next station is busy and another trial waits for the station this sample blocks."""
        c = self.ctx
        buffers = c.spec.lab.buffers if c.spec.lab else []
        if not buffers or c.res.free(next_kind):
            return False
        held_kind = c.res.stations[held].kind
        return any(kind in (held_kind, held) or held in c.res.devices_of(kind) for kind in list(c.res.waiting.values()))

    def _park(self, ex: TrialExecutor, tc: TrialContext, trial: Trial, index: int, held: str) -> None:
        """Move the sample to a buffer place and free its station for the trial waiting for it."""
        c = self.ctx
        assert c.spec.lab is not None
        place = c.spec.lab.buffers[0]
        self._take_robot(trial, 0)
        try:
            ex.run_step(tc, index, None, place, park=True)
        finally:
            self._release_robot(trial)
        c.res.release(held, trial.id)
        c.wake.set()

    def _take_robot(self, trial: Trial, priority: int) -> None:
        """Take the robot, but never start a move while the campaign is paused."""
        c = self.ctx
        while True:
            c.wait_while_paused()
            c.res.acquire_robot(trial.id, priority)
            if not c.paused.is_set():
                return
            c.res.release_robot(trial.id)

    def attempts(
        self,
        ex: TrialExecutor,
        tc: TrialContext,
        index: int,
        device: str,
        dest: str | None,
        batch: dict[str, Any] | None = None,
    ) -> str | None:
        """Run step ``index`` until it succeeds or its retries are spent (or its station is quarantined); the
        backoff between attempts is in the device's time (real seconds for a real device) and ends at an
        emergency stop. ``batch``: the leader of a batch runs the station for every member (see
        :mod:`labloop.run.batch_steps`). Returns the run uid of the attempt that succeeded."""
        c = self.ctx
        step = c.workflow[index]
        for attempt in range(1, step.retries + 2):
            if c.cancelled():
                raise Cancelled()
            station = step.kind != "transfer"  # robot moves are not station health
            c.announce_step(tc.number, step.label, device, dest, attempt)
            try:
                # a plain step calls run_step as it always did (an executor without batch support still works)
                if batch is None:
                    uid = ex.run_step(tc, index, device if station else None, dest, attempt)
                else:
                    uid = ex.run_step(tc, index, device, dest, attempt, batch=batch)
                if station:
                    c.res.record(device, True)
                return uid
            except StepFailed as exc:
                if c.estopped.is_set():
                    raise  # an emergency stop is not the station's fault
                quarantined = station and c.res.record(device, False, exc.reason)
                if attempt > step.retries or quarantined:
                    raise
                c.store.audit(
                    c.campaign.id,
                    "step.retry",
                    {"trial": tc.number, "step": step.label, "attempt": attempt, "reason": exc.reason},
                    "labloop",
                )
                delay = step.retry_backoff * 2 ** (attempt - 1) / c.lab.time_scale(device, c.time_scale)
                if c.estopped.wait(delay):
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _clear_station(self, ex: TrialExecutor, tc: TrialContext, trial: Trial, held: str | None) -> None:
        """After a failure, take the sample out of the station it blocks (to the workflow's last place). The move
        is a recorded step, committed before the robot moves, so a crash in the middle is resumed like any other."""
        c = self.ctx
        if held is None:
            return
        places = [s.to for s in c.workflow if s.kind == "transfer" and s.to not in c.kinds and s.to]
        if not places:
            return
        robot = _robot_out_of(c.workflow, held, c.kinds)
        c.res.claim(held, trial.id)
        self._take_robot(trial, 0)
        try:
            ex.run_cleanup(tc, robot, places[-1])
        except StepFailed as exc:  # a stuck sample takes its station out of service, not the lab
            c.res.quarantine(held, f"failed sample {tc.sample_id} is stuck in it ({exc.reason})")
        finally:
            self._release_robot(trial)

    # ------------------------------------------------------------------ stations
    def _reserve(self, kind: str, trial: Trial, device: str | None = None, batch: str | None = None) -> str:
        """Reserve a station (a batch station: the one of ``batch``); when none of the kind is in service, pause the
        campaign for an operator."""
        c = self.ctx
        while True:
            try:
                return c.res.reserve(kind, trial.id, device, batch)
            except NoStationLeft as exc:
                if c.stopping.is_set():
                    raise Cancelled() from None  # the campaign ends; this trial cannot finish
                call_operator(c, exc)
                c.wake.set()
                c.wait_while_paused()


def _robot_out_of(workflow: list[Any], station: str, kinds: dict[str, list[str]]) -> str:
    """The robot that takes a sample out of ``station`` in the workflow (the next move after the one into it): the
    arm that reaches it, and the one whose record knows where in it the sample sits (a furnace's slots). The first
    move's robot when the workflow never moves into it."""
    names = {station} | {k for k, devices in kinds.items() if station in devices}
    moves = [s for s in workflow if s.kind == "transfer"]
    into = next((i for i, s in enumerate(moves) if s.to in names), None)
    after = moves[into + 1 :] if into is not None else []
    return str((after or moves)[0].robot)


def call_operator(ctx: RunContext, exc: NoStationLeft) -> None:
    """No station of a kind is left in service: pause for an operator, saying how to go on."""
    ctx.pause_for_operator(
        f"no '{exc.kind}' station left in service ({exc.detail}); fix one, then "
        f"run `labloop resume` to put the stations back in service"
    )


def _calibration_id(device: Any) -> Any:
    """The id of the calibration in force on ``device`` (None when it has none or cannot tell)."""
    cal = getattr(device, "calibration", None)
    return cal.get("id") if isinstance(cal, dict) else None
