"""Which schema revision a store is at, and ``labloop db upgrade``: migrating a store to the head revision.

Reading the revision needs no Alembic (it is one SELECT); Alembic is imported only to create or migrate a store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from labloop.errors import StoreError

from .migrations import HEAD, LEGACY_SCHEMA_REVISIONS, REVISIONS
from .times import utc

LABLOOP_TABLES = ("campaigns", "labloop_meta")


@dataclass(frozen=True)
class Revision:
    """What a store's tables say about its schema."""

    revision: str | None  # from alembic_version, or mapped from a pre-Alembic schema_version; None if neither
    legacy: str | None = None  # labloop_meta.schema_version of a store without alembic_version
    empty: bool = False  # no labloop tables at all: a new database
    foreign: bool = False  # no labloop tables, but another application's alembic_version

    @property
    def label(self) -> str:
        if self.revision is not None and self.legacy is not None:
            return f"{self.revision} (schema {self.legacy}, written before migrations)"
        if self.revision is not None:
            return self.revision
        return f"schema {self.legacy or 'unknown'} (written before migrations)"

    @property
    def at_head(self) -> bool:
        return self.revision == HEAD and self.legacy is None

    @property
    def known(self) -> bool:
        return self.revision in REVISIONS

    @property
    def behind(self) -> bool:
        """Older than head and upgradable by ``labloop db upgrade``."""
        return self.known and not self.at_head


