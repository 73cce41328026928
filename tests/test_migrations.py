"""Schema migrations: a store written by the previous release (schema 3, no alembic_version) is refused with the
fix, `labloop db upgrade` migrates it keeping every row, and the new table and column work; a store from a newer
labloop is refused naming both revisions, untouched. On SQLite, and on PostgreSQL when LABLOOP_TEST_POSTGRES_URL
is set (the `store_url` fixture of conftest.py: a fresh schema per test, dropped afterwards)."""

from __future__ import annotations

from datetime import UTC, datetime

import legacy_schema_v3 as v3
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from labloop.cli import app
from labloop.control import audit
from labloop.errors import StoreError
from labloop.store import Store
from labloop.store.connection import normalize_url
from labloop.store.migrations import HEAD, REVISIONS, alembic_config, script_directory
from labloop.store.schema import SCHEMA_VERSION, Asset, Base, OperatorRequest

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(normalize_url(url))


def _write_v3_store(url: str) -> None:
    """What the previous release left behind: its tables, its schema_version row, a campaign with trials,
    steps, documents, process points, a sample and audit entries."""
    engine = _engine(url)
    v3.Base.metadata.create_all(engine)
    t0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    with Session(engine) as s:
        s.add(v3.Meta(key="schema_version", value="3"))
        c = v3.Campaign(
            uid="0f7c2d0e-3c1a-4f5e-9b1e-2a4b6c8d0e1f",
            name="thinfilm-v3",
            spec_text="name: x\n",
            spec_hash="a" * 64,
            labloop_version="0.0.9",
            state="stopped",
            stop_reason="budget",
            control="run",
            heartbeat_at=t0,
            runner="host:123",
            created_at=t0,
        )
        s.add(c)
        s.flush()
        s.add(v3.AuditEntry(campaign_id=c.id, user="ana", action="campaign.start", detail={"name": c.name}, at=t0))
        for n in (1, 2):
            t = v3.Trial(
                campaign_id=c.id,
                number=n,
                state="done",
                params={"x": 0.5 * n, "cat": "a"},
                values={"r": 10.0 / n},
                source="sobol",
                info={"acq": None},
                sample_id=f"ab-{n:04d}",
                current_step=1,
                proposed_at=t0,
            )
            s.add(t)
            s.flush()
            s.add(
                v3.Step(
                    trial_id=t.id,
                    index=0,
                    label="synthesize:chamber",
                    kind="synthesize",
                    state="done",
                    device="chamber",
                    attempt=1,
                    run_uid=f"run-{n}",
                    started_at=t0,
                )
            )
            s.add(
                v3.Document(
                    campaign_id=c.id,
                    trial_id=t.id,
                    run_uid=f"run-{n}",
                    name="start",
                    doc={"uid": f"run-{n}", "time": 1.5},
                )
            )
            s.add(
                v3.ProcessPoint(trial_id=t.id, run_uid=f"run-{n}", signal="chamber_pressure", t=1.0 + n, value=0.25 * n)
            )
        s.add(v3.Sample(campaign_id=c.id, sample_id="ab-0001", trial_id=1, location="chamber", updated_at=t0))
        s.add(
            v3.AuditEntry(campaign_id=c.id, user="ana", action="campaign.stopped", detail={"reason": "budget"}, at=t0)
        )
        s.commit()
    engine.dispose()


def _rows(url: str) -> dict[str, list[tuple]]:
    """Every row of the previous release's tables, in its columns (later revisions may add columns)."""
    engine = _engine(url)
    with engine.connect() as conn:
        out = {
            t.name: [tuple(r) for r in conn.execute(sa.select(*t.c).order_by(*t.primary_key.columns))]
            for t in v3.Base.metadata.sorted_tables
        }
    engine.dispose()
    return out


