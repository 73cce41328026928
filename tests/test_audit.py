"""The hash-chained audit log: every row the store writes (campaign lifecycle, requests and their answers,
calibrations, users, daemon commands) is chained; ``verify`` and ``labloop audit --verify`` name an altered,
deleted or reordered row; two processes appending at once never fork the chain. On SQLite, and on the real
PostgreSQL when LABLOOP_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from labloop.cli import app
from labloop.control import audit
from labloop.store import Store
from labloop.store.schema import AuditEntry

runner = CliRunner()


def _busy_store(url: str) -> Store:
    """A store whose audit log was written through every path the code has."""
    store = Store(url)
    c = store.create_campaign("chain", "name: chain\n", "c" * 64)
    rid = store.request(c.id, "pause", {"reason": "coffee"}, user="ana")
    store.answer_request(rid, "done", "paused after trial 2")
    store.add_calibration(c.id, "probe", {"ref": 1.0}, {"gain": 1.02}, user="ben")
    store.audit(c.id, "station.quarantine", {"device": "chamber", "reason": "3 failures"}, user="labloop")
    store.add_user("ana", "operator", "a" * 40, created_by="root")
    audit.record(
        store,
        user="ana",
        role="operator",
        address="tcp://10.0.0.7:50123",
        command="pause",
        args={"campaign": "chain"},
        outcome="accepted",
        campaign_id=c.id,
    )
    audit.record(
        store,
        user="vic",
        role="viewer",
        address="tcp://10.0.0.8:50124",
        command="stop",
        args={},
        outcome="refused",
        campaign_id=c.id,
        detail={"reason": "vic is a viewer and may not stop"},
    )
    store.finish_campaign(c.id, "stopped", "operator stop")
    return store


def _sql(store: Store, statement: str, **params) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def test_every_write_path_is_chained_and_verifies(store_url):
    store = _busy_store(store_url)
    rows = store.audit_log()
    assert [r.action for r in rows] == [
        "campaign.start",
        "request.pause",
        "request.done",
        "calibration.recorded",
        "station.quarantine",
        "users.add",
        "pause",
        "stop",
        "campaign.stopped",
    ]
    assert all(r.hash and len(r.hash) == 64 for r in rows)
    assert [r.prev_hash for r in rows] == [None] + [r.hash for r in rows[:-1]]
    refused = rows[7]
    assert (refused.user, refused.role, refused.address, refused.outcome) == (
        "vic",
        "viewer",
        "tcp://10.0.0.8:50124",
        "refused",
    )
    assert audit.verify(store) == []
    store.close()


@pytest.mark.parametrize(
    "tamper, expected",
    [
        ('UPDATE audit SET detail = \'{"reason": "tea"}\' WHERE id = 2', "audit row 2 (request.pause"),
        ("UPDATE audit SET \"user\" = 'eve' WHERE id = 5", "audit row 5 (station.quarantine, "),
        ("DELETE FROM audit WHERE id = 4", "a row after row 3 was deleted: audit row 5"),
        ("DELETE FROM audit WHERE id = 9", "the last rows of the audit log were deleted: the last row written was 9"),
        ("DELETE FROM audit WHERE id = 1", "audit row 2 (request.pause) followed a row that is no longer"),
    ],
)
def test_verify_names_an_altered_or_deleted_row(store_url, tamper, expected):
    store = _busy_store(store_url)
    _sql(store, tamper)
    problems = audit.verify(store)
    assert problems and any(expected in p for p in problems), problems
    if "UPDATE" in tamper:
        assert any("was altered" in p for p in problems)
    store.close()


def test_verify_names_reordered_rows(store_url):
    """Rows 3 and 4 swap places, hashes and all (as someone moving rows would do): both are named."""
    store = _busy_store(store_url)
    table = AuditEntry.__table__
    with store.engine.begin() as conn:
        r3, r4 = (conn.execute(sa.select(table).where(table.c.id == i)).mappings().one() for i in (3, 4))
        for target, src in ((3, r4), (4, r3)):
            conn.execute(
                sa.update(table).where(table.c.id == target).values({k: v for k, v in src.items() if k != "id"})
            )
    problems = audit.verify(store)
    assert any("audit row 3 (calibration.recorded) is out of order" in p for p in problems), problems
    assert any("audit row 4 (request.done) followed row 2" in p for p in problems), problems
    store.close()


def test_rows_written_around_the_chain_are_reported_then_sealed(sqlite_url):
    store = _busy_store(sqlite_url)
    with store.session() as s:  # what code that bypasses Store.audit would leave: a row without a hash
        s.add(AuditEntry(campaign_id=None, user="x", action="sneaky", detail={}))
    problems = audit.verify(store)
    assert any("audit row 10 (sneaky) is not sealed" in p for p in problems), problems
    store.audit(None, "next", {})
    assert audit.verify(store) == [] and store.audit_log()[-1].prev_hash == store.audit_log()[-2].hash
    store.close()


def test_record_cuts_oversized_values_from_the_wire_and_still_chains(sqlite_url):
    store = Store(sqlite_url)
    audit.record(
        store,
        user="u" * 500,
        role="viewer" * 10,
        address="tcp://" + "9" * 500,
        command="x" * 5000,
        args={"blob": "y" * (1 << 20)},
        outcome="refused" * 5,
    )
    row = store.audit_log()[-1]
    assert len(row.action) == 40 and len(row.user) == 80 and len(row.address) == 200 and len(row.outcome) <= 20
    assert row.detail["args_truncated"]["chars"] > 1 << 20 and len(row.detail["command"]) <= 4000
    assert audit.verify(store) == []
    store.close()


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    detail=st.dictionaries(st.text(max_size=10), JSON, max_size=5),
    user=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=30),
)
def test_any_json_detail_round_trips_through_the_store_and_verifies(store_url, detail, user):
    """Floats, unicode and nesting read back exactly as hashed, on both databases."""
    store = Store(store_url)
    try:
        store.audit(None, "fuzz", detail, user=user)
        assert audit.verify(store) == []
    finally:
        store.close()


APPENDER = """
import sys, time
from labloop.store import Store
store = Store(sys.argv[1])
start = float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
for i in range(int(sys.argv[4])):
    store.audit(None, "append", {"who": sys.argv[2], "i": i}, user=sys.argv[2])
