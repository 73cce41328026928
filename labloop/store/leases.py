"""Campaign leases: which runner may act on a campaign, until when (table ``leases``, schema 7).

Why: several runners (daemons on different machines) share one store. A campaign is driven by one of them at a
time; when that one dies, another may take the campaign over, but only once its lease has expired, so that two
runners never act on one campaign at once. The row's ``token`` is a fencing token: it grows with every new
holder, so a runner that was paused past its expiry and then tries to renew learns that it lost the campaign.

Every operation is one atomic statement on both SQLite and PostgreSQL (``INSERT ... ON CONFLICT DO UPDATE ...
WHERE`` and ``UPDATE ... WHERE``, with ``RETURNING``); times are the database server's clock on PostgreSQL (runners
on several machines compare against one clock) and this machine's UTC clock on SQLite (a file store is shared by
processes of one machine only). A released lease keeps its row (expired at once), so tokens keep growing.

The API a daemon needs (a mixin of :class:`~labloop.store.repository.Store`)::

    token = store.acquire_lease(campaign_id, holder, ttl)   # or LeaseHeld naming the holder and the expiry
    store.renew_lease(campaign_id, holder, token, ttl)       # or LeaseLost: someone else holds it now
    store.release_lease(campaign_id, holder, token)          # on a clean end: free for anyone at once
    store.takeover_candidates()                              # unfinished campaigns whose lease has expired
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from labloop.errors import LabloopError

from .schema import Campaign, Lease
from .times import utc

#: Campaign states a runner may take over (the others have ended).
UNFINISHED_CAMPAIGN = ("running", "paused")


class LeaseHeld(LabloopError):
    """Another runner holds the campaign's lease and it has not expired."""


class LeaseLost(LabloopError):
    """The runner's lease was taken over (its token is no longer the campaign's) or has expired."""


class LeaseInfo(NamedTuple):
    campaign_id: int
    holder: str
    token: int
    acquired_at: datetime
    expires_at: datetime


class Leases:
    """Lease operations; mixed into the Store (which provides ``engine`` and ``session``)."""

    engine: Any

    def session(self) -> Any:  # provided by the Store
        raise NotImplementedError

    def _db_now(self, s: Session) -> Any:
        """Now, on the clock every runner of this store shares: the server's (PostgreSQL) or UTC here (SQLite)."""
        if self.engine.dialect.name == "postgresql":
            return s.scalar(select(_pg_now()))
        return datetime.now(UTC)

    def acquire_lease(self, campaign_id: int, holder: str, ttl: float) -> int:
        """Take the campaign's lease for ``ttl`` seconds: insert it, or take it over if it has expired (or is
        this holder's own). Returns the fencing token, which grows with every new holder. Raises
        :class:`LeaseHeld` (naming the holder and the expiry) while someone else holds it."""
        if not ttl > 0:
            raise ValueError(f"a lease's ttl must be positive, not {ttl!r}")
        with self.session() as s:
            now = self._db_now(s)
            until = now + timedelta(seconds=float(ttl))
            ins = self._insert(Lease).values(
                campaign_id=campaign_id, holder=holder, token=1, acquired_at=now, expires_at=until
            )
            mine = (Lease.holder == ins.excluded.holder) & (Lease.expires_at > now)
            stmt = ins.on_conflict_do_update(
                index_elements=[Lease.campaign_id],
                set_={
                    "holder": ins.excluded.holder,
                    "expires_at": ins.excluded.expires_at,
                    "token": case((mine, Lease.token), else_=Lease.token + 1),
                    "acquired_at": case((mine, Lease.acquired_at), else_=ins.excluded.acquired_at),
                },
                where=(Lease.expires_at <= now) | (Lease.holder == ins.excluded.holder),
            ).returning(Lease.token)
            token = s.scalar(stmt)
            if token is not None:
                return int(token)
            row = s.get(Lease, campaign_id)
        left = (utc(row.expires_at) - utc(now)).total_seconds() if row is not None else 0.0
        raise LeaseHeld(
            f"campaign {campaign_id} is leased to runner '{row.holder if row else '?'}' until "
            f"{utc(row.expires_at).isoformat() if row else '?'} ({left:.1f} s from now)",
            "wait for it to end or for its lease to expire (a runner that died loses it then), or "
            "stop that runner first",
        )

    def renew_lease(self, campaign_id: int, holder: str, token: int, ttl: float) -> datetime:
        """Extend this holder's lease to now + ``ttl``; returns the new expiry. Raises :class:`LeaseLost` when the
        campaign's lease is no longer ``(holder, token)``: another runner took it over."""
        with self.session() as s:
            now = self._db_now(s)
            until = now + timedelta(seconds=float(ttl))
            done = s.scalar(
                update(Lease)
                .where(Lease.campaign_id == campaign_id, Lease.holder == holder, Lease.token == token)
                .values(expires_at=until)
                .returning(Lease.expires_at)
            )
            if done is not None:
                return utc(done)
            row = s.get(Lease, campaign_id)
        who = f"runner '{row.holder}' (token {row.token})" if row is not None else "nobody"
        raise LeaseLost(
            f"the lease of campaign {campaign_id} is no longer this runner's (token {token}): it is held by {who}",
            "this runner stops acting on the campaign; the holder continues it",
        )

    def release_lease(self, campaign_id: int, holder: str, token: int) -> bool:
        """Give the lease up (a clean end): it expires now, so anyone may take it at once; the row and its token
        stay. False when it was not this holder's any more."""
        with self.session() as s:
            now = self._db_now(s)
            res = s.execute(
                update(Lease)
                .where(Lease.campaign_id == campaign_id, Lease.holder == holder, Lease.token == token)
                .values(expires_at=now)
            )
            return bool(res.rowcount)

    def lease(self, campaign_id: int) -> LeaseInfo | None:
        with self.session() as s:
            row = s.get(Lease, campaign_id)
            return None if row is None else _info(row)

    def expired_leases(self) -> list[LeaseInfo]:
        """Every lease whose expiry has passed (released ones included), oldest expiry first."""
        with self.session() as s:
            now = self._db_now(s)
            rows = s.scalars(select(Lease).where(Lease.expires_at <= now).order_by(Lease.expires_at))
            return [_info(r) for r in rows]

    def takeover_candidates(self) -> list[LeaseInfo]:
        """Campaigns a daemon may take over: still running or paused in the store, lease expired (their runner
        died, hung or lost the store). Take one with :meth:`acquire_lease` (atomic: of several daemons that try,
        one wins) and then resume it."""
        with self.session() as s:
            now = self._db_now(s)
            rows = s.scalars(
                select(Lease)
                .join(Campaign, Campaign.id == Lease.campaign_id)
                .where(Lease.expires_at <= now, Campaign.state.in_(UNFINISHED_CAMPAIGN))
                .order_by(Lease.expires_at)
            )
            return [_info(r) for r in rows]

    def _insert(self, table: Any) -> Any:
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)


def _pg_now() -> Any:
    from sqlalchemy import func

    return func.clock_timestamp()


def _info(row: Lease) -> LeaseInfo:
    return LeaseInfo(row.campaign_id, row.holder, int(row.token), utc(row.acquired_at), utc(row.expires_at))