def _check_meta(rows: list[tuple]) -> None:
    """After the upgrade: the readable schema mirror follows the revision, and the old audit rows (two) have been
    sealed into a hash chain whose tip is recorded."""
    meta = dict(rows)
    assert meta.pop("schema_version") == str(SCHEMA_VERSION)
    assert meta.pop("audit_tip").startswith("2:") and meta == {}


def _tables(url: str) -> set[str]:
    engine = _engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _diff(url: str, metadata: sa.MetaData) -> list:
    """What Alembic's autogenerate finds between the database and ``metadata`` (types, nullability, indexes,
    unique and foreign keys); [] when they match."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = _engine(url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, metadata)
    engine.dispose()
    return [d for d in diff if not (d[0] == "remove_table" and d[1].name == "alembic_version")]


def _migrate(url: str, revision: str, down: bool = False) -> None:
    from alembic import command

    engine = _engine(url)
    with engine.begin() as conn:
        (command.downgrade if down else command.upgrade)(alembic_config(connection=conn), revision)
    engine.dispose()


def test_revision_list_matches_the_scripts():
    script = script_directory()
    assert script.get_current_head() == HEAD
    assert [r.revision for r in reversed(list(script.walk_revisions()))] == list(REVISIONS)


def test_previous_release_store_is_refused_then_upgraded_keeping_every_row(store_url):
    _write_v3_store(store_url)
    before = _rows(store_url)

    with pytest.raises(StoreError) as err:
        Store(store_url)
    assert "has schema revision 0001_baseline (schema 3" in err.value.problem
    assert f"this labloop needs {HEAD}" in err.value.problem
    assert f"run `labloop db upgrade --store {store_url}` (back up the" in err.value.fix
    r = invoke("status", "--store", store_url)  # commands say the same, without a traceback
    assert r.exit_code == 2 and "labloop db upgrade" in r.output and "Traceback" not in r.output
    assert _rows(store_url) == before and "alembic_version" not in _tables(store_url)  # refused before writing

    r = invoke("db", "current", "--store", store_url)
    assert r.exit_code == 0 and "0001_baseline" in r.output and "labloop db upgrade" in r.output
    r = invoke("db", "upgrade", "--store", store_url)
    assert r.exit_code == 0, r.output
    assert f"from revision 0001_baseline (schema 3, written before migrations) to {HEAD}" in r.output
    after = _rows(store_url)
    _check_meta(after.pop("labloop_meta"))
    assert after == {t: rows for t, rows in before.items() if t != "labloop_meta"}
    assert _diff(store_url, Base.metadata) == []  # the upgraded store has exactly the current models' schema

    store = Store(store_url)
    c = store.campaign()
    assert (c.name, c.state, c.runner_started) == ("thinfilm-v3", "stopped", None)
    assert [(t.number, t.values) for t in store.trials(c.id)] == [(1, {"r": 10.0}), (2, {"r": 5.0})]
    assert [a.action for a in store.audit_log(c.id)] == ["campaign.start", "campaign.stopped"]
    assert all(a.hash for a in store.audit_log()) and audit.verify(store) == []
    assert store.documents(run_uid="run-2") == [("start", {"uid": "run-2", "time": 1.5})]
    store.update_campaign(c.id, runner_started=1714824000.25)
    assert store.campaign().runner_started == 1714824000.25
    with store.session() as s:
        s.add(OperatorRequest(campaign_id=c.id, action="pause", args={"reason": "check"}, user="ana"))
    with store.session() as s:
        assert [(q.action, q.state) for q in s.scalars(sa.select(OperatorRequest))] == [("pause", "pending")]
    new = store.create_campaign("after-upgrade", "name: y\n", "b" * 64)  # ids continue (sequences kept)
    assert new.id == c.id + 1 and store.add_trial(c.id, {"x": 1}, "model", {}, "ab").number == 3
    store.close()

    r = invoke("db", "upgrade", "--store", store_url)  # idempotent
    assert r.exit_code == 0 and f"already at revision {HEAD} (up to date)" in r.output
    assert "up to date" in invoke("db", "current", "--store", store_url).output


def test_migrations_from_empty_build_the_current_schema_and_the_baseline_is_the_previous_release(store_url):
    _migrate(store_url, "0001_baseline")
    assert _diff(store_url, v3.Base.metadata) == []
    _migrate(store_url, "head")
    assert _diff(store_url, Base.metadata) == []
    _migrate(store_url, "0001_baseline", down=True)  # the downgrade goes back to the previous release's schema
    assert _diff(store_url, v3.Base.metadata) == []
    with pytest.raises(StoreError, match="0001_baseline"):
        Store(store_url)


def test_baseline_ddl_is_the_previous_release_ddl(tmp_path):
    """On SQLite the stored CREATE statements must be the very ones the previous release's create_all wrote."""
    old, migrated = f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'new.db'}"
    engine = _engine(old)
    v3.Base.metadata.create_all(engine)
    engine.dispose()
    _migrate(migrated, "0001_baseline")

    def ddl(url):
        engine = _engine(url)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT type, name, sql FROM sqlite_master WHERE name != 'alembic_version'"
                    " AND name NOT LIKE 'sqlite_autoindex_alembic%' ORDER BY type, name"
                )
            )
            out = [tuple(r) for r in rows]
        engine.dispose()
        return out

    assert ddl(migrated) == ddl(old)


