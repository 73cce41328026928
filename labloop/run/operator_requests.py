"""Operator requests, answered by a thread of their own: an emergency stop first, then pause, resume, stop, approve
and reject, each answered in the store with what happened or why it was refused.

Why a thread of its own and not the control loop: the control loop's pass re-reads every trial, and at a high
``time_scale`` the RunEngines' callbacks make each GIL handoff of that read slow, so a request would wait for the
end of a pass (tens to hundreds of ms). The request thread changes ``paused``, ``need_operator``, ``estopped`` and
``stop_requested`` on the :class:`~labloop.run.context.RunContext`, and launches the trials an operator approves;
whatever it changes, it wakes the control loop. A launch racing a pause is harmless: every worker checks ``paused``
before each physical action.

Between two looks at the store it waits on one object, its *bell* (anything with ``wait(timeout) -> bool`` and
``set()``): by default a :class:`LocalBell` nobody outside this process rings, so requests are found by polling
every ``REQUEST_POLL_S``; a writer that rings the bell (a cross-process wake-up) gets its request served at once.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from labloop.errors import LabloopError
from labloop.states import TrialState
from labloop.store.schema import OperatorRequest, Trial, utcnow

from . import calibration
from .context import RunContext
from .engines import EnginePool

S = TrialState

#: How often the request thread looks for operator requests when nobody rings its bell (an indexed select).
REQUEST_POLL_S = 0.02


class Bell(Protocol):
    """What the request thread waits on between store polls."""

    def wait(self, timeout: float) -> bool:
        """Until rung (True; the ring is consumed) or ``timeout`` seconds passed (False)."""

    def set(self) -> None:
        """Ring: the waiter looks at the store now."""


class LocalBell:
    """A bell rung from within this process (the campaign ending); one ring wakes one wait."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._rung = False

    def wait(self, timeout: float) -> bool:
        with self._cond:
            rung = self._cond.wait_for(lambda: self._rung, timeout)
            self._rung = False
            return rung

    def set(self) -> None:
        with self._cond:
            self._rung = True
            self._cond.notify_all()


class StoreBell:
    """The request thread's bell rung across processes: the store's bell on ``("requests", campaign id)``
    (labloop/store/bell.py: a unix datagram socket on SQLite, LISTEN/NOTIFY on PostgreSQL), which whoever commits a
    request rings after the commit. It listens from construction, so a request committed before the first wait is
    either seen by the first look at the store or rings. With bells off (``LABLOOP_WAKEUPS=0``) it waits the poll
    interval as before; with bells on, at most the store's slow fallback interval between looks."""

    def __init__(self, store: Any, campaign_id: int):
        self._waiter = store.bells.waiter(("requests", int(campaign_id)))

    def wait(self, timeout: float) -> bool:
        return self._waiter.wait(timeout)

    def set(self) -> None:
        self._waiter.interrupt()

    def close(self) -> None:
        self._waiter.close()


