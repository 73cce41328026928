"""The store's timestamps, read the same way whatever the database.

Why a module: SQLite hands back naive datetimes for timezone-aware columns (they were written in UTC) while
PostgreSQL hands back aware ones; every age, deadline and printed time must treat both alike, or a surface reads
an hour-shifted or uncomparable time on one of the two databases.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc(at: datetime) -> datetime:
    """``at`` as an aware datetime: a naive one is taken to be UTC (as the store wrote it)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