store.close()
"""


def test_two_processes_appending_at_once_never_fork_the_chain(store_url):
    Store(store_url).close()  # created before the race
    n = 40
    start = time.time() + 3.0  # both start appending at the same moment, after their imports
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, store_url, who, str(start), str(n)], env=env)
        for who in ("p1", "p2")
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0
    store = Store(store_url)
    rows = store.audit_log()
    assert sorted((r.user, r.detail["i"]) for r in rows) == sorted((w, i) for w in ("p1", "p2") for i in range(n))
    assert audit.verify(store) == []
    assert len({r.prev_hash for r in rows}) == len(rows)  # no two rows chained to the same predecessor
    store.close()


def test_audit_command_prints_and_verifies(sqlite_url):
    store = _busy_store(sqlite_url)
    r = runner.invoke(app, ["audit", "--store", sqlite_url, "--verify"], catch_exceptions=False)
    assert r.exit_code == 0 and "audit chain intact: 9 rows; tip 9:" in r.output
    assert "users.add" not in r.output  # the verdict, not a dump of every row (unless asked)
    r = runner.invoke(app, ["audit", "--store", sqlite_url, "--verify", "--rows"], catch_exceptions=False)
    assert r.exit_code == 0 and "audit chain intact: 9 rows" in r.output and "users.add" in r.output
    # into a file or a pipe (as here): a whole tab-separated line per row, not a table folded to 80 columns
    lines = r.output.splitlines()
    assert lines[0] == "id\ttime (UTC)\twho\taction\toutcome\tdetail" and "│" not in r.output
    assert sum(1 for line in lines if line.count("\t") == 5) == 10
    other = store.create_campaign("other", "name: other\n", "d" * 64)
    r = runner.invoke(app, ["audit", "--store", sqlite_url, "--campaign", "other"], catch_exceptions=False)
    assert r.exit_code == 0 and "campaign.start" in r.output and "request.pause" not in r.output
    _sql(store, "UPDATE audit SET outcome = 'accepted' WHERE id = 8")
    r = runner.invoke(app, ["audit", "--store", sqlite_url, "--verify"], catch_exceptions=False)
    assert r.exit_code == 1 and "audit row 8 (stop" in r.output and "was altered" in r.output
    r = runner.invoke(app, ["audit", "--store", sqlite_url, "--campaign", "nope"], catch_exceptions=False)
    assert r.exit_code == 2 and "no campaign 'nope'" in r.output and "Traceback" not in r.output
    assert other.id == 2
    store.close()


def test_a_daemon_command_is_audited_in_its_requests_transaction_and_the_answer_carries_the_change(store_url):
    store = Store(store_url)
    c = store.create_campaign("one-commit", "name: one-commit\n", "c" * 64)
    accepted = audit.entry(
        user="ana",
        role="operator",
        address="tcp://10.0.0.7:50123",
        command="pause",
        args={"campaign": "one-commit"},
        outcome="accepted",
    )
    with pytest.raises(Exception):  # noqa: B017 - the database driver's own integrity error. No such campaign: the request is refused by the store, and so is its audit row
        store.request(c.id + 1000, "pause", {}, user="ana", command=accepted)
    assert [r.action for r in store.audit_log()] == ["campaign.start"]
    rid = store.request(c.id, "pause", {}, user="ana", command=accepted)
    assert store.answer_request(rid, "done", "paused", campaign={"state": "paused", "note": "paused by operator"})
    rows = store.audit_log()
    assert [(r.action, r.outcome) for r in rows] == [
        ("campaign.start", None),
        ("pause", "accepted"),
        ("request.pause", None),
        ("request.done", None),
    ]
    assert (rows[1].user, rows[1].role, rows[1].address) == ("ana", "operator", "tcp://10.0.0.7:50123")
    assert (store.campaign(c.id).state, store.campaign(c.id).note) == ("paused", "paused by operator")
    assert not store.answer_request(rid, "done", "again", campaign={"state": "running"})  # answered once
    assert store.campaign(c.id).state == "paused"
    assert audit.verify(store) == []
    store.close()


def test_an_operator_request_waits_for_the_labs_write_lock_instead_of_failing(tmp_path):
    """SQLite: the request takes the write lock itself (asking every millisecond); held by another process's
    transaction meanwhile, it waits for it and is then written."""
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    store = Store(url)
    c = store.create_campaign("locked", "name: locked\n", "c" * 64)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sqlite3, sys, time\n"
                f"c = sqlite3.connect({str(tmp_path / 'labloop.db')!r}, isolation_level=None)\n"
                "c.execute('BEGIN IMMEDIATE'); print('held', flush=True); time.sleep(0.5); c.execute('COMMIT')\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        rid = store.request(c.id, "pause", {}, user="ana")  # SQLite itself would say "database is locked" at once
        assert store.operator_request(rid).state == "pending"
    finally:
        assert holder.wait(30) == 0
        store.close()