def test_new_store_is_created_at_head(store_url):
    Store(store_url).close()
    engine = _engine(store_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == HEAD
    engine.dispose()
    assert _diff(store_url, Base.metadata) == []
    Store(store_url).close()  # and opens again


def test_store_from_a_newer_labloop_is_refused_unchanged(store_url):
    store = Store(store_url)
    store.create_campaign("c1", "name: c1\n", "0" * 64)
    store.close()
    engine = _engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099_future_thing'"))
    engine.dispose()
    before = _rows(store_url)

    with pytest.raises(StoreError) as err:
        Store(store_url)
    assert "0099_future_thing" in err.value.problem and HEAD in err.value.problem
    assert "newer labloop" in err.value.fix
    for cmd in (["db", "upgrade"], ["status"], ["export"]):
        r = invoke(*cmd, "--store", store_url)
        assert r.exit_code == 2, r.output
        assert "0099_future_thing" in r.output and HEAD in r.output and "Traceback" not in r.output
    assert _rows(store_url) == before
    engine = _engine(store_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0099_future_thing"
    engine.dispose()


def test_pre_migration_stores_older_than_schema_3_are_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = _engine(url)
    v3.Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO labloop_meta (key, value) VALUES ('schema_version', '2')"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"schema 2 .*older than any this labloop can upgrade") as err:
        Store(url)
    assert "labloop version that wrote it" in err.value.fix
    r = invoke("db", "upgrade", "--store", url)
    assert r.exit_code == 2 and "older than any" in r.output and "alembic_version" not in _tables(url)


def test_upgrade_refuses_while_a_campaign_runs(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _write_v3_store(url)
    engine = _engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE campaigns SET state = 'running'"))
        conn.execute(sa.update(v3.Campaign.__table__).values(heartbeat_at=datetime.now(UTC)))
    engine.dispose()
    r = invoke("db", "upgrade", "--store", url)
    assert r.exit_code == 2 and "campaign 'thinfilm-v3' is running" in r.output and "labloop stop" in r.output
    assert "alembic_version" not in _tables(url)


def test_db_commands_on_a_missing_store_create_nothing(tmp_path):
    path = tmp_path / "none.db"
    for cmd in ("upgrade", "current"):
        r = invoke("db", cmd, "--store", f"sqlite:///{path}")
        assert r.exit_code == 2 and f"no store at {path}" in r.output
    assert not path.exists()


def test_a_store_at_0002_is_upgraded_to_assets_keeping_its_rows(store_url):
    """The previous revision (operator requests, no assets) gains the empty assets table; rows and ids stay."""
    from alembic import command

    _write_v3_store(store_url)
    engine = _engine(store_url)
    with engine.begin() as conn:  # what `labloop db upgrade` of the previous labloop left: revision 0002
        cfg = alembic_config(connection=conn)
        command.stamp(cfg, "0001_baseline")
        command.upgrade(cfg, "0002_operator_requests")
    engine.dispose()
    before = _rows(store_url)
    with pytest.raises(StoreError, match="0002_operator_requests"):
        Store(store_url)
    r = invoke("db", "upgrade", "--store", store_url)
    assert r.exit_code == 0 and f"from revision 0002_operator_requests to {HEAD}" in r.output, r.output
    after = _rows(store_url)
    _check_meta(after.pop("labloop_meta"))
    before.pop("labloop_meta")
    assert after == before
    assert _diff(store_url, Base.metadata) == []
    store = Store(store_url)
    c = store.campaign()
    trial = store.trials(c.id)[0]
    store.add_assets(c.id, trial.id, "run-1", [("/data/a.h5", "f" * 64, 1234)])
    assert [(a.path, a.sha256, a.size, a.trial_id) for a in store.assets(c.id)] == [
        ("/data/a.h5", "f" * 64, 1234, trial.id)
    ]
    with store.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Asset)) == 1
    store.close()


def test_a_store_at_0003_gains_an_empty_calibrations_table_and_downgrades_back(store_url):
    """0004_calibrations adds the table labloop calibrate and calibration steps record into; rows stay."""
    _migrate(store_url, "0003_assets")
    assert "calibrations" not in _tables(store_url)
    with pytest.raises(StoreError, match="0003_assets"):
        Store(store_url)
    r = invoke("db", "upgrade", "--store", store_url)
    assert r.exit_code == 0 and f"from revision 0003_assets to {HEAD}" in r.output, r.output
    assert _diff(store_url, Base.metadata) == []
    store = Store(store_url)
    row = store.add_calibration(None, "probe", {"value": 100.0}, {"gain": 1.01}, user="alice", calibration_id="c1")
    assert (row.device, row.result, row.ok, row.campaign_id) == ("probe", {"gain": 1.01}, True, None)
    assert [a.action for a in store.audit_log()] == ["calibration.recorded"]
    store.close()
    _migrate(store_url, "0003_assets", down=True)
    assert "calibrations" not in _tables(store_url)


def test_a_store_at_0006_gains_empty_stock_tables_and_downgrades_back(store_url):
    """0007_inventory adds the consumables' stocks and movements; a campaign's rows stay, and stocks work."""
    _migrate(store_url, "0006_web_login")
    assert "stocks" not in _tables(store_url)
    with pytest.raises(StoreError, match="0006_web_login"):
        Store(store_url)
    r = invoke("db", "upgrade", "--store", store_url)
    assert r.exit_code == 0 and f"from revision 0006_web_login to {HEAD}" in r.output, r.output
    assert _diff(store_url, Base.metadata) == []
    store = Store(store_url)
    text = (
        "name: inv\nparameters: [{name: m, type: continuous, lower: 0, upper: 5}]\n"
        "objectives: [{name: y, direction: maximize, plugin: p}]\n"
        "lab: {simulator: thinfilm, consumables: {stocks: {Li2CO3: {unit: g, initial: 10}}, use: {Li2CO3: m}}}\n"
        "workflow: [{kind: synthesize, device: furnace}]\n"
    )
    c = store.create_campaign("inv", text, "c" * 64)
    store.open_stocks(c.id)
    store.add_trial(c.id, {"m": 4.0}, "sobol", {}, "ab")
    assert [(s["name"], s["left"]) for s in store.stock_levels(c.id)] == [("Li2CO3", 6.0)]
    store.close()
    engine = _engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM stock_movements"))
        conn.execute(sa.text("DELETE FROM stocks"))
    engine.dispose()
    _migrate(store_url, "0006_web_login", down=True)
    assert "stocks" not in _tables(store_url) and "stock_movements" not in _tables(store_url)
