"""Calibration (issue 11 item 5): the simulated probe drifts with simulated time since its last calibration and a
calibration against its check standard resets it; `labloop calibrate` records calibrations (store + audit); a
campaign's lab.calibration.<device>.max_age makes the scheduler calibrate (recorded `calibrate` steps) or pause."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import pytest
import yaml
from labloop_simulators.thinfilm import physics
from labloop_simulators.thinfilm.devices import REFERENCE_RECIPE, SimFourPointProbe, place_coated_sample
from labloop_simulators.thinfilm.lab import build_lab
from running import in_background, start, two_chamber, wait_for
from typer.testing import CliRunner

from labloop.cli import app
from labloop.data.export import export
from labloop.errors import SpecError
from labloop.run import calibration, provenance
from labloop.run.campaign import prepare_text

cli = CliRunner()
DRIFT = 0.03  # 3 % per simulated hour: a worn probe, so a few trials show it
TS = 3600.0  # 1 simulated hour = 1 s: the store's milliseconds between a calibration and a reading stay seconds


def invoke(*args: str):
    return cli.invoke(app, list(args), catch_exceptions=False)


def drifting(max_trials: int = 3, policy: dict | None = None) -> dict:
    data = two_chamber(max_trials=max_trials, options={"probe_drift": DRIFT, "noise": 0.0})
    data["lab"]["time_scale"] = TS
    if policy is not None:
        data["lab"]["calibration"] = {"probe": policy}
    return data


def test_drift_grows_with_simulated_time_and_calibration_resets_it():
    # 1 simulated hour = 100 ms: a busy machine's stall of a few tenths of a second is well inside the bounds below
    lab = build_lab({"probe_drift": 0.01, "noise": 0.0}, time_scale=36000.0)
    probe = lab.devices["probe"]
    place_coated_sample(probe)
    truth = physics.film(REFERENCE_RECIPE).sheet_resistance

    def error() -> float:
        probe.trigger().wait(5)
        return probe.sheet_resistance.get() / truth - 1.0

    assert probe.calibration is None
    first = error()
    time.sleep(2.0)  # ~20 simulated hours
    later = error()
    assert later > first + 0.15  # ~1 %/h of tip wear
    cal = probe.calibrate()
    assert set(cal) >= {"id", "at", "reference", "result"} and cal["reference"]["value"] == 100.0
    assert cal["result"]["gain"] == pytest.approx(probe.gain(), rel=0.01)  # the first: drift since switch-on
    assert cal["result"]["correction"] == pytest.approx(1 / cal["result"]["gain"])
    assert abs(error()) < 0.05  # reset (20 h of wear was > 0.15)
    assert probe.calibration == cal and probe.calibration_age() < 5 * 3600.0  # hours, not the 20 h since switch-on
    _, age = provenance.calibration(probe, datetime.now(UTC))
    assert age is not None and age >= 0


def test_calibrate_command_records_the_calibration_and_provenance_shows_it(tmp_path):
    store, runner = start(drifting(max_trials=1), tmp_path)
    runner.run()
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    r = invoke("calibrate", "probe", "--store", url, "--user", "alice")
    assert r.exit_code == 0, r.output
    assert "calibrated 'probe'" in r.output and "gain=" in r.output
    rows = store.calibrations(device="probe")
    assert len(rows) == 1
    row = rows[0]
    assert row.campaign_id == runner.campaign.id and row.ok and row.user == "alice"
    assert row.reference["value"] == 100.0 and math.isfinite(row.result["gain"]) and row.run_uid
    audit = [a for a in store.audit_log(runner.campaign.id) if a.action == "calibration.recorded"]
    assert len(audit) == 1 and audit[0].user == "alice" and audit[0].detail["device"] == "probe"
    # a lab rebuilt for the campaign (resume) puts it in force; every run's provenance then shows it with its age
    lab = prepare_text(runner.campaign.spec_text, "stored").lab
    assert calibration.restore(store, lab) == ["probe"]
    origin = provenance.Origin(runner.campaign.uid, "h", "alice")
    prov = provenance.Recorder().for_run(origin, [("probe", lab.devices["probe"], "instrument")])
    d = prov["devices"]["probe"]
    assert d["calibration"]["id"] == row.calibration_id and d["calibration_age_s"] >= 0
    store.close()


def _errors(store, runner) -> list[float]:
    """Relative error of every probe reading of the campaign against the film's true sheet resistance."""
    registry = runner.p.lab.devices["probe"].registry
    out = []
    for t in store.trials(runner.campaign.id):
        truth = registry.get(t.sample_id).properties["film"]["sheet_resistance"]
        for name, doc in store.documents(trial_id=t.id):
            if name == "event" and "probe_sheet_resistance" in doc["data"]:
                out.append(doc["data"]["probe_sheet_resistance"] / truth - 1.0)
    return out


