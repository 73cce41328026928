"""The audit log as a hash chain: each row carries the previous row's hash and its own, sha256 over that and a
canonical JSON of its content, so that altering, deleting or reordering a row breaks the chain at that row.

Why appends are serialized: two writers (the daemon and a campaign child, two daemons on one PostgreSQL) reading
the same tip would fork the chain. On PostgreSQL an advisory transaction lock is taken before the row's id is
drawn (so ids grow in chain order); on SQLite the row's INSERT itself takes the database's single write lock, and
the tip is read after it, inside the same transaction. The tip (``id:hash`` of the last row) is also kept in
``labloop_meta`` so that deleting the last rows is noticed too.

What it does not do: someone who can write the database freely can recompute the whole chain. Copy the tip
(``labloop audit --verify`` prints it) somewhere else to make that visible as well.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select, text, update
from sqlalchemy.orm import Session

from .schema import AuditEntry, Meta, utcnow
from .times import utc

AUDIT_LOCK = 0x6C61626D  # 'labm': PostgreSQL advisory lock held while a row is appended to the audit chain
TIP_KEY = "audit_tip"
#: The columns a row's hash covers (named, so that a later column added to ``audit`` changes no hash).
CHAINED = ("id", "campaign_id", "at", "user", "role", "address", "action", "detail", "outcome")


def iso(at: datetime) -> str:
    """A timestamp as the chain hashes it: UTC, microseconds (SQLite hands back naive UTC, PostgreSQL aware)."""
    return utc(at).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(r: Any) -> str:
    """The content of an audit row (ORM object or Core row with the same names) as canonical JSON."""
    content = {name: getattr(r, name) for name in CHAINED}
    content["at"] = iso(r.at)
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_hash(prev_hash: str | None, r: Any) -> str:
    return hashlib.sha256(((prev_hash or "") + canonical(r)).encode("utf-8")).hexdigest()


def lock(s: Session) -> None:
    """Wait for our turn to append (PostgreSQL); SQLite's turn comes with the INSERT's write lock."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK})


def append(
    s: Session,
    *,
    campaign_id: int | None,
    user: str,
    action: str,
    detail: dict[str, Any],
    role: str | None = None,
    address: str | None = None,
    outcome: str | None = None,
) -> AuditEntry:
    """Add one chained row in the session's transaction (``detail`` must already be plain JSON)."""
    lock(s)
    row = AuditEntry(
        campaign_id=campaign_id,
        at=utcnow(),
        user=user,
        role=role,
        address=address,
        action=action,
        detail=detail,
        outcome=outcome,
    )
    s.add(row)
    s.flush()
    prev = s.execute(
        select(AuditEntry.id, AuditEntry.hash).where(AuditEntry.id < row.id).order_by(AuditEntry.id.desc()).limit(1)
    ).first()
    if prev is not None and prev.hash is None:  # rows written by older labloop, or not through this module
        seal(s, before=row.id)
        prev = s.execute(
            select(AuditEntry.id, AuditEntry.hash).where(AuditEntry.id < row.id).order_by(AuditEntry.id.desc()).limit(1)
        ).first()
    row.prev_hash = prev.hash if prev is not None else None
    row.hash = row_hash(row.prev_hash, row)
    set_tip(s, row.id, row.hash)
    s.flush()
    return row


def seal(s: Any, before: int | None = None) -> int:
    """Chain the rows that have no hash yet (in id order, after the last sealed row); returns how many. ``s`` is
    a Session or a Connection (the migration seals the rows of stores written before schema 7)."""
    table = cast(Table, AuditEntry.__table__)  # a declarative class's table is a Table (typed as FromClause)
    q = select(*(table.c[n] for n in CHAINED + ("prev_hash", "hash"))).order_by(table.c.id)
    if before is not None:
        q = q.where(table.c.id < before)
    prev: str | None = None
    sealed = 0
    last: tuple[int, str] | None = None
    for r in s.execute(q).all():
        if r.hash is not None and sealed == 0:
            prev = r.hash
            continue
        h = row_hash(prev, r)
        s.execute(update(table).where(table.c.id == r.id).values(prev_hash=prev, hash=h))
        prev, sealed, last = h, sealed + 1, (r.id, h)
    if last is not None and before is None:
        set_tip(s, *last)
    return sealed


def set_tip(s: Any, row_id: int, h: str) -> None:
    meta = cast(Table, Meta.__table__)
    res = s.execute(update(meta).where(meta.c.key == TIP_KEY).values(value=f"{row_id}:{h}"))
    if not res.rowcount:
        s.execute(insert(meta).values(key=TIP_KEY, value=f"{row_id}:{h}"))


def tip(s: Any) -> tuple[int, str] | None:
    meta = cast(Table, Meta.__table__)
    value = s.execute(select(meta.c.value).where(meta.c.key == TIP_KEY)).scalar()
    if not value or ":" not in value:
        return None
    row_id, h = value.split(":", 1)
    return int(row_id), h


def problems(rows: list[Any], last: tuple[int, str] | None) -> list[str]:
    """What is wrong with the chain ``rows`` (all of them, in id order) ending at ``last`` (the recorded tip):
    each problem names the row. [] when intact."""
    found: list[str] = []
    by_hash = {r.hash: i for i, r in enumerate(rows) if r.hash}
    prev: Any = None
    for i, r in enumerate(rows):
        if r.hash is None:
            found.append(f"audit row {r.id} ({r.action}) is not sealed: it was written without its hash")
            prev = r
            continue
        expected = prev.hash if prev is not None else None
        if r.prev_hash != expected:
            where = by_hash.get(r.prev_hash)
            if where is not None and where > i:
                found.append(
                    f"audit row {r.id} ({r.action}) is out of order: it followed row {rows[where].id} when written"
                )
            elif where is not None:
                found.append(
                    f"audit row {r.id} ({r.action}) followed row {rows[where].id} when written: the rows "
                    f"between them were deleted or moved"
                )
            elif r.prev_hash is None:
                found.append(
                    f"audit row {r.id} ({r.action}) started the log when written: the rows before it were added later"
                )
            else:
                what = f"after row {prev.id}" if prev is not None else "before it"
                found.append(
                    f"a row {what} was deleted: audit row {r.id} ({r.action}) followed a row that is "
                    f"no longer in the log"
                )
        if row_hash(r.prev_hash, r) != r.hash:
            found.append(
                f"audit row {r.id} ({r.action}, {iso(r.at)}, by {r.user}) was altered: its content no "
                f"longer matches its hash"
            )
        prev = r
    if last is not None:
        end = rows[-1] if rows else None
        if end is None or (end.id, end.hash) != last:
            if last[1] in by_hash and end is not None and end.id != last[0]:
                found.append(f"rows were added after audit row {last[0]} without going through the chain")
            elif last[1] in by_hash:
                found.append(f"the last audit row (id {last[0]}) has changed")
            else:
                found.append(
                    f"the last rows of the audit log were deleted: the last row written was {last[0]}, "
                    f"the log now ends at {end.id if end is not None else 'nothing'}"
                )
    return found