def read_revision(conn: Connection) -> Revision:
    """The store's revision; only reads."""
    tables = set(inspect(conn).get_table_names())
    ours = any(t in tables for t in LABLOOP_TABLES)
    version = None
    if "alembic_version" in tables:
        rows = [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
        version = ", ".join(sorted(rows)) or None  # several rows: branches, which labloop's history never has
    if version is not None:
        return Revision(version, foreign=not ours and version not in REVISIONS)
    if not ours:
        return Revision(None, empty=True)
    legacy = None
    if "labloop_meta" in tables:
        legacy = conn.execute(text("SELECT value FROM labloop_meta WHERE key = 'schema_version'")).scalar()
    return Revision(LEGACY_SCHEMA_REVISIONS.get(str(legacy)), legacy=str(legacy) if legacy is not None else None)


def refusal(found: Revision, display_url: str) -> StoreError | None:
    """Why this labloop cannot use a store at ``found`` (None when it can); ``display_url`` as the operator wrote
    it, without its password."""
    if found.at_head:
        return None
    store_word = "file" if display_url.startswith("sqlite") else "database"
    if found.foreign:
        return StoreError(
            f"{display_url} holds no labloop store but another application's tables (its alembic_version is "
            f"{found.revision})",
            f"give labloop a {store_word} of its own (e.g. `createdb labloop`, or another SQLite file) with --store",
        )
    if found.behind:
        return StoreError(
            f"the store {display_url} has schema revision {found.label}; this labloop needs {HEAD}",
            f"run `labloop db upgrade --store {display_url}` (back up the {store_word} first)",
        )
    if found.revision is None:  # pre-Alembic and older than the baseline
        return StoreError(
            f"the store {display_url} has schema {found.label}, older than any this labloop can upgrade "
            f"(it needs {HEAD}; `labloop db upgrade` starts from schema 3)",
            "open it with the labloop version that wrote it (export its campaigns), and use a new --store "
            "for new campaigns",
        )
    return StoreError(
        f"the store {display_url} has schema revision {found.revision}, which this labloop does not know "
        f"(it needs {HEAD}): a newer labloop wrote it",
        "use the newer labloop version that wrote it (pip install -U labloop), or another --store for this one",
    )


def stamp_head(conn: Connection) -> None:
    """Record a store just created from the models (``create_all``) as being at the head revision."""
    from alembic.runtime.migration import MigrationContext

    from .migrations import script_directory

    MigrationContext.configure(conn).stamp(script_directory(), "head")


def run_upgrade(conn: Connection, found: Revision) -> None:
    """Migrate the store on ``conn`` from ``found`` to head, inside the caller's transaction."""
    from alembic import command

    from .migrations import alembic_config

    cfg = alembic_config(connection=conn)
    if found.legacy is not None:
        assert found.revision is not None, "refusal() turns away a pre-Alembic store that maps to no revision"
        command.stamp(cfg, found.revision)  # a pre-Alembic store: record where it is, then go on from there
    command.upgrade(cfg, "head")


def begin_exclusive(conn: Connection) -> Any:
    """Start the transaction now, holding SQLite's write lock, so DDL and the revision stamp commit together
    (pysqlite would otherwise run each CREATE TABLE outside any transaction) and a second process waits, then finds
    the work done. PostgreSQL's DDL is transactional anyway; an advisory lock makes the second process wait."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":  # creators and upgraders of stores in this database take turns
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
    return conn


ADVISORY_LOCK = 0x6C61626C  # 'labl': PostgreSQL advisory lock held while a store is created or migrated


def _engine(url: str) -> tuple[Any, str]:
    """An engine for migrating the existing store at ``url`` (plain: no foreign-key enforcement while SQLite
    tables are rebuilt), and the URL to show."""
    from sqlalchemy import create_engine, event

    from .connection import _check_sqlite_path, display_url, normalize_url, sqlite_path

    norm = normalize_url(url)
    path = sqlite_path(norm, url)
    if path is not None:
        _check_sqlite_path(path, url, create=False)
    try:
        engine = create_engine(norm, connect_args={"timeout": 30} if path is not None else {})
    except Exception as exc:  # noqa: BLE001 - a missing driver or malformed options: each library raises its own
        raise StoreError(f"cannot use store '{url}': {exc}", "check the URL and that its driver is installed") from None
    if path is not None:
        event.listen(engine, "connect", _sqlite_durable)
    return engine, display_url(url)


def _sqlite_durable(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA synchronous=FULL")


def _connect(engine: Any, url: str) -> Connection:
    from sqlalchemy.exc import DBAPIError

    from .connection import cannot_open

    try:
        return engine.connect()
    except DBAPIError as exc:
        engine.dispose()
        raise cannot_open(url, str(engine.url), exc) from None


def store_revision(url: str) -> Revision:
    """The revision of the store at ``url`` (``labloop db current``); reads only, creates nothing."""
    from sqlalchemy.exc import DBAPIError

    from .connection import cannot_open

    engine, display = _engine(url)
    try:
        with _connect(engine, url) as conn:
            found = read_revision(conn)
    except DBAPIError as exc:
        raise cannot_open(url, str(engine.url), exc) from None
    finally:
        engine.dispose()
    if found.empty:
        raise _no_store(display)
    return found


def upgrade_store(url: str) -> tuple[Revision, Revision]:
    """Migrate the store at ``url`` to the head revision in one transaction; returns (before, after). A store
    already at head is left as it is (before == after)."""
    from sqlalchemy.exc import DBAPIError

    from .connection import write_problem

    engine, display = _engine(url)
    try:
        with _connect(engine, url) as conn:
            try:
                begin_exclusive(conn)  # one writer: a second `db upgrade` waits, then finds the store at head
                found = read_revision(conn)
                if found.empty:
                    raise _no_store(display)
                if found.at_head:
                    conn.rollback()
                    return found, found
                if not found.behind:
                    problem = refusal(found, display)  # newer, or older than the baseline
                    assert problem is not None, "refusal() is None only at head, returned above"
                    raise problem
                _refuse_if_running(conn, display)
                run_upgrade(conn, found)
                after = read_revision(conn)
                conn.commit()
            except DBAPIError as exc:
                conn.rollback()
                raise write_problem(exc, display) from None
    finally:
        engine.dispose()
    return found, after


def _refuse_if_running(conn: Connection, display: str) -> None:
    """A campaign whose process still beats would meet a schema it does not know; upgrade between campaigns."""
    from datetime import datetime

    rows = conn.execute(text("SELECT name, heartbeat_at FROM campaigns WHERE state IN ('running', 'paused')"))
    now = datetime.now(UTC)
    for name, beat in rows:
        if isinstance(beat, str):  # SQLite without type information
            beat = datetime.fromisoformat(beat)
        if beat is None:
            continue
        beat = utc(beat)
        if (now - beat).total_seconds() < RUNNING_SECONDS:
            raise StoreError(
                f"campaign '{name}' is running on the store {display}",
                "stop or pause it (`labloop stop`), wait until its process exits, then upgrade",
            )


RUNNING_SECONDS = 10.0


def _no_store(display: str) -> StoreError:
    return StoreError(f"no store at {display}", "check --store (the file or database a campaign was run with)")