def test_short_max_age_inserts_calibration_steps_and_keeps_readings_accurate(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    store, runner = start(drifting(policy={"max_age": 1800, "on_expiry": "calibrate"}), tmp_path / "a")
    runner.run()
    cid = runner.campaign.id
    trials = store.trials(cid)
    assert [t.state for t in trials] == ["done"] * 3
    cal_steps = [s for s in store.steps(campaign_id=cid) if s.kind == "calibrate"]
    measures = [s for s in store.steps(campaign_id=cid) if s.kind == "measure"]
    # a measurement more than 30 simulated min after the last calibration is preceded by one (the two first
    # trials, deposited side by side, may share one)
    assert len(measures) == 3 and 2 <= len(cal_steps) <= 3
    assert all(s.state == "done" and s.label == "calibrate:probe" and s.device == "probe" for s in cal_steps)
    assert len(store.calibrations(device="probe", campaign_id=cid)) == len(cal_steps)
    calibrated = _errors(store, runner)
    assert len(calibrated) == 3 and max(abs(e) for e in calibrated) < 0.02  # <= drift x max_age (1.5 %)
    assert "calibration_expired" in export(store, "csv").splitlines()[0]
    assert all(r["calibration_expired"] is False for r in yaml.safe_load(export(store, "json")))
    store.close()

    store, runner = start(drifting(), tmp_path / "b")  # the same lab without a maximum age
    runner.run()
    assert not [s for s in store.steps(campaign_id=runner.campaign.id) if s.kind == "calibrate"]
    drifted = _errors(store, runner)
    assert max(abs(e) for e in drifted) > 0.04 > 0.02 > max(abs(e) for e in calibrated)
    store.close()


def test_on_expiry_pause_pauses_with_the_message_then_calibrate_and_resume(tmp_path):
    store, runner = start(drifting(max_trials=1, policy={"max_age": 600, "on_expiry": "pause"}), tmp_path)
    th, result = in_background(runner)
    cid = runner.campaign.id
    wait_for(lambda: store.campaign(cid).state == "paused", timeout=60)
    note = store.campaign(cid).note
    assert "calibration of 'probe' expired" in note and f"labloop calibrate probe --campaign {cid}" in note
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    # calibrate and resume at every pause: on a busy machine the 600 lab seconds (0.17 s of wall time) may run out
    # again between the resume and the measurement, and then the campaign rightly pauses again
    deadline = time.monotonic() + 120
    answered = set()
    while th.is_alive() and time.monotonic() < deadline:
        c = store.campaign(cid)
        if c.state == "paused" and c.note not in answered:
            answered.add(c.note)
            r = invoke("calibrate", "probe", "--store", url, "--campaign", str(cid))
            assert r.exit_code == 0, r.output
            store.request(cid, "resume")
        time.sleep(0.05)
    th.join(30)
    assert not th.is_alive()
    assert [t.state for t in store.trials(cid)] == ["done"]
    # the recorded calibration was put in force on resume: the reading is not flagged
    starts = [d for t in store.trials(cid) for n, d in store.documents(trial_id=t.id) if n == "start"]
    assert not any(d.get("calibration_expired") for d in starts)
    assert runner.p.lab.devices["probe"].calibration["id"] == store.calibrations(device="probe")[-1].calibration_id
    store.close()


def test_bad_input_is_refused(tmp_path, monkeypatch):
    data = drifting(policy={"max_age": 600})
    data["lab"]["calibration"] = {"nosuch": {"max_age": 600}}
    with pytest.raises(SpecError, match=r"lab.calibration.nosuch: the lab has no device 'nosuch'"):
        prepare_text(yaml.safe_dump(data), "c.yaml")
    data["lab"]["calibration"] = {"robot": {"max_age": 600}}
    with pytest.raises(SpecError, match=r"lab.calibration.robot: the lab cannot calibrate device 'robot'"):
        prepare_text(yaml.safe_dump(data), "c.yaml")
    data["lab"]["calibration"] = {"probe": {"max_age": -1}}
    with pytest.raises(SpecError, match="max_age"):
        prepare_text(yaml.safe_dump(data), "c.yaml")

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(drifting()))
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    r = invoke("calibrate", "nosuch", "--file", str(path), "--store", url)
    assert r.exit_code == 2 and "has no device 'nosuch'" in r.output and "Traceback" not in r.output

    from labloop.store import Store

    for bad in (math.nan, 7.0):
        monkeypatch.setattr(SimFourPointProbe, "_fit", staticmethod(lambda values, known, g=bad: {"gain": g}))
        r = invoke("calibrate", "probe", "--file", str(path), "--store", url)
        assert r.exit_code == 2 and "malformed" in r.output and "Traceback" not in r.output, r.output
    store = Store(url)
    assert store.calibrations() == [] and not [a for a in store.audit_log() if a.action == "calibration.recorded"]
    store.close()
    # labloop's own check, for a driver that puts a bad result in force
    with pytest.raises(Exception, match=r"malformed|outside"):
        calibration.check_result(
            "probe", SimFourPointProbe, {"id": "x", "at": "2026-01-01T00:00:00Z", "result": {"gain": math.inf}}
        )


