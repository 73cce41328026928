"""Where a store is and why it cannot be opened: URLs, SQLite paths, and database errors worded for operators.

Shared by the repository (opening a store, every transaction) and the migrations (``labloop db upgrade``), which
must not import each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from labloop.errors import StoreError


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and route it to psycopg 3; leave other URLs alone."""
    try:
        u = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"'{url}' is not a database URL", "use sqlite:///path/to/labloop.db or postgresql://user@host:5432/dbname"
        ) from None
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def display_url(url: str) -> str:
    """``url`` with its password hidden; otherwise as written (SQLite file URIs stay readable)."""
    try:
        u = make_url(url)
    except ArgumentError:
        return url
    return url if u.password is None else u.render_as_string(hide_password=True)


def sqlite_path(url: str, given: str | None = None) -> Path | None:
    """The file of an SQLite URL (None for a server URL). An in-memory database is refused: the runner's threads
    and the other labloop commands (status, pause, resume) could not share it, and it is gone when labloop ends."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    db = u.database or ""
    uri = str(u.query.get("uri", "")).lower() in ("true", "1", "yes")
    memory = db in ("", ":memory:")
    if uri and db.startswith("file:"):
        parsed = urlsplit(db)
        db = unquote(parsed.path)
        mode = dict(parse_qsl(parsed.query)).get("mode") or u.query.get("mode")
        memory = db in ("", ":memory:") or mode == "memory"
    if memory:
        raise StoreError(
            f"'{given or url}' is an in-memory database: the runner's threads and other labloop "
            "commands (status, pause, resume) cannot share it, and it is lost when labloop exits",
            "give a file path, e.g. --store sqlite:///labloop.db",
        )
    return Path(db).expanduser().absolute()


def _check_sqlite_path(path: Path, given: str, create: bool) -> None:
    if not path.parent.is_dir():
        raise StoreError(
            f"cannot open store '{given}': the folder {path.parent} does not exist",
            "create the folder, or choose another path (e.g. --store sqlite:///labloop.db)",
        )
    if path.is_dir():
        raise StoreError(
            f"cannot open store '{given}': {path} is a folder, not a store file",
            f"name a file in it, e.g. --store sqlite:///{path / 'labloop.db'}",
        )
    if not create and not path.exists():
        raise StoreError(f"no store at {path}", "run `labloop run FILE` in this folder first, or pass --store")


def cannot_open(given: str, url: str, exc: DBAPIError) -> StoreError:
    """Why a store could not be opened, worded for SQLite files and database servers apart."""
    u = make_url(url)
    reason = _first_line(exc.orig)
    if u.get_backend_name() == "sqlite":
        if "not a database" in reason:
            return StoreError(
                f"cannot open store '{given}': the file is not an SQLite database ({reason})",
                "pass --store with the labloop.db a campaign was run with, or a new file name",
            )
        return StoreError(
            f"cannot open store '{given}': {reason}",
            "check that the path names a labloop store file you may read and write",
        )
    if not isinstance(exc, OperationalError):  # connected, but the database refused to be read
        return StoreError(
            f"cannot read the store '{display_url(given)}': {reason}",
            "check that the database user may read it and that the URL names a labloop store",
        )
    where = f"{u.host or 'localhost'}:{u.port or 5432}"
    return StoreError(
        f"cannot connect to the database server at {where} for store '{display_url(given)}': {reason}",
        "check that the server runs and the URL (host, port, user, password, database) is right",
    )


def store_problem(exc: DBAPIError, display: str) -> StoreError | None:
    """A database error the operator can fix (read-only store, full disk, lost server), or None for a bug."""
    msg = str(exc.orig).lower()
    reason = _first_line(exc.orig)
    if "readonly database" in msg or "read-only transaction" in msg or "permission denied" in msg:
        return read_only(display, reason)
    if "database or disk is full" in msg or "no space left" in msg:
        return StoreError(
            f"the store {display} cannot grow: {reason}",
            "free disk space (or move the store to a larger disk) and resume",
        )
    if exc.connection_invalidated or "server closed the connection" in msg or "connection refused" in msg:
        return StoreError(
            f"lost the connection to the store {display}: {reason}",
            "check that the database server runs, then `labloop resume`",
        )
    if "unable to open database file" in msg:
        return StoreError(
            f"cannot open the store file {display}: {reason}",
            "check that the file and its folder exist and are writable",
        )
    return None


def write_problem(exc: DBAPIError, display: str) -> StoreError:
    return store_problem(exc, display) or StoreError(
        f"cannot write to the store {display}: {_first_line(exc.orig)}",
        "check that the store is writable and the database server runs",
    )


def read_only(display: str, why: str) -> StoreError:
    return StoreError(
        f"the store {display} is read-only ({why})",
        "make the store file and its folder writable (or the database user allowed to write), "
        "or pass --store with a writable store; `labloop status` and `export` can still read it",
    )


def _first_line(orig: Any) -> str:
    return (str(orig).strip().splitlines() or [""])[0]
