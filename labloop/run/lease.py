"""The runner's side of a campaign lease (table ``leases``, :mod:`labloop.store.leases`): hold it, renew it with the
heartbeat, and know, before every physical action, whether this process may still act on the campaign.

Why a local deadline as well as the renewal: a runner that cannot reach the store (or is starved of CPU) learns
that it lost the lease only when a renewal fails, which may be too late: another runner may take the campaign the
moment the lease expires. So this runner stops acting on its own clock first: ``SAFETY`` of the ttl before the
lease can expire (counted from when its last successful renewal *started*, so a slow round trip only makes it
stricter). Another runner takes over only after the expiry on the store's clock, so two runners never act on one
campaign at once; the fencing token tells a runner that comes back that it was replaced.

A runner that loses its lease behaves for the store as if it had been killed: it writes nothing more about the
campaign (no step end, no trial state, no heartbeat), interrupts the steps it has running, and ends; the new
holder resumes the campaign as it resumes after a crash.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from labloop.logs import Swallowed
from labloop.store.leases import LeaseHeld, LeaseLost

from .liveness import process_gone

log = logging.getLogger(__name__)
_release_failed = Swallowed(log, "releasing a campaign's lease")

#: Seconds a lease lasts without renewal (the heartbeat renews it every second): a dead runner's campaign can be
#: taken over this long after its last renewal.
DEFAULT_TTL_S = 30.0
#: Share of the ttl before the expiry at which a runner that could not renew stops acting on its own.
SAFETY = 1.0 / 3.0


def holder_name() -> str:
    """This process as a lease holder: ``host:pid:start time:nonce`` (the nonce tells two runners of one process
    apart; host, pid and start time let `labloop resume` see that a holder's process is gone)."""
    from labloop.store.repository import this_runner

    host_pid, started = this_runner()
    return f"{host_pid}:{started:.3f}:{uuid.uuid4().hex[:8]}"


def _holder_process(holder: str) -> tuple[str, int, float] | None:
    parts = holder.rsplit(":", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    try:
        return parts[0], int(parts[1]), float(parts[2])
    except ValueError:
        return None


class CampaignLease:
    """A lease this process holds on one campaign."""

    def __init__(self, store: Any, campaign_id: int, holder: str, token: int, ttl: float, started: float):
        self.store, self.campaign_id, self.holder, self.token, self.ttl = store, campaign_id, holder, token, ttl
        self._valid_until = started + ttl * (1.0 - SAFETY)
        self.lost = threading.Event()
        self.reason = ""
        # renew and release one at a time: a renewal whose UPDATE landed after the release's would hold the lease
        # of a runner that has ended for another ttl (seen: a resume right after an emergency stop was refused)
        self._renewing = threading.Lock()

    @classmethod
    def acquire(
        cls, store: Any, campaign_id: int, ttl: float = DEFAULT_TTL_S, break_dead: bool = True
    ) -> CampaignLease:
        """Take the campaign's lease. With ``break_dead``, a lease still held by a runner whose process is provably
        gone (this host, pid dead or reused) is broken at once rather than waited out (`labloop resume` right after
        a crash); any other live lease raises :class:`~labloop.store.leases.LeaseHeld` naming its holder and
        expiry."""
        holder = holder_name()
        started = time.monotonic()
        try:
            token = store.acquire_lease(campaign_id, holder, ttl)
        except LeaseHeld:
            held = store.lease(campaign_id)
            proc = _holder_process(held.holder) if held is not None else None
            if not break_dead or held is None or proc is None or not process_gone(*proc):
                raise
            store.release_lease(campaign_id, held.holder, held.token)  # compare-and-set: only that holder's
            started = time.monotonic()
            token = store.acquire_lease(campaign_id, holder, ttl)
        return cls(store, campaign_id, holder, token, ttl, started)

    def renew(self) -> bool:
        """Extend the lease (the heartbeat calls it every second). False once it is lost: taken over by another
        runner, or not renewed before the local deadline. A store that does not answer is not yet a loss."""
        with self._renewing:
            if self.lost.is_set():
                return False
            started = time.monotonic()
            try:
                self.store.renew_lease(self.campaign_id, self.holder, self.token, self.ttl)
            except LeaseLost as exc:
                self._lose(exc.problem)
                return False
            except Exception:  # noqa: BLE001 - the store is unreachable for now: the deadline decides
                return self.ok()
            self._valid_until = started + self.ttl * (1.0 - SAFETY)
        return self.ok()

    def ok(self) -> bool:
        """May this process still act on the campaign?"""
        if self.lost.is_set():
            return False
        if time.monotonic() >= self._valid_until:
            self._lose(
                f"the lease of campaign {self.campaign_id} could not be renewed for "
                f"{self.ttl * (1 - SAFETY):.1f} s (store unreachable or this process starved)"
            )
            return False
        return True

    def check(self) -> None:
        """Raise :class:`~labloop.store.leases.LeaseLost` unless this process may still act on the campaign."""
        if not self.ok():
            raise LeaseLost(
                self.reason,
                "this runner stopped acting on the campaign; its new holder (or `labloop resume`) continues it",
            )

    def release(self) -> None:
        """A clean end: free the campaign at once (nothing of this process acts on it any more)."""
        with self._renewing:  # after a renewal in flight, so that this is the last word
            if self.lost.is_set():
                return
            self.lost.set()
            self.reason = "released"
            try:
                self.store.release_lease(self.campaign_id, self.holder, self.token)
            except Exception as exc:  # noqa: BLE001 - it expires by itself
                _release_failed(exc)

    def _lose(self, reason: str) -> None:
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()

    def seconds_left(self) -> float:
        """Seconds until this process stops acting on its own clock unless a renewal succeeds first (0 if lost)."""
        return 0.0 if self.lost.is_set() else max(0.0, self._valid_until - time.monotonic())


class LeaseKeeper:
    """The runner's heartbeat thread: once a second it renews the lease (when one is kept) and writes the runner's
    sign of life (with why the campaign waits, if it does), so a busy control loop is never mistaken for a dead
    one. When the lease is lost it calls ``on_lost`` once (interrupt the runs, unblock the waits, wake the
    control loop) and stops beating: the campaign's new holder beats for it.

    Why a thread of its own: a sign of life that nothing else in the process can delay."""

    def __init__(
        self,
        store: Any,
        campaign_id: int,
        lease: CampaignLease | None,
        on_lost: Any,
        note: Any = lambda: None,
        interval: float = 1.0,
    ):
        self.store, self.campaign_id, self.lease = store, campaign_id, lease
        self.on_lost = on_lost  # () -> None, from the heartbeat thread
        self.note = note  # () -> str | None: why the campaign waits (shown with the heartbeat)
        self.interval = interval
        self._end = threading.Event()
        self._failed = Swallowed(log, f"campaign {campaign_id}'s heartbeat")
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._end.set()

    def lost(self) -> bool:
        return self.lease is not None and not self.lease.ok()

    def _beat(self) -> None:
        while True:
            if self.lease is not None and not self.lease.renew():
                self.on_lost()
                return
            try:
                self.store.heartbeat(self.campaign_id, self.note())
            except Exception as exc:  # noqa: BLE001 - a missed beat is harmless; the next one retries
                self._failed(exc)
            if self._end.wait(self.interval):
                return
