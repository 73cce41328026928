"""Provenance on every run (so on every reading and asset): devices with driver, version, serial and calibration,
labloop's version, the campaign file's hash, host, process and the user who submitted it; and `labloop show trial`,
which prints a trial's whole chain."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

import pytest
from labloop_simulators.thinfilm.lab import sim_serial
from running import start, two_chamber
from test_dock import DOCK_STEPS, dock_campaign
from typer.testing import CliRunner

from labloop import __version__
from labloop.cli import app
from labloop.run import provenance
from labloop.store import Store
from labloop.store.repository import _user

cli = CliRunner()


def invoke(*args: str):
    return cli.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prov")
    store, runner = start(two_chamber(max_trials=3), tmp)
    calls = []
    original = store.audit_log
    store.audit_log = lambda *a, **k: calls.append(a) or original(*a, **k)  # type: ignore[method-assign]  # a spy
    runner.run()
    store.audit_log = original  # type: ignore[method-assign]  # the spy removed
    yield store, runner, f"sqlite:///{tmp / 'labloop.db'}", calls
    store.close()


def starts(store, trial_id):
    return [d for n, d in store.documents(trial_id=trial_id) if n == "start"]


def test_every_run_start_document_carries_its_provenance(campaign):
    store, runner, _, audit_calls = campaign
    c = runner.campaign
    lab = runner.p.lab
    trials = store.trials(c.id)
    assert [t.state for t in trials] == ["done"] * 3
    host = socket.gethostname()
    for t in trials:
        steps = store.steps(trial_id=t.id)
        docs = {d["uid"]: d for d in starts(store, t.id)}
        assert len(docs) == len(steps) == 5
        for s in steps:
            prov = docs[s.run_uid]["provenance"]
            assert prov["labloop_version"] == __version__
            assert prov["spec_hash"] == c.spec_hash and len(c.spec_hash) == 64
            assert prov["user"] == _user() == store.audit_log(c.id)[0].user
            assert prov["host"] == host and prov["process"] == f"{host}:{os.getpid()}"
            devices = prov["devices"]
            assert s.device in devices  # the station, instrument or robot that did the step
            if s.kind == "transfer":
                assert devices[s.device]["role"] == "robot" and s.device == "robot"
            for name, d in devices.items():
                dev = lab.devices[name]
                cls = type(dev)
                assert d["driver"] == f"{cls.__module__}.{cls.__qualname__}"
                assert (d["driver_module"], d["driver_class"]) == (cls.__module__, cls.__qualname__)
                assert d["driver_version"] == provenance.driver_version(cls.__module__) != "unknown"
                assert d["serial"] == sim_serial(runner.spec.seed, name) == dev.serial
                assert d["calibration"] is None and d["calibration_age_s"] is None
    synth = next(s for s in store.steps(trial_id=trials[0].id) if s.kind == "synthesize")
    prov = {d["uid"]: d for d in starts(store, trials[0].id)}[synth.run_uid]["provenance"]
    assert list(prov["devices"]) == [synth.device] and prov["devices"][synth.device]["role"] == "station"
    assert prov["devices"][synth.device]["driver_class"] == "SimSputterChamber"
    # the submitter is not read from the store per step: the runner registered it once
    assert audit_calls == []


def test_serials_are_stable_and_distinct():
    assert sim_serial(7, "probe") == sim_serial(7, "probe")
    assert len({sim_serial(7, "probe"), sim_serial(8, "probe"), sim_serial(7, "robot")}) == 3


def test_calibration_in_force_is_recorded_with_its_age():
    class Calibrated:
        serial = "SN-1"
        calibration = {"id": "cal-42", "at": "2026-01-01T00:00:00+00:00", "by": "alice"}

    class Plain:
        device_id = 17

    origin = provenance.Origin("uid", "0" * 64, "alice", __version__, "h", "h:1")
    now = datetime(2026, 1, 1, 1, tzinfo=UTC)
    prov = provenance.Recorder().for_run(
        origin, [("a", Calibrated(), "instrument"), ("b", Plain(), "source"), ("c", None, "destination")], now
    )
    a, b = prov["devices"]["a"], prov["devices"]["b"]
    assert a["calibration"] == Calibrated.calibration and a["calibration_age_s"] == 3600.0
    assert a["serial"] == "SN-1" and b["serial"] == "17" and "c" not in prov["devices"]
    assert b["calibration"] is None and b["calibration_age_s"] is None
    assert prov["user"] == "alice" and prov["schema"] == provenance.SCHEMA
    later = provenance.Recorder().for_run(origin, [("a", Calibrated(), "instrument")], now + timedelta(hours=1))
    assert later["devices"]["a"]["calibration_age_s"] == 7200.0


def test_driver_version_falls_back_to_module_version():
    assert provenance.driver_version("labloop.run.executor") == provenance.driver_version("labloop")
    assert provenance.driver_version("no_such_module_anywhere") == "unknown"


def test_origin_is_read_from_the_store_once_when_not_registered(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    c = store.create_campaign("x", "text", "a" * 64)
    o = provenance.origin(store, c.uid, c.id)
    assert (o.user, o.spec_hash) == (_user(), "a" * 64)
    store.close()
    assert provenance.origin(store, c.uid, c.id) is o  # registered: no store query (the store is closed)


def test_show_trial_prints_the_whole_chain(campaign):
    store, runner, url, _ = campaign
    r = invoke("show", "trial", "1", "--store", url)
    assert r.exit_code == 0, r.output
    out = r.output
    t = store.trials(runner.campaign.id)[0]
    assert f"trial 1 of campaign '{runner.campaign.name}'" in out
    for name in t.params:
        assert f"{name}=" in out
    assert f"proposal: {t.source}" in out
    for s in store.steps(trial_id=t.id):
        assert f"{s.index} {s.label} on {s.device}, attempt 1: done" in out
    assert "device robot (robot): labloop_simulators.thinfilm.devices.SimTransferRobot" in out
    assert f"serial {sim_serial(runner.spec.seed, 'probe')}" in out and "calibration none" in out
    assert "sheet_resistance" in out and "ohm" in out  # a reading of the probe's primary stream, with units
    assert "process streams" in out and " points, min " in out and ", last " in out
    # each stream's line carries its unit (a step's readings, printed first, once overwrote the table of units)
    units = {
        k: v["units"]
        for n, d in store.documents(trial_id=t.id)
        if n == "descriptor"
        for k, v in d["data_keys"].items()
        if v.get("units")
    }
    streams = {p.signal for p in store.process_points(t.id)}
    lines = {line.split(":")[0].strip(): line for line in out.splitlines() if " points, min " in line}
    assert streams and streams <= set(lines) and any(s in units for s in streams)
    for s in streams & set(units):
        assert ", last " in lines[s] and lines[s].endswith(f" {units[s]}"), lines[s]
    assert runner.campaign.spec_hash in out and f"labloop {__version__}" in out
    assert "Traceback" not in out


def test_show_trial_bad_input_exits_2_with_a_clear_message(campaign, tmp_path):
    _, runner, url, _ = campaign
    r = invoke("show", "trial", "999", "--store", url)
    assert r.exit_code == 2
    assert (
        f"campaign '{runner.campaign.name}' (id {runner.campaign.id}) has no trial 999: it has trials 1-3" in r.output
        and "fix:" in r.output
    )
    r = invoke("show", "trial", "1", "--store", f"sqlite:///{tmp_path / 'nothing.db'}")
    assert r.exit_code == 2 and "no store at" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "nothing.db").exists()
    r = invoke("show", "trial", "1", "--store", url, "--campaign", "nope")
    assert r.exit_code == 2 and "holds no campaign 'nope'" in r.output


def test_show_trial_of_a_dock_campaign_lists_its_assets_with_checksums(tmp_path):
    store, runner = start(dock_campaign(tmp_path, max_trials=1), tmp_path)
    runner.run()
    t = store.trials(runner.campaign.id)[0]
    assert t.state == "done"
    assets = store.assets(runner.campaign.id, t.id)
    assert len(assets) == 3
    # the assets' runs carry the provenance of the dock instrument that wrote them
    by_run = {d["uid"]: d for d in starts(store, t.id)}
    for a in assets:
        devices = by_run[a.run_uid]["provenance"]["devices"]
        (name,) = devices
        assert name in DOCK_STEPS and devices[name]["serial"] == sim_serial(runner.spec.seed, name)
    store.close()
    r = invoke("show", "trial", "1", "--store", f"sqlite:///{tmp_path / 'labloop.db'}")
    assert r.exit_code == 0, r.output
    assert "assets (3):" in r.output
    for a in assets:
        assert f"{a.path} sha256 {a.sha256} {a.size} bytes" in r.output
    for device in DOCK_STEPS:
        assert f"on {device}, attempt 1: done" in r.output
    assert "in an asset file" in r.output


def test_show_trial_of_a_failed_trial_gives_the_reason_the_failed_run_and_the_audit(tmp_path):
    data = two_chamber(max_trials=1, options={"probe_fault_rate": 1.0})
    data["workflow"][3].update(retries=1, retry_backoff=0)
    store, runner = start(data, tmp_path)
    runner.run()
    (t,) = store.trials(runner.campaign.id)
    assert t.state == "failed"
    failed = [s for s in store.steps(trial_id=t.id) if s.state == "failed"]
    assert [s.attempt for s in failed] == [1, 2]
    by_run = {d["uid"]: d for d in starts(store, t.id)}
    assert all(by_run[s.run_uid]["provenance"]["devices"]["probe"]["role"] == "instrument" for s in failed)
    store.close()
    r = invoke("show", "trial", "1", "--store", f"sqlite:///{tmp_path / 'labloop.db'}")
    assert r.exit_code == 0, r.output
    assert f"failure: {t.failure_reason}" in r.output
    assert "3 measure:probe on probe, attempt 2: failed" in r.output and "error: probe: " in r.output
    assert "audit (1):" in r.output and "step.retry" in r.output


def test_origin_of_a_campaign_the_store_does_not_hold_does_not_fail_the_run(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    o = provenance.origin(store, "not-a-stored-campaign", 99)
    store.close()
    assert (o.spec_hash, o.user, o.labloop_version) == ("unknown", "unknown", __version__)
