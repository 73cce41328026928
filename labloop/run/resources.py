"""Shared lab resources: interchangeable stations by kind, and the robot, with reservations and quarantine.

One condition variable guards all of it, so a waiter can never miss the wake-up of a release. A trial holds at most
one station at a time (it reserves the next before the robot moves the sample, and frees the previous once the
sample has left), the robot is held only for a single move and never while waiting for a station, and places
(racks, storage) always have room, so the samples in a lab whose workflow visits each kind once always drain:
no deadlock even when every station is full. Robot requests that empty a station go first, so a bottleneck
station never waits for the robot behind a move that could have waited.

A batch station (``capacity`` > 1, ``lab.batching``) takes the samples of one batch
(:mod:`labloop.run.batching`): several trials hold it at once, all with the same batch id, up to its capacity; a
trial of another batch waits until every member has left. Why here and not in the walker: the same one condition
then guards "who may put a sample into this furnace", so two batches can never share a firing. A station of
capacity 1 keeps exactly one holder, as before.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class NoStationLeft(Exception):
    """Every station of a kind is out of service: the campaign must pause until an operator fixes one."""

    def __init__(self, kind: str, detail: str):
        self.kind, self.detail = kind, detail
        super().__init__(f"no '{kind}' station in service ({detail})")


class Cancelled(Exception):
    """A wait was abandoned because the campaign is stopping (emergency stop)."""


@dataclass
class StationState:
    kind: str
    holder: int | None = None  # trial id (a batch station: the first of its holders)
    capacity: int = 1  # samples it takes at once (> 1: a batch station, held by the members of one batch)
    holders: set[int] = field(default_factory=set)  # a batch station: every trial whose sample it holds
    batch: str | None = None  # a batch station: the batch its holders belong to
    in_service: bool = True
    consecutive_failures: int = 0
    reason: str = ""
    busy_since: float | None = None
    busy_seconds: float = 0.0


@dataclass(order=True)
class _RobotRequest:
    priority: int
    seq: int
    trial: int = field(compare=False)


class LabResources:
    """Station reservations by kind, station health, and the robot's priority lock."""

    def __init__(
        self,
        kinds: dict[str, list[str]],
        quarantine_after: int,
        on_quarantine: Callable[[str, str], None] | None = None,
        capacity: dict[str, int] | None = None,
    ):
        self.cond = threading.Condition()
        self.kinds = {k: list(v) for k, v in kinds.items()}
        self.stations: dict[str, StationState] = {}
        for kind, devices in self.kinds.items():
            for d in devices:
                self.stations.setdefault(d, StationState(kind))
        for kind, n in (capacity or {}).items():  # by kind, or by device
            for d in self.kinds.get(kind, []):
                self.stations[d].capacity = max(self.stations[d].capacity, n)
        self.quarantine_after = quarantine_after
        self.on_quarantine = on_quarantine or (lambda device, reason: None)
        self.cancelled = threading.Event()
        self._robot_holder: int | None = None
        self._robot_queue: list[_RobotRequest] = []
        self._seq = itertools.count()
        self.waiting: dict[int, str] = {}  # trial -> kind it waits for
        self._cancelled_trials: set[int] = set()

    # ------------------------------------------------------------------ stations
    def devices_of(self, kind: str) -> list[str]:
        return self.kinds.get(kind, [])

    def free(self, kind: str) -> list[str]:
        with self.cond:
            return [d for d in self.devices_of(kind) if self.stations[d].in_service and self.stations[d].holder is None]

    def _takes(self, st: StationState, trial: int, batch: str | None) -> bool:
        """May ``trial`` (a member of ``batch``, or of none) hold ``st`` now?"""
        if st.capacity == 1:
            return st.holder is None or st.holder == trial
        if trial in st.holders or not st.holders:
            return True
        return batch is not None and st.batch == batch and len(st.holders) < st.capacity

    def _hold(self, st: StationState, trial: int, batch: str | None) -> None:
        """``trial`` holds ``st`` (a batch station without a batch: alone, as a batch of its own)."""
        if st.capacity == 1:
            st.holder = trial
            return
        st.holders.add(trial)
        st.batch = batch or st.batch or f"alone-{trial}"
        st.holder = min(st.holders)

    def in_service(self, kind: str) -> list[str]:
        with self.cond:
            return [d for d in self.devices_of(kind) if self.stations[d].in_service]

    def out_of_service(self, kind: str) -> str:
        with self.cond:
            return self._out_detail(kind)

    def _out_detail(self, kind: str) -> str:
        return "; ".join(f"{d}: {self.stations[d].reason or 'out of service'}" for d in self.devices_of(kind))

    def reserve(self, kind: str, trial: int, device: str | None = None, batch: str | None = None) -> str:
        """Block until a station of ``kind`` (or exactly ``device``) is free and in service; hold it for ``trial``.
        With ``batch`` (a batch station): the station that already holds that batch if it has room, else an empty
        one, so every member's sample goes into the one station that fires them together."""
        with self.cond:
            self.waiting[trial] = kind
            try:
                while True:
                    if self.cancelled.is_set() or trial in self._cancelled_trials:
                        raise Cancelled()
                    candidates = [device] if device else self.devices_of(kind)
                    if not any(self.stations[d].in_service for d in candidates):
                        raise NoStationLeft(kind, self._out_detail(kind))
                    if batch is not None:  # the batch's own station first, then an empty one
                        candidates = sorted(candidates, key=lambda d: self.stations[d].batch != batch)
                    for d in candidates:
                        st = self.stations[d]
                        if st.in_service and self._takes(st, trial, batch):
                            self._hold(st, trial, batch)
                            return d
                    self.cond.wait(0.5)  # a safety net only: every release, quarantine or cancellation notifies
            finally:
                self.waiting.pop(trial, None)
                self.cond.notify_all()

    def claim(self, device: str, trial: int) -> None:
        """Hold ``device`` for ``trial`` at once, in or out of service: its sample is physically in it (a batch
        station: beside the other samples of its batch, up to its capacity; resume does not know the batch id, so
        the claim keeps whatever batch the station holds)."""
        with self.cond:
            st = self.stations[device]
            if st.capacity > 1:
                if trial not in st.holders and len(st.holders) >= st.capacity:
                    raise RuntimeError(f"{device} already holds {len(st.holders)} samples (its capacity)")
                self._hold(st, trial, st.batch)
                return
            if st.holder not in (None, trial):
                raise RuntimeError(f"{device} is already held by trial id {st.holder}")
            st.holder = trial

    def _drop(self, st: StationState, trial: int) -> bool:
        """``trial`` no longer holds ``st``; True when that changed anything."""
        if st.capacity > 1 and trial in st.holders:
            st.holders.discard(trial)
            st.holder = min(st.holders) if st.holders else None
            if not st.holders:
                st.batch = None
            return True
        if st.holder == trial:
            st.holder = None
            return True
        return False

    def release(self, device: str, trial: int) -> None:
        with self.cond:
            st = self.stations.get(device)
            if st is not None and self._drop(st, trial):
                self.cond.notify_all()

    def release_all(self, trial: int) -> None:
        with self.cond:
            for st in self.stations.values():
                self._drop(st, trial)
            self.cond.notify_all()

    def record(self, device: str, ok: bool, reason: str = "") -> bool:
        """Count a step's outcome on ``device``; True when this failure took the station out of service."""
        with self.cond:
            st = self.stations.get(device)
            if st is None:
                return False
            if ok:
                st.consecutive_failures = 0
                return False
            st.consecutive_failures += 1
            if not (st.in_service and st.consecutive_failures >= self.quarantine_after):
                return False
        self.quarantine(device, f"quarantined after {st.consecutive_failures} consecutive failures (last: {reason})")
        return True

    def quarantine(self, device: str, reason: str) -> None:
        """Take ``device`` out of service now (e.g. a sample is stuck in it)."""
        with self.cond:
            st = self.stations[device]
            was = st.in_service
            st.in_service, st.reason = False, reason
            self.cond.notify_all()
        if was:
            self.on_quarantine(device, reason)

    def restore(self, device: str | None = None) -> list[str]:
        """Put quarantined stations back in service (an operator fixed them); returns the ones restored."""
        with self.cond:
            out = []
            for name, st in self.stations.items():
                if (device is None or name == device) and not st.in_service:
                    st.in_service, st.consecutive_failures, st.reason = True, 0, ""
                    out.append(name)
            self.cond.notify_all()
            return out

    def mark_busy(self, device: str, busy: bool) -> None:
        """Processing time bookkeeping for utilization figures."""
        with self.cond:
            st = self.stations.get(device)
            if st is None:
                return
            now = time.monotonic()
            if busy:
                st.busy_since = now
            elif st.busy_since is not None:
                st.busy_seconds += now - st.busy_since
                st.busy_since = None

    # ------------------------------------------------------------------ robot
    def acquire_robot(self, trial: int, priority: int) -> None:
        """Take the robot for one move. Lower ``priority`` goes first (0: a move that empties a station)."""
        with self.cond:
            req = _RobotRequest(priority, next(self._seq), trial)
            self._robot_queue.append(req)
            try:
                while True:
                    if self.cancelled.is_set() or trial in self._cancelled_trials:
                        raise Cancelled()
                    if self._robot_holder is None and min(self._robot_queue) is req:
                        self._robot_holder = trial
                        return
                    self.cond.wait(0.5)  # a safety net only: every change of holder, queue or cancellation notifies
            finally:
                self._robot_queue.remove(req)
                self.cond.notify_all()  # a request that leaves the head of the queue (cancelled) lets the next go

    def release_robot(self, trial: int) -> None:
        with self.cond:
            if self._robot_holder == trial:
                self._robot_holder = None
                self.cond.notify_all()

    def cancel_trial(self, trial: int) -> None:
        """Make ``trial``'s waits (for a station or the robot) end with :class:`Cancelled`."""
        with self.cond:
            self._cancelled_trials.add(trial)
            self.cond.notify_all()

    def cancel(self) -> None:
        self.cancelled.set()
        with self.cond:
            self.cond.notify_all()