# ------------------------------------------------------------------------------------------------ UV-vis
def _visible_truth(dev) -> float:
    from labloop_simulators.thinfilm import characterization as ch

    props = dev.registry.get(str(dev.sample.get())).properties
    T = ch.transmittance(props["film"], props["recipe"])
    return float(T[(ch.WAVELENGTHS >= 400) & (ch.WAVELENGTHS <= 700)].mean())


def test_spectrometer_lamp_drift_reads_low_by_the_documented_factor_and_calibration_brings_it_back(tmp_path):
    lab = build_lab(
        {"dock": True, "uvvis_drift": 0.01, "noise": 0.0, "data_dir": str(tmp_path)}, time_scale=3600.0
    )  # 1 simulated hour = 1 s: a scan takes 0.08 s
    uvvis = lab.devices["uvvis"]
    place_coated_sample(uvvis)
    truth = _visible_truth(uvvis)

    def ratio() -> tuple[float, float, float]:
        before = uvvis.gain() * uvvis._correction
        uvvis.trigger().wait(5)
        return before, uvvis.visible_transmittance.get() / truth, uvvis.gain() * uvvis._correction

    assert uvvis.calibration is None and calibration.calibratable(uvvis)
    uvvis._t_on -= 20 * 3600.0  # switched on 20 simulated hours ago
    lo_gain, measured, hi_gain = ratio()
    # off by the documented factor 1 / (1 + drift h), h at the moment of the scan (between before and after it)
    assert 1.0 / (1.0 + 0.01 * 20) >= lo_gain >= measured >= hi_gain  # 1 %/h of lamp dimming: >16 % low
    cal = uvvis.calibrate()
    assert cal["reference"] == {"name": "100 % line (empty beam)", "value": 1.0, "units": "fraction"}
    assert cal["result"]["gain"] <= 1.0 / 1.2  # the first: the drift since switch-on
    assert cal["result"]["correction"] == pytest.approx(1 / cal["result"]["gain"])
    lo_gain, measured, hi_gain = ratio()
    # reset: only the drift since the calibration (the ratio of the gains now and then) is left
    assert 1.0 >= lo_gain >= measured >= hi_gain > 0.9
    # a certified neutral-density filter as the reference works too, and a nonsense one is refused
    assert uvvis.calibrate(0.5)["reference"]["value"] == 0.5
    with pytest.raises(Exception, match="not a positive number"):
        uvvis.calibrate(-1.0)


def _uvvis_campaign(max_trials: int, policy: dict | None) -> dict:
    data = two_chamber(
        max_trials=max_trials, options={"uvvis_drift": DRIFT, "noise": 0.0, "dock": True, "dock_minutes": 5}
    )
    data["lab"]["time_scale"] = TS
    data["workflow"][-1:-1] = [{"kind": "transfer", "to": "uvvis"}, {"kind": "measure", "device": "uvvis"}]
    if policy is not None:
        data["lab"]["calibration"] = {"uvvis": policy}
    return data


def _uvvis_errors(store, runner) -> list[float]:
    from labloop_simulators.thinfilm import characterization as ch

    registry = runner.p.lab.devices["uvvis"].registry
    band = (ch.WAVELENGTHS >= 400) & (ch.WAVELENGTHS <= 700)
    out = []
    for t in store.trials(runner.campaign.id):
        props = registry.get(t.sample_id).properties
        truth = float(ch.transmittance(props["film"], props["recipe"])[band].mean())
        out += [
            doc["data"]["uvvis_visible_transmittance"] / truth - 1.0
            for name, doc in store.documents(trial_id=t.id)
            if name == "event" and "uvvis_visible_transmittance" in doc["data"]
        ]
    return out


