"""The store's API: short transactions, each committed before the caller takes its next physical action.

Over 500 lines, on purpose: every compare-and-set transition of trials, steps and requests is here, in one
place to review; documents, assets, calibrations and the audit log are in ``records``, users in ``users``.

SQLite (one file, WAL journal) is the embedded default; a ``postgresql://`` URL uses psycopg 3. Every method opens
its own session and commits, so what returns has been made durable; nothing is cached between calls, so a second
process (``labloop status`` while a campaign runs, or ``labloop resume`` after a crash) sees the same truth.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, create_engine, event, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from labloop import __version__
from labloop.errors import StoreError
from labloop.logs import Swallowed
from labloop.states import IllegalTransition, StepState, TrialState, check_step_transition, check_trial_transition

from . import DEFAULT_URL, chain
from .bell import Bells, Channel, bells_for
from .connection import (
    _check_sqlite_path,
    cannot_open,
    display_url,
    normalize_url,
    read_only,
    sqlite_path,
    store_problem,
    write_problem,
)
from .inventory import Inventory
from .leases import Leases
from .migrate import Revision, begin_exclusive, read_revision, refusal, stamp_head
from .records import Records, _user, to_jsonable  # to_jsonable and _user are imported from here too
from .schema import SCHEMA_VERSION, Base, Campaign, Meta, OperatorRequest, Step, Trial, utcnow
from .users import UsersMixin

log = logging.getLogger(__name__)
_close_failed = Swallowed(log, "closing a broken poll connection")

#: How often an operator request (or its answer) asks again for SQLite's write lock while a lab's commits hold it.
URGENT_RETRY_S = 0.001
#: How long it asks before giving up (SQLite's own busy timeout for every other write).
URGENT_WAIT_S = 30.0


class Store(Records, Inventory, UsersMixin, Leases):
    """Campaigns, trials, steps, documents, process streams, samples and the audit log (documents to the audit
    log: :class:`~labloop.store.records.Records`; users: :mod:`.users`; leases: :mod:`.leases`).

    ``create=False`` opens an existing store only (commands that read, or that ask a running campaign for
    something): where there is none, it raises instead of leaving an empty database behind. Opening refuses,
    before writing anything, a store at another schema revision than this labloop's (see ``labloop db upgrade``).
    """

    def __init__(self, url: str = DEFAULT_URL, create: bool = True):
        self.given_url = url
        self.url = normalize_url(url)
        self._path = sqlite_path(self.url, url)
        is_sqlite = self.url.startswith("sqlite")
        if self._path is not None:
            _check_sqlite_path(self._path, url, create)
        kwargs: dict[str, Any] = {"json_serializer": lambda o: json.dumps(to_jsonable(o))}
        if is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        try:
            self.engine: Engine = create_engine(self.url, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure here (missing driver, malformed options) is the URL's
            raise StoreError(
                f"cannot use store '{url}': {exc}", "check the URL and that its driver is installed"
            ) from None
        try:
            with self.engine.connect() as conn:  # only reads: a store this labloop cannot use stays untouched
                found = read_revision(conn)
        except DBAPIError as exc:
            self.engine.dispose()
            raise cannot_open(url, self.url, exc) from None
        self.engine.dispose()  # that connection lacked the pragmas below
        if is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._urgent_engine: Engine | None = None
        if is_sqlite:
            self._urgent_engine = create_engine(self.url, **kwargs)
            event.listen(self._urgent_engine, "connect", _sqlite_urgent_pragmas)
            self._urgent_sessions = sessionmaker(self._urgent_engine, expire_on_commit=False)
        if found.empty:
            if not create:
                raise self._no_store()
            found = self._create()
        problem = refusal(found, self._display_url())
        if problem is not None:
            self.engine.dispose()
            raise problem
        if create:
            self._check_writable()

    def _create(self) -> Revision:
        """Create the head schema and record its revision, in one transaction (a second process creating the same
        store at the same time waits, then finds it created)."""
        try:
            with self.engine.connect() as conn:
                begin_exclusive(conn)
                found = read_revision(conn)
                if found.empty:
                    Base.metadata.create_all(conn)
                    conn.execute(insert(Meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
                    stamp_head(conn)
                    found = read_revision(conn)
                conn.commit()
                return found
        except DBAPIError as exc:
            self.engine.dispose()
            raise self._write_problem(exc) from None

    def _check_writable(self) -> None:
        """Commands that write learn now, not halfway through a campaign, that the store is read-only."""
        if self._path is not None and self._path.exists():
            for p in (self._path, self._path.parent):
                if not os.access(p, os.W_OK):
                    raise self._read_only(f"{p} is not writable")
        try:
            with self.engine.connect() as conn:  # a no-op update, rolled back: needs write access, changes nothing
                conn.execute(update(Meta).where(Meta.key == "schema_version").values(value=Meta.value))
                conn.rollback()
        except DBAPIError as exc:
            self.engine.dispose()
            raise self._write_problem(exc) from None

    def _write_problem(self, exc: DBAPIError) -> StoreError:
        return write_problem(exc, self._display_url())

    def _read_only(self, why: str) -> StoreError:
        return read_only(self._display_url(), why)

    def _no_store(self) -> StoreError:
        self.engine.dispose()
        where = str(self._path) if self._path is not None else self._display_url()
        return StoreError(f"no store at {where}", "run `labloop run FILE` in this folder first, or pass --store")

    @property
    def bells(self) -> Bells:
        """This store's bells (:mod:`labloop.store.bell`): the writer of a request, answer or event rings them after
        its commit; readers wait on them, polling only as a fallback."""
        bells = self.__dict__.get("_bells")
        if bells is None:
            bells = self.__dict__.setdefault("_bells", bells_for(self.engine, self._path))
        return bells

    def ring(self, channel: Channel) -> None:
        """Ring ``channel`` after a commit (never raises)."""
        self.bells.ring(channel)

    def close(self) -> None:
        bells = self.__dict__.pop("_bells", None)
        if bells is not None:
            bells.close()
        self._drop_poll_connection()
        self.engine.dispose()
        if self._urgent_engine is not None:
            self._urgent_engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._transaction(self._sessions) as s:
            yield s

    @contextmanager
    def _transaction(self, sessions: sessionmaker, begin: Any = None) -> Iterator[Session]:
        """One committed transaction of a session from ``sessions`` (``begin(session)`` starts it first, if given);
        rolled back on error, a store error the operator can fix raised as theirs."""
        with sessions() as s:
            try:
                if begin is not None:
                    begin(s)
                yield s
                s.commit()
            except SQLAlchemyError as exc:
                s.rollback()
                problem = store_problem(exc, self._display_url()) if isinstance(exc, DBAPIError) else None
                if problem is not None:  # read-only, disk full, server gone: the operator's to fix, not a bug
                    raise problem from None
                raise

    @contextmanager
    def urgent_session(self) -> Iterator[Session]:
        """:meth:`session` for operator requests and their answers: on SQLite, the write lock is taken first, asking
        again every :data:`URGENT_RETRY_S`. Why: SQLite's busy handler sleeps 1, 2, 5 ... then 25 to 100 ms between
        looks, and a running lab's threads take the lock in turns (each of its transactions holds it for the GIL
        handoffs of several statements); a pause waiting behind them kept missing the gaps (measured: 130 ms before
        its INSERT had the lock, 5 ms for its commit). Same durability: the same connection settings and commit.
        PostgreSQL queues lock waiters itself: there this is :meth:`session`."""
        if self._urgent_engine is None:
            with self.session() as s:
                yield s
            return
        with self._transaction(self._urgent_sessions, _begin_immediate) as s:
            yield s

    # ----------------------------------------------------------------------------------------- campaigns
    def create_campaign(self, name: str, spec_text: str, spec_hash: str, user: str | None = None) -> Campaign:
        """``user``: who submitted it (the daemon passes the verified user; default: this process's login name)."""
        with self.session() as s:
            c = Campaign(
                uid=str(uuid.uuid4()),
                name=name,
                spec_text=spec_text,
                spec_hash=spec_hash,
                labloop_version=__version__,
                state="running",
            )
            s.add(c)
            s.flush()
            chain.append(s, campaign_id=c.id, user=user or _user(), action="campaign.start", detail={"name": name})
            return c

    def campaign(self, ref: str | int | None = None) -> Campaign:
        """A campaign by id, uid or name (latest of that name); the latest campaign when ``ref`` is None."""
        with self.session() as s:
            q = select(Campaign).order_by(Campaign.id.desc())
            if ref is not None:
                ref_s = str(ref)
                if ref_s.isdigit():
                    q = q.where(Campaign.id == int(ref_s))
                else:
                    q = q.where((Campaign.uid == ref_s) | (Campaign.name == ref_s))
            c = s.scalars(q.limit(1)).first()
        if c is None:
            if ref is not None:
                raise StoreError(
                    f"the store {self._display_url()} holds no campaign '{ref}'",
                    "see `labloop status` for the campaigns it holds, or pass --store with the right URL",
                )
            raise StoreError(
                f"the store {self._display_url()} holds no campaign yet",
                "run `labloop run FILE` first, or pass --store with the right URL",
            )
        return c

    def campaigns(self) -> list[Campaign]:
        with self.session() as s:
            return list(s.scalars(select(Campaign).order_by(Campaign.id)))

    def finish_campaign(self, campaign_id: int, state: str, reason: str) -> None:
        with self.session() as s:
            s.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id)
                .values(state=state, stop_reason=reason, finished_at=utcnow())
            )
            chain.append(
                s,
                campaign_id=campaign_id,
                user=_user(),
                action=f"campaign.{state}",
                detail=to_jsonable({"reason": reason}),
            )

    def update_campaign(self, campaign_id: int, **fields: Any) -> None:
        with self.session() as s:
            s.execute(update(Campaign).where(Campaign.id == campaign_id).values(**fields))

    def heartbeat(self, campaign_id: int, note: str | None = None) -> None:
        """A sign of life of this process (host, pid, process start time), with why the campaign waits, if it does."""
        host_pid, started = this_runner()
        with self.session() as s:
            s.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id)
                .values(heartbeat_at=utcnow(), note=note, runner=host_pid, runner_started=started)
            )

    # ----------------------------------------------------------------------------------------- operator requests
    def request(
        self,
        campaign_id: int,
        action: str,
        args: dict[str, Any] | None = None,
        user: str | None = None,
        command: dict[str, Any] | None = None,
    ) -> int:
        """Queue an operator's request for the campaign's runner (and audit it); returns its id. ``command``: the
        :meth:`audit` arguments of the command that asks (the daemon's "accepted" row), appended first in the same
        transaction: the runner sees the request one fsync sooner, and the log never holds one without the other."""
        who = user or _user()
        with self.urgent_session() as s:
            if command is not None:
                self._audit_row(s, **command)
            r = OperatorRequest(
                campaign_id=campaign_id, action=action, args=to_jsonable(args or {}), user=who, state="pending"
            )
            s.add(r)
            chain.append(
                s, campaign_id=campaign_id, user=who, action=f"request.{action}", detail=to_jsonable(args or {})
            )
            s.flush()
            rid = r.id
            rung = self.bells.ring_in(s, ("requests", campaign_id))  # PostgreSQL: NOTIFY, delivered at the commit
        if not rung:
            self.ring(("requests", campaign_id))  # committed: wake the runner
        return rid

    def pending_requests(self, campaign_id: int) -> list[OperatorRequest]:
        """Requests not answered yet, oldest first, as rows to answer. To poll, use :meth:`pending_actions`, which
        costs far less."""
        with self.session() as s:
            q = (
                select(OperatorRequest)
                .where(OperatorRequest.campaign_id == campaign_id, OperatorRequest.state == "pending")
                .order_by(OperatorRequest.id)
            )
            return list(s.scalars(q))

    def pending_actions(self, campaign_id: int) -> list[tuple[int, str]]:
        """``(id, action)`` of the pending requests, oldest first: the poll itself, one indexed select on the
        connection kept for it (no pool checkout; autocommit, so every poll sees the latest commits). Used by one
        thread, the runner's control loop."""
        try:
            rows = self._poll_connection().execute(self._poll_query, {"cid": campaign_id}).all()
        except DBAPIError:
            self._drop_poll_connection()  # a lost connection: the next poll opens a new one
            raise
        return [(int(i), str(a)) for i, a in rows]

    _poll_query = (
        select(OperatorRequest.id, OperatorRequest.action)
        .where(OperatorRequest.campaign_id == bindparam("cid"), OperatorRequest.state == "pending")
        .order_by(OperatorRequest.id)
    )
    _poll_conn: Connection | None  # opened by the first poll (an annotation only: read with getattr)

    def _poll_connection(self) -> Any:
        conn = getattr(self, "_poll_conn", None)
        if conn is None:
            conn = self._poll_conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return conn

    def _drop_poll_connection(self) -> None:
        conn, self._poll_conn = getattr(self, "_poll_conn", None), None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # noqa: BLE001 - it is being dropped because it is broken
                _close_failed(exc)

    def answer_request(
        self, request_id: int, state: str, outcome: str, user: str = "labloop", campaign: dict[str, Any] | None = None
    ) -> bool:
        """Acknowledge a request: ``done`` or ``refused``, with one line saying what happened or why not.
        Compare-and-set from pending, so a request is answered once. ``campaign``: fields of the request's campaign
        to change in the same transaction (what the request did: paused, resumed), so the answer is one commit and
        never says done before the campaign does."""
        if state not in ("done", "refused"):
            raise ValueError(f"a request is answered done or refused, not {state!r}")
        with self.urgent_session() as s:
            r = s.get(OperatorRequest, request_id)
            if r is None or r.state != "pending":
                return False
            cid = r.campaign_id
            # an UPDATE's result is a CursorResult (with rowcount); execute() is typed as returning a Result
            res = cast(
                "CursorResult[Any]",
                s.execute(
                    update(OperatorRequest)
                    .where(OperatorRequest.id == request_id, OperatorRequest.state == "pending")
                    .values(state=state, outcome=outcome, handled_at=utcnow())
                ),
            )
            if res.rowcount:
                chain.append(
                    s,
                    campaign_id=r.campaign_id,
                    user=user,
                    action=f"request.{state}",
                    detail=to_jsonable({"request": request_id, "action": r.action, "by": r.user, "outcome": outcome}),
                )
                if campaign:
                    s.execute(update(Campaign).where(Campaign.id == r.campaign_id).values(**campaign))
            answered = bool(res.rowcount)
            rung = answered and self.bells.ring_in(s, ("answers", cid))
        if answered and not rung:
            self.ring(("answers", cid))  # committed: wake whoever asked
        return answered

    def operator_request(self, request_id: int) -> OperatorRequest:
        with self.session() as s:
            r = s.get(OperatorRequest, request_id)
        if r is None:
            raise StoreError(f"no operator request with id {request_id}")
        return r

    # ----------------------------------------------------------------------------------------- trials
    def add_trial(
        self,
        campaign_id: int,
        params: dict[str, Any],
        source: str,
        info: dict[str, Any],
        sample_prefix: str,
        state: str = "proposed",
    ) -> Trial:
        with self.session() as s:
            number = (s.scalar(select(func.max(Trial.number)).where(Trial.campaign_id == campaign_id)) or 0) + 1
            t = Trial(
                campaign_id=campaign_id,
                number=number,
                state=state,
                params=to_jsonable(params),
                values={},
                source=source,
                info=to_jsonable(info),
                sample_id=f"{sample_prefix}-{number:04d}",
            )
            s.add(t)
            s.flush()
            self._reserve(s, t)  # its consumables, in the same commit (refused: no trial)
            return t

    def update_trial(self, trial_id: int, **fields: Any) -> None:
        """Change a trial's data (values, info, times, current step), never its state: see :meth:`transition`."""
        if "state" in fields:
            raise ValueError("a trial's state changes only through Store.transition (compare-and-set)")
        if "values" in fields:
            fields["values"] = to_jsonable(fields["values"])
        with self.session() as s:
            s.execute(update(Trial).where(Trial.id == trial_id).values(**fields))
            if "params" in fields:  # a re-asked proposal: its consumables are reserved anew
                t = s.get(Trial, trial_id)
                if t is not None:
                    s.refresh(t)
                    self._settle(s, t, "params")

    def transition(self, trial_id: int, expected: TrialState | str, new: TrialState | str, **fields: Any) -> Trial:
        """Move a trial from ``expected`` to ``new`` (and set ``fields``) if, and only if, the transition table allows
        it and the trial is still in ``expected``: ``UPDATE trials SET state = :new WHERE id = :id AND state =
        :expected``. Raises :class:`~labloop.states.IllegalTransition` (nothing changed) otherwise. Returns the trial
        as committed (one statement: UPDATE ... RETURNING)."""
        expected, new = TrialState(expected), TrialState(new)
        try:
            check_trial_transition("?", expected, new)
        except IllegalTransition:
            check_trial_transition(self.trial(trial_id).number, expected, new)  # the same refusal, with the number
        if "values" in fields:
            fields["values"] = to_jsonable(fields["values"])
        with self.session() as s:
            row = s.scalars(
                update(Trial)
                .where(Trial.id == trial_id, Trial.state == expected.value)
                .values(state=new.value, **fields)
                .returning(Trial)
                .execution_options(synchronize_session=False)
            ).first()
            if row is not None:  # its consumables: drawn when it starts, released if it never did
                self._settle(s, row, new.value)
        if row is None:
            now = self.trial(trial_id)  # raises when there is no such trial
            raise IllegalTransition(
                f"trial {now.number} is {now.state}, not {expected}: it was not moved to {new}",
                "someone else changed it meanwhile; check `labloop status`",
            )
        return row

    def trial(self, trial_id: int) -> Trial:
        with self.session() as s:
            t = s.get(Trial, trial_id)
        if t is None:
            raise StoreError(f"no trial with id {trial_id}")
        return t

    def trials(self, campaign_id: int) -> list[Trial]:
        with self.session() as s:
            return list(s.scalars(select(Trial).where(Trial.campaign_id == campaign_id).order_by(Trial.number)))

    # ----------------------------------------------------------------------------------------- steps
    def start_step(
        self, trial_id: int, index: int, label: str, kind: str, attempt: int = 1, device: str | None = None
    ) -> int:
        with self.session() as s:
            st = Step(
                trial_id=trial_id, index=index, label=label, kind=kind, state="running", attempt=attempt, device=device
            )
            s.add(st)
            s.execute(update(Trial).where(Trial.id == trial_id).values(current_step=index))
            s.flush()
            return st.id

    def finish_step(
        self,
        step_id: int,
        state: StepState | str,
        run_uid: str | None = None,
        error: str | None = None,
        moved: tuple[int, str, str, int | None] | None = None,
        documents: tuple[int, int | None, list[tuple[str, dict[str, Any]]], list[tuple[str, float, float]]]
        | None = None,
        assets: tuple[int, int | None, list[tuple[str, str, int]]] | None = None,
    ) -> None:
        """End a running step (compare-and-set from running); ``moved`` = (campaign_id, sample_id, location,
        trial_id) records where a transfer put the sample in the same transaction, so the store never says 'moved'
        without saying where to; ``documents`` = (campaign_id, trial_id, docs, points) commits the run's last
        documents with it (one transaction for the end of a step, not two); ``assets`` = (campaign_id, trial_id,
        [(path, sha256, size)]) records, in the same transaction, the files the run's documents reference."""
        state = StepState(state)
        check_step_transition(step_id, StepState.RUNNING, state)
        with self.session() as s:
            res = cast(
                "CursorResult[Any]",  # an UPDATE's result: it has a rowcount
                s.execute(
                    update(Step)
                    .where(Step.id == step_id, Step.state == StepState.RUNNING.value)
                    .values(state=state.value, run_uid=run_uid, error=error, finished_at=utcnow())
                ),
            )
            if not res.rowcount:
                raise IllegalTransition(f"step {step_id} is not running: it cannot become {state}")
            if documents is not None and run_uid is not None:
                self._add_documents(s, documents[0], documents[1], run_uid, documents[2], documents[3])
            if assets is not None and run_uid is not None:
                self._add_assets(s, assets[0], assets[1], run_uid, assets[2])
            if moved is not None:
                self._locate(s, *moved)

    def steps(self, trial_id: int | None = None, campaign_id: int | None = None) -> list[Step]:
        with self.session() as s:
            q = select(Step).order_by(Step.id)
            if trial_id is not None:
                q = q.where(Step.trial_id == trial_id)
            if campaign_id is not None:
                q = q.join(Trial, Trial.id == Step.trial_id).where(Trial.campaign_id == campaign_id)
            return list(s.scalars(q))

    def _display_url(self) -> str:
        """The URL as the operator wrote it (to copy into commands), without its password."""
        return display_url(self.given_url)


def this_runner() -> tuple[str, float]:
    """``host:pid`` of this process and its start time: together they name one process, even after pid reuse."""
    import os
    import socket

    import psutil

    return f"{socket.gethostname()}:{os.getpid()}", psutil.Process().create_time()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut or an OS crash, not only kill -9
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_urgent_pragmas(dbapi_conn: Any, record: Any) -> None:
    """The store's pragmas, then no busy wait inside SQLite: :meth:`Store.urgent_session` asks for the lock itself."""
    _sqlite_pragmas(dbapi_conn, record)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=0")
    cur.close()


def _begin_immediate(s: Session) -> None:
    """Start ``s``'s transaction holding SQLite's write lock, asking every URGENT_RETRY_S while another holds it."""
    conn = s.connection()
    deadline = time.monotonic() + URGENT_WAIT_S
    while True:
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as exc:
            if "locked" not in str(exc.orig) or time.monotonic() >= deadline:
                raise
        time.sleep(URGENT_RETRY_S)