class RequestServer:
    """Answers one campaign's operator requests (see the module docstring)."""

    def __init__(
        self,
        ctx: RunContext,
        engines: EnginePool,
        launch: Callable[[Trial], None],
        discard_ask: Callable[[], None] = lambda: None,
        bell: Bell | None = None,
        poll_s: float = REQUEST_POLL_S,
    ):
        self.ctx = ctx
        self.engines = engines
        self.launch = launch  # starts an approved trial's worker
        self.discard_ask = discard_ask  # forget a proposal being computed (an emergency stop)
        self.bell: Bell = bell or LocalBell()
        self.poll_s = poll_s
        self._serving = threading.Lock()  # held while requests are answered: one server at a time
        self._end = threading.Event()  # set: no request is answered any more (the campaign is ending)
        self._announce: list[tuple[str, dict[str, Any]]] = []  # observer events of the request being answered
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="requests", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """No request is answered after this returns (one being answered now is finished first)."""
        with self._serving:
            self._end.set()
        self.bell.set()

    def join(self, timeout: float) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        """Wait on the bell (or REQUEST_POLL_S), then answer what is pending (one indexed select when nothing is)."""
        said = None
        while not self._end.is_set():
            self.bell.wait(self.poll_s)  # the one wait between store polls
            if self._end.is_set():
                return
            try:
                self.serve()
                said = None
            except Exception as exc:  # noqa: BLE001 - a store hiccup: the request stays pending, the next poll retries
                problem = f"{type(exc).__name__}: {exc}"
                if problem != said:  # once per problem, not every poll
                    print(
                        f"labloop: serving operator requests failed, retrying: {problem}", file=sys.stderr, flush=True
                    )
                    said = problem

    # ------------------------------------------------------------------ answering
    def serve(self) -> None:
        """Answer every pending operator request: done with what happened, or refused with why. An emergency stop
        acts straight from the poll, before any other request is even loaded."""
        with self._serving:
            if not self._end.is_set() and not self.ctx.lease_lost():
                self._serve_pending()

    def _serve_pending(self) -> None:
        c = self.ctx
        pending = c.store.pending_actions(c.campaign.id)
        if not pending:
            return
        estop_outcome = None
        if any(action == "estop" for _, action in pending) and not c.estopped.is_set():
            estop_outcome = self.emergency_stop()
        for req in c.store.pending_requests(c.campaign.id):
            if req.action == "estop" and estop_outcome is not None:
                c.store.answer_request(req.id, "done", estop_outcome)
                estop_outcome = "already halted by the emergency stop above"
                continue
            changes: dict[str, Any] = {}  # the campaign row's, committed with the answer
            self._announce = []
            with c.pausing:  # a pause the lab calls for is either wholly before this answer or wholly after it
                try:
                    state, outcome = self.handle(req, changes)
                except LabloopError as exc:
                    state, outcome = "refused", exc.problem
                c.store.answer_request(req.id, state, outcome, campaign=changes)
            for kind, data in self._announce:  # announced once committed: a reader of the event finds it stored
                c.observer(kind, data)

    def handle(self, req: OperatorRequest, changes: dict[str, Any]) -> tuple[str, str]:
        """Carry out one request; what it changes on the campaign row goes in ``changes`` (committed with the
        answer: one transaction, where the write lock is shared with every commit of the running lab)."""
        c = self.ctx
        action = req.action
        if action == "estop":  # a second estop while halted
            return "done", "every device was already told to stop (emergency stop in force)"
        if c.estopped.is_set():
            return "refused", "the campaign is in emergency stop; run `labloop resume` to restart it"
        if action == "stop":
            c.stop_requested = True
            changes.update(control="stop")
            c.wake.set()
            return "done", "stopping: trials in flight finish, nothing new starts"
        if action == "pause":
            if c.stopping.is_set():
                return "refused", "the campaign is ending; in-flight trials finish whatever a pause says"
            if c.paused.is_set():
                return "done", "already paused" + (f" ({c.need_operator})" if c.need_operator else "")
            c.paused.set()
            changes.update(state="paused", control="pause", note="paused by operator")
            self._announce.append(("paused", {"reason": f"paused by {req.user}"}))
            return "done", "paused: steps running now finish, nothing new starts"
        if action == "resume":
            return "done", self._resume(req, changes)
        if action in ("approve", "reject"):
            return "done", self._decide(req)
        return "refused", f"unknown request '{action}' (known: pause, resume, stop, estop, approve, reject)"

    def _resume(self, req: OperatorRequest, changes: dict[str, Any]) -> str:
        c = self.ctx
        if not c.paused.is_set():
            return "the campaign was not paused; it runs"
        restored = c.res.restore() if c.need_operator else []
        if c.spec.lab is not None and c.spec.lab.calibration:
            # a calibration recorded meanwhile (`labloop calibrate` while paused) is put in force here
            restored += [f"{d} (calibration)" for d in calibration.restore(c.store, c.lab)]
        back = [d for d in restored if not d.endswith(" (calibration)")]
        if back:  # the one record that these stations are back in service (the campaign view reads it)
            c.store.audit(c.campaign.id, "station.restore", {"devices": back}, user=req.user)
        c.need_operator = None
        c.paused.clear()
        changes.update(state="running", control="run", note=None)
        self._announce.append(("resumed", {"restored": restored}))
        c.wake.set()
        return "resumed" + (f"; back in service: {', '.join(restored)}" if restored else "")

    def _decide(self, req: OperatorRequest) -> str:
        """Approve or reject proposed trials: all of them or none (each checked before any is changed)."""
        c = self.ctx
        if not c.spec.scheduling.approval:
            raise LabloopError(
                f"campaign '{c.campaign.name}' does not wait for approval (scheduling.approval is false)"
            )
        by_number = {t.number: t for t in c.store.trials(c.campaign.id)}
        numbers = [int(n) for n in req.args.get("trials", [])]
        for n in numbers:
            t = by_number.get(n)
            if t is None:
                raise LabloopError(
                    f"campaign '{c.campaign.name}' has no trial {n} "
                    f"(trials awaiting approval: {_awaiting(by_number.values())})"
                )
            if t.state != S.PROPOSED:
                raise LabloopError(
                    f"trial {n} is {t.state}, not waiting for approval; only proposed trials can be "
                    f"approved or rejected (awaiting now: {_awaiting(by_number.values())})"
                )
        done = []
        for n in numbers:
            t = by_number[n]
            if req.action == "approve":
                t = c.store.transition(t.id, S.PROPOSED, S.APPROVED)
                c.store.audit(c.campaign.id, "trial.approve", {"trial": n}, req.user)
                c.observer("approved", {"trial": t})
                if not c.stopping.is_set():
                    self.launch(t)
            else:
                reason = req.args.get("reason") or "no reason given"
                t = c.store.transition(
                    t.id,
                    S.PROPOSED,
                    S.REJECTED,
                    finished_at=utcnow(),
                    failure_reason=f"rejected by {req.user}: {reason}",
                )
                c.store.audit(c.campaign.id, "trial.reject", {"trial": n, "reason": reason}, req.user)
                c.observer("finished", {"trial": t})
            done.append(n)
        c.wake.set()
        verb = "approved" if req.action == "approve" else "rejected"
        return f"{verb}: trial{'s' if len(done) > 1 else ''} {', '.join(map(str, done))}"

    def emergency_stop(self) -> str:
        """Halt every device now. Cancelling waits and calling ``stop()`` come first; every failure to stop is
        audited and shown (a device that will not stop is the one an operator must go to by hand)."""
        c = self.ctx
        t0 = time.perf_counter()
        c.estopped.set()
        c.cancel_waits()
        failures = c.lab.stop_all()
        self.engines.interrupt_all()  # also ends runs held by a suspender; a failure to halt is alerted
        stop_ms = (time.perf_counter() - t0) * 1000
        self.discard_ask()
        c.store.update_campaign(c.campaign.id, state="estopped", control="estop", note="emergency stop")
        for device, error in failures:
            c.alert(
                "estop.device_failed",
                f"EMERGENCY STOP: device '{device}' did not accept stop(): {error}; make it safe by hand",
                {"device": device, "error": error},
            )
        n = len(c.lab.devices)
        c.observer(
            "alert",
            {"message": f"EMERGENCY STOP: stop() sent to {n - len(failures)} of {n} devices in {stop_ms:.0f} ms"},
        )
        c.wake.set()
        if failures:
            return (
                f"stop() sent to every device in {stop_ms:.0f} ms; {len(failures)} refused: "
                + "; ".join(f"{d}: {e}" for d, e in failures)
                + " (make those safe by hand)"
            )
        return f"every device halted: stop() sent to {n} devices in {stop_ms:.0f} ms"


def _awaiting(trials: Any) -> str:
    nums = [str(t.number) for t in trials if t.state == S.PROPOSED]
    return ", ".join(nums) if nums else "none"
