"""What the parts of a running campaign share: its collaborators, its flags, and the bookkeeping several threads read.

Why one object: the scheduler's parts (:mod:`~labloop.run.control_loop`, :mod:`~labloop.run.operator_requests`,
:mod:`~labloop.run.walk`, :mod:`~labloop.run.lease`'s keeper, :mod:`~labloop.run.failures`) each own a job, but a
pause set by one must hold back the others, and an emergency stop must reach all of them. Each part is handed this
context explicitly (no part knows the others' classes), so a unit test builds one with fakes and drives one part.

Who may change what (the rest only reads):

* ``stopping``: the control loop alone;
* ``paused`` / ``need_operator``: the request thread (pause, resume) and any part calling for an operator
  (:meth:`RunContext.pause_for_operator`), the first reason wins; both under ``pausing``, with the store's row;
* ``estopped``: the request thread (emergency stop); ``stop_requested``: the request thread;
* ``unplaced`` / ``launched``: whoever launches a trial and the trial's worker, under ``lock``.

Every flag is a :class:`Flag` on one condition (``changed``), so a thread that waits for "not paused, or cancelled"
waits on that condition and is woken by the change itself: no part sleep-polls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from labloop.spec import CampaignSpec
from labloop.store import Store
from labloop.store.schema import Campaign

from .resources import Cancelled, LabResources

Observer = Callable[[str, dict[str, Any]], None]


class Flag:
    """An :class:`threading.Event` whose changes notify a shared condition, so one wait can watch several flags
    (``changed.wait_for(lambda: not paused.is_set() or estopped.is_set())``) and never miss a change."""

    def __init__(self, changed: threading.Condition):
        self._changed = changed
        self._on = False

    def is_set(self) -> bool:
        return self._on

    def set(self) -> None:
        with self._changed:
            self._on = True
            self._changed.notify_all()

    def clear(self) -> None:
        with self._changed:
            self._on = False
            self._changed.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Until set (True) or ``timeout`` seconds passed (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._on, timeout)


class RunContext:
    """One campaign's run: collaborators (spec, lab, store, campaign, lease, observer), the lab's resources, the
    shared flags and the trial bookkeeping. Built by :class:`~labloop.run.scheduler.Scheduler` (or a test)."""

    def __init__(
        self,
        *,
        spec: CampaignSpec,
        lab: Any,
        store: Store,
        campaign: Campaign,
        kinds: dict[str, list[str]],
        observer: Observer | None = None,
        lease: Any = None,
    ):
        self.spec, self.lab, self.store, self.campaign, self.lease = spec, lab, store, campaign, lease
        self.observer: Observer = observer or (lambda kind, data: None)
        self.time_scale = spec.lab.time_scale if spec.lab else 1.0
        self.kinds = kinds
        self.workflow = spec.workflow
        capacity = {k: b.capacity for k, b in spec.lab.batching.items()} if spec.lab else {}
        self.res = LabResources(kinds, spec.scheduling.quarantine_after, self._on_quarantine, capacity)
        self.first_kind = first_kind(spec, kinds)
        self.wake = threading.Event()  # any change the control loop should look at: a worker, a proposal, a request
        self.changed = threading.Condition()  # notified by every Flag below
        self.paused = Flag(self.changed)
        self.estopped = Flag(self.changed)
        self.stopping = Flag(self.changed)  # a stopping rule fired: finish in-flight trials, start nothing
        self.need_operator: str | None = None
        self.stop_requested = False  # an operator's stop was accepted
        self.lock = threading.Lock()
        # held while the lab pauses itself and while a request is answered: an operator's resume that reads the
        # store's "paused" then finds the flag set too (taken before ``lock``, never while holding it)
        self.pausing = threading.RLock()
        self.unplaced: set[int] = set()  # launched trials not yet holding their first station (guarded by lock)
        self.launched: set[int] = set()  # launched trials (guarded by lock)

    # ------------------------------------------------------------------ alerts and pauses
    def _on_quarantine(self, device: str, reason: str) -> None:
        self.store.audit(self.campaign.id, "station.quarantine", {"device": device, "reason": reason}, user="labloop")
        self.observer(
            "alert",
            {
                "message": f"station {device} taken out of service: {reason}",
                "device": device,
                "action": "station.quarantine",
            },
        )

    def alert(self, action: str, message: str, detail: dict[str, Any]) -> None:
        """A safety-relevant event: audited, shown to the operator, never swallowed."""
        try:
            self.store.audit(self.campaign.id, action, {**detail, "message": message}, user="labloop")
        finally:
            self.observer("alert", {"message": message})

    def announce_step(self, number: int, step: str, device: str | None, dest: str | None, attempt: int) -> None:
        """Tell the watchers (``watch``, the stream, the dashboard) that trial ``number`` starts ``step``: one
        payload for a plain step, a calibration and a batch member's wait, so every surface reads the same fields."""
        self.observer(
            "step",
            {
                "trial": number,
                "of": self.spec.stopping.max_trials,
                "step": step,
                "device": device,
                "to": dest,
                "attempt": attempt,
            },
        )

    def pause_for_operator(self, reason: str) -> None:
        """Pause the campaign with the reason, until an operator's resume request lifts it. Called from the
        control thread or a worker; the first reason wins. The flag is set and the store written under ``pausing``,
        which the request thread holds while it answers: a resume sent the moment the store says "paused" (a
        script, the dashboard) is answered after both, never in between, where it would find nothing paused and
        leave the campaign paused for good."""
        with self.pausing:  # no resume is answered between the flag and the store saying "paused"
            with self.lock:
                if self.need_operator is not None:
                    return
                self.need_operator = reason
            self.paused.set()
            self.store.update_campaign(self.campaign.id, state="paused", control="pause", note=reason)
            self.store.audit(self.campaign.id, "campaign.pause", {"reason": reason}, user="labloop")
        self.observer("alert", {"message": reason})

    # ------------------------------------------------------------------ lease, cancellation, waits
    def lease_lost(self) -> bool:
        return self.lease is not None and not self.lease.ok()

    def cancelled(self) -> bool:
        return self.estopped.is_set() or self.res.cancelled.is_set()

    def cancel_waits(self) -> None:
        """End every wait for a station, the robot or a resume (with :class:`Cancelled`)."""
        self.res.cancel()
        with self.changed:
            self.changed.notify_all()

    def wait_while_paused(self) -> None:
        """Block while the campaign is paused; raise :class:`Cancelled` if it is cancelled meanwhile. A wait on
        ``changed``: the resume (or the cancellation) wakes it."""
        with self.changed:
            self.changed.wait_for(lambda: not self.paused.is_set() or self.cancelled())
        if self.cancelled():
            raise Cancelled()

    def placed(self, trial_id: int) -> None:
        """The trial holds its first station (or will never need one): its slot is no longer promised."""
        with self.lock:
            if trial_id not in self.unplaced:
                return
            self.unplaced.discard(trial_id)
        self.wake.set()


def first_kind(spec: CampaignSpec, kinds: dict[str, list[str]]) -> str | None:
    """The station kind (or device) a trial's first physical step needs."""
    for step in spec.workflow:
        if step.kind == "transfer" and step.to in kinds:
            return step.to
        if step.kind != "transfer":
            return step.device
    return None
