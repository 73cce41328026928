"""The store keeps campaigns, trials, steps, documents, process points, samples and the audit log, on SQLite and
on PostgreSQL alike, and survives being reopened by another process (here: another Store on the same URL)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from campaign_files import THINFILM
from typer.testing import CliRunner

from labloop.cli import app
from labloop.errors import StoreError
from labloop.store import DocumentWriter, Store

runner = CliRunner()


def _campaign(store: Store):
    return store.create_campaign("c1", "name: c1\n", "0" * 64)


def test_campaign_and_trials_round_trip(store_url):
    store = Store(store_url)
    c = _campaign(store)
    t1 = store.add_trial(c.id, {"x": 1.5, "cat": "a"}, "sobol", {"acq": np.float64(0.25)}, "abcd")
    t2 = store.add_trial(c.id, {"x": np.float32(2.0), "cat": "b"}, "model", {}, "abcd")
    assert (t1.number, t2.number) == (1, 2)
    assert t2.sample_id == "abcd-0002"
    for t in (t1, t2):
        store.transition(t.id, "proposed", "running")
    store.transition(t1.id, "running", "measured")
    store.transition(t1.id, "measured", "done", values={"y": 3.0})
    store.transition(t2.id, "running", "failed", values={"y": float("nan")}, failure_reason="deposit: arc")
    store.close()

    again = Store(store_url)  # a second process sees the same truth
    trials = again.trials(again.campaign().id)
    assert [t.state for t in trials] == ["done", "failed"]
    assert trials[0].values == {"y": 3.0}
    assert trials[0].info == {"acq": 0.25}
    assert trials[1].values == {"y": None}  # NaN is stored as null: PostgreSQL JSON has no NaN
    assert trials[1].failure_reason == "deposit: arc"
    assert trials[1].params == {"x": 2.0, "cat": "b"}
    again.close()


def test_campaign_lookup_by_id_uid_name_and_errors(store_url):
    store = Store(store_url)
    with pytest.raises(StoreError, match="holds no campaign yet"):
        store.campaign()
    a = _campaign(store)
    b = store.create_campaign("other", "name: other\n", "1" * 64)
    assert store.campaign().id == b.id
    assert store.campaign(str(a.id)).name == "c1"
    assert store.campaign(a.uid).id == a.id
    assert store.campaign("c1").id == a.id
    with pytest.raises(StoreError, match="no campaign 'nope'"):
        store.campaign("nope")
    store.close()


def test_document_writer_stores_documents_and_process_points(store_url):
    store = Store(store_url)
    c = _campaign(store)
    t = store.add_trial(c.id, {"x": 1.0}, "sobol", {}, "abcd")
    w = DocumentWriter(store, c.id, t.id, flush_every=3)
    w("start", {"uid": "run-1", "time": 1.0, "trial": 1})
    w("descriptor", {"uid": "d-mon", "run_start": "run-1", "name": "chamber_pressure", "data_keys": {}})
    w("descriptor", {"uid": "d-pri", "run_start": "run-1", "name": "primary", "data_keys": {}})
    for i in range(5):
        w(
            "event",
            {
                "uid": f"e{i}",
                "descriptor": "d-mon",
                "time": 10.0 + i,
                "seq_num": i + 1,
                "data": {"chamber_pressure": 1.0 + i},
                "timestamps": {"chamber_pressure": 10.0 + i},
            },
        )
    w(
        "event",
        {
            "uid": "ep",
            "descriptor": "d-pri",
            "time": 20.0,
            "seq_num": 1,
            "data": {"probe_sheet_resistance": 4.2, "flag": True, "bad": math.inf},
            "timestamps": {"probe_sheet_resistance": 20.0},
        },
    )
    w("stop", {"uid": "s", "run_start": "run-1", "exit_status": "success"})
    docs = store.documents(trial_id=t.id)
    assert [n for n, _ in docs] == ["start", "descriptor", "descriptor"] + ["event"] * 6 + ["stop"]
    assert docs[-2][1]["data"]["probe_sheet_resistance"] == 4.2
    assert docs[-2][1]["data"]["bad"] is None
    points = store.process_points(t.id)
    # only the monitored stream becomes process points, not the primary reading
    assert [(p.signal, p.value) for p in points] == [("chamber_pressure", 1.0 + i) for i in range(5)]
    assert [p.t for p in points] == [10.0 + i for i in range(5)]
    assert store.documents(run_uid="run-1") == docs
    store.close()


def test_steps_samples_and_audit(store_url):
    store = Store(store_url)
    c = _campaign(store)
    t = store.add_trial(c.id, {"x": 1.0}, "seed", {}, "abcd")
    s0 = store.start_step(t.id, 0, "transfer:chamber", "transfer")
    assert store.trial(t.id).current_step == 0
    store.finish_step(s0, "done", "run-1")
    s1 = store.start_step(t.id, 1, "synthesize:chamber", "synthesize")
    store.finish_step(s1, "failed", "run-2", "DeviceError: arc")
    steps = store.steps(t.id)
    assert [(s.label, s.state, s.error) for s in steps] == [
        ("transfer:chamber", "done", None),
        ("synthesize:chamber", "failed", "DeviceError: arc"),
    ]
    assert store.trial(t.id).current_step == 1
    store.locate_sample(c.id, t.sample_id, "load_lock", t.id)
    store.locate_sample(c.id, t.sample_id, "chamber", t.id)
    assert [(s.sample_id, s.location) for s in store.samples(c.id)] == [(t.sample_id, "chamber")]
    store.finish_campaign(c.id, "finished", "target reached at trial 1")
    actions = [a.action for a in store.audit_log(c.id)]
    assert actions == ["campaign.start", "campaign.finished"]
    assert store.campaign().stop_reason == "target reached at trial 1"
    store.close()


def test_bad_store_urls_are_explained(tmp_path):
    with pytest.raises(StoreError, match="not a database URL"):
        Store("not a url")
    with pytest.raises(StoreError, match="cannot open store") as err:
        Store(f"sqlite:///{tmp_path}/missing-dir/x.db")
    assert f"the folder {tmp_path}/missing-dir does not exist" in err.value.problem
    assert "create the folder, or choose another path" in err.value.fix and "server" not in str(err.value)
    assert not (tmp_path / "missing-dir").exists()
    with pytest.raises(StoreError, match="is a folder, not a store file"):
        Store(f"sqlite:///{tmp_path}")
    (tmp_path / "campaign.yaml").write_text("name: x\n" * 100)
    with pytest.raises(StoreError, match="the file is not an SQLite database") as err:
        Store(f"sqlite:///{tmp_path / 'campaign.yaml'}")
    assert "--store" in err.value.fix
    assert (tmp_path / "campaign.yaml").read_text() == "name: x\n" * 100


def test_another_applications_database_is_not_taken_over(tmp_path):
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('ae1027a6acf')")
    with pytest.raises(StoreError, match="holds no labloop store but another application's tables") as err:
        Store(f"sqlite:///{path}")
    assert "of its own" in err.value.fix
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == [
            "alembic_version",
            "sqlite_autoindex_alembic_version_1",
        ]


def test_unreachable_database_server_is_explained():
    with pytest.raises(StoreError) as err:
        Store("postgresql://labloop:secret@127.0.0.1:1/lab")  # nothing listens on port 1
    assert "cannot connect to the database server at 127.0.0.1:1" in err.value.problem
    assert "secret" not in str(err.value)
    assert "check that the server runs and the URL" in err.value.fix


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:///file::memory:?uri=true",
        "sqlite:///file:x?mode=memory&uri=true",
    ],
)
def test_in_memory_sqlite_is_refused(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError) as err:
        Store(url)
    assert f"'{url}' is an in-memory database" in err.value.problem
    assert "give a file path, e.g. --store sqlite:///labloop.db" in err.value.fix
    r = runner.invoke(app, ["run", str(THINFILM), "--store", url], catch_exceptions=False)
    assert r.exit_code == 2 and "in-memory database" in r.output and "Traceback" not in r.output
    assert list(tmp_path.iterdir()) == []


def test_reading_commands_create_no_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError) as err:
        Store(create=False)
    assert err.value.problem == f"no store at {tmp_path / 'labloop.db'}"
    assert err.value.fix == "run `labloop run FILE` in this folder first, or pass --store"
    for cmd in (["status"], ["export"], ["pause"], ["resume"], ["approve", "1"], ["db", "current"]):
        r = runner.invoke(app, cmd, catch_exceptions=False)
        assert r.exit_code == 2, (cmd, r.output)
        assert "no store at" in r.output and "Traceback" not in r.output
    assert list(tmp_path.iterdir()) == []


def _read_only_url(url: str) -> str:
    """The same store opened read-only: SQLite's read-only mode, or PostgreSQL read-only transactions."""
    if url.startswith("sqlite:///"):
        return f"sqlite:///file:{url[len('sqlite:///') :]}?mode=ro&uri=true"
    assert "options=-c" in url  # conftest's fresh-schema URL
    return url + "%20-cdefault_transaction_read_only%3Don"