def test_spectrometer_max_age_inserts_calibrate_steps_and_the_command_calibrates_it(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    store, runner = start(_uvvis_campaign(2, {"max_age": 1800, "on_expiry": "calibrate"}), tmp_path / "a")
    runner.run()
    cid = runner.campaign.id
    assert [t.state for t in store.trials(cid)] == ["done"] * 2
    cal_steps = [s for s in store.steps(campaign_id=cid) if s.kind == "calibrate"]
    assert cal_steps and all(s.label == "calibrate:uvvis" and s.state == "done" for s in cal_steps)
    rows = store.calibrations(device="uvvis", campaign_id=cid)
    assert len(rows) == len(cal_steps) and all(r.reference["value"] == 1.0 and r.result["gain"] < 1 for r in rows)
    calibrated = _uvvis_errors(store, runner)
    assert len(calibrated) == 2 and max(abs(e) for e in calibrated) < 0.02  # <= drift x max_age (1.5 %)
    store.close()

    store, runner = start(_uvvis_campaign(2, None), tmp_path / "b")  # the same lab without a maximum age
    runner.run()
    assert not [s for s in store.steps(campaign_id=runner.campaign.id) if s.kind == "calibrate"]
    drifted = _uvvis_errors(store, runner)
    assert len(drifted) == 2 and all(e < -0.025 for e in drifted)  # >1.2 h since switch-on at 3 %/h: >3.5 % low
    r = invoke("calibrate", "uvvis", "--store", f"sqlite:///{tmp_path / 'b' / 'labloop.db'}", "--user", "bob")
    assert r.exit_code == 0, r.output
    assert "calibrated 'uvvis'" in r.output and "100 % line" in r.output
    (row,) = store.calibrations(device="uvvis")
    assert row.user == "bob" and row.campaign_id == runner.campaign.id and row.run_uid
    store.close()


def test_spectrometer_drift_needs_the_dock():
    with pytest.raises(SpecError, match="uvvis_drift: the lab has no UV-vis spectrometer without the dock"):
        build_lab({"uvvis_drift": 0.01})


# ---- issue 21 item 4: calibration on the lab's clock, at the bundled time scale ------------------------------------
BUNDLED_TS = 20000.0  # experiments/thinfilm.yaml and transparent_conductor.yaml


def _measure_provenance(store, cid):
    """(trial number, the probe's provenance) of every measure run of the campaign."""
    out = []
    for t in store.trials(cid):
        for name, doc in store.documents(trial_id=t.id):
            if name == "start" and doc.get("step") == "measure:probe":
                out.append((t.number, doc["provenance"]["devices"]["probe"]))
    return out


def test_a_calibration_recorded_before_the_run_is_used_and_ages_in_lab_time(tmp_path):
    """`labloop calibrate probe --file` before `labloop run`: the run puts it in force (no pause although the policy
    pauses), and each reading's provenance (and `labloop show`) gives its age in simulated seconds: a reading after a
    60-minute deposition is over an hour old, not the fraction of a wall second it took at time scale 20000."""
    from campaign_files import write

    data = drifting(max_trials=2, policy={"max_age": 48 * 3600.0, "on_expiry": "pause"})
    data["lab"]["time_scale"] = BUNDLED_TS
    path = write(tmp_path, data)
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    r = invoke("calibrate", "probe", "--file", str(path), "--store", url)
    assert r.exit_code == 0, r.output
    r = invoke("run", str(path), "--store", url)
    assert r.exit_code == 0, r.output
    assert "paused" not in r.output
    from labloop.store import Store

    store = Store(url)
    pre = store.calibrations(device="probe")
    assert len(pre) == 1 and pre[0].campaign_id is None  # the one made with --file; none made by the run
    cid = store.campaign().id
    assert [t.state for t in store.trials(cid)] == ["done", "done"]
    assert [a.detail for a in store.audit_log(cid) if a.action == "calibration.restored"] == [{"devices": ["probe"]}]
    measured = _measure_provenance(store, cid)
    assert len(measured) == 2
    for _, d in measured:
        assert d["calibration"]["id"] == pre[0].calibration_id
        assert d["calibration_age_s"] >= 3600.0  # the 60-minute deposition came after it was put in force
    starts = [d for t in store.trials(cid) for n, d in store.documents(trial_id=t.id) if n == "start"]
    assert not any(d.get("calibration_expired") for d in starts)
    store.close()
    shown = invoke("show", "trial", "1", "--store", url).output
    assert f"calibration {pre[0].calibration_id}" in shown and "old in the lab's time" in shown
    assert " 0 s old" not in shown


def test_a_real_devices_recorded_calibration_older_than_max_age_is_not_put_in_force():
    """A device without its own clock ages in wall-clock time: an old calibration stays out, a recent one is used."""
    from datetime import timedelta
    from types import SimpleNamespace

    class RealProbe:
        calibrator = object()
        calibration = None

        def restore_calibration(self, cal):
            self.calibration = dict(cal)

    now = datetime.now(UTC)
    rows = {
        "old": SimpleNamespace(
            id=1, calibration_id="cal-old", at=now - timedelta(hours=3), reference={}, result={"gain": 1.0}
        ),
        "new": SimpleNamespace(
            id=2, calibration_id="cal-new", at=now - timedelta(minutes=5), reference={}, result={"gain": 1.0}
        ),
    }
    policy = {"probe": SimpleNamespace(max_age=3600.0)}
    for which, expected in (("old", None), ("new", "cal-new")):
        lab = SimpleNamespace(devices={"probe": RealProbe()})
        store = SimpleNamespace(calibrations=lambda device, _r=rows[which]: [_r])
        calibration.restore(store, lab, policy)
        assert (lab.devices["probe"].calibration or {}).get("id") == expected
    lab = SimpleNamespace(devices={"probe": RealProbe()})  # no policy: the latest is in force whatever its age
    calibration.restore(SimpleNamespace(calibrations=lambda device: [rows["old"]]), lab, {})
    assert lab.devices["probe"].calibration["id"] == "cal-old"


def test_pause_calibrate_resume_continues_at_the_bundled_time_scale(tmp_path):
    """on_expiry: pause -> `labloop calibrate` -> `labloop resume` continues the campaign at time scale 20000: the
    calibration is put in force on resume and its age counts from there in the lab's time, so the paused step and
    the trials after it go on (no pause with a calibration younger than max_age, no flagged reading)."""
    data = drifting(max_trials=4, policy={"max_age": 4 * 3600.0, "on_expiry": "pause"})
    data["lab"]["time_scale"] = BUNDLED_TS
    data["lab"]["options"]["probe_drift"] = 0.0  # pauses are about the clock here, not the drift
    store, runner = start(data, tmp_path)
    th, result = in_background(runner)
    cid = runner.campaign.id
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    notes = []
    deadline = time.monotonic() + 120
    while th.is_alive() and time.monotonic() < deadline:
        c = store.campaign(cid)
        if c.state == "paused" and c.note not in notes:
            notes.append(c.note)
            time.sleep(0.5)  # the operator types: 10000 simulated seconds of wall time at this scale
            assert invoke("calibrate", "probe", "--store", url, "--campaign", str(cid)).exit_code == 0
            time.sleep(0.5)
            store.request(cid, "resume")
        time.sleep(0.02)
    th.join(30)
    assert not th.is_alive() and result["decision"].rule == "budget"
    assert [t.state for t in store.trials(cid)] == ["done"] * 4
    assert notes and len(notes) < 4  # not a pause before every measurement
    for note in notes:  # every pause is for a calibration that really is older than max_age in the lab's time
        age = float(note.split("(age ")[1].split(" s")[0])
        assert age > 4 * 3600.0
    starts = [d for t in store.trials(cid) for n, d in store.documents(trial_id=t.id) if n == "start"]
    assert not any(d.get("calibration_expired") for d in starts)
    store.close()


def test_calibrate_file_records_into_the_store_the_campaign_file_names(tmp_path, monkeypatch):
    """`labloop calibrate probe --file F` without --store records where `labloop run F` will look: F's `store:`."""
    from campaign_files import write

    from labloop.store import Store

    monkeypatch.chdir(tmp_path)  # the default ./labloop.db would be here
    data = drifting(max_trials=1)
    data["store"] = f"sqlite:///{tmp_path / 'lab.db'}"
    path = write(tmp_path, data)
    r = invoke("calibrate", "probe", "--file", str(path))
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "labloop.db").exists()
    store = Store(data["store"])
    assert len(store.calibrations(device="probe")) == 1
    store.close()