def test_read_only_store_refuses_writes_cleanly_and_still_reads(store_url):
    """Tests run as root, which ignores permission bits; SQLite's read-only mode takes the same path."""
    store = Store(store_url)
    store.create_campaign("c1", THINFILM.read_text(), "0" * 64)
    store.close()
    url = _read_only_url(store_url)
    with pytest.raises(StoreError) as err:
        Store(url)  # a command that writes learns it before starting anything
    assert "is read-only" in err.value.problem and "writable" in err.value.fix
    reader = Store(url, create=False)
    assert reader.campaign().name == "c1"
    with pytest.raises(StoreError, match="is read-only"):  # a write later on: a StoreError, not an SQL traceback
        reader.request(reader.campaign().id, "pause")
    reader.close()
    r = runner.invoke(app, ["run", str(THINFILM), "--store", url], catch_exceptions=False)
    assert r.exit_code == 2 and "is read-only" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["pause", "--store", url], catch_exceptions=False)
    assert r.exit_code == 2 and "is read-only" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["status", "--store", url], catch_exceptions=False)
    assert r.exit_code == 0 and "c1" in r.output and "trials: none" in r.output, r.output
    r = runner.invoke(app, ["export", "--store", url], catch_exceptions=False)
    assert r.exit_code == 0 and r.output.startswith("trial,state,"), r.output
