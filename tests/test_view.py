"""The one campaign view (labloop/data/view.py): read from the store, changed by stream events, and the defects each
surface had while it derived the campaign its own way (best going backwards after a crash resume, a started trial
shown "proposed", a sample shown where it no longer was, buttons on a finished campaign, a stale "out of service").

A real store (SQLite file) and the real event log of a campaign process; a real campaign run in the last test.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest
import yaml
from running import two_chamber
from typer.testing import CliRunner

from labloop.control.eventlog import EventLog
from labloop.data.view import allowed_actions, apply, campaign_view, digest
from labloop.spec import spec_from_text
from labloop.store import Store
from labloop.store.events import events_after


@pytest.fixture
def camp(tmp_path):
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    store = Store(url)
    text = yaml.safe_dump(two_chamber(max_trials=10))
    c = store.create_campaign("view-test", text, hashlib.sha256(text.encode()).hexdigest())
    yield store, c, spec_from_text(text, "t"), url
    store.close()


def _done(store, cid, value, sample_prefix="s"):
    t = store.add_trial(cid, {"o2_pressure": 1.0}, "random", {}, sample_prefix)
    store.transition(t.id, "proposed", "running")
    store.transition(t.id, "running", "measured")
    return store.transition(t.id, "measured", "done", values={"sheet_resistance": value})


def _stream(store, cid):
    return [{"seq": e.seq, "kind": e.kind, "body": e.body} for e in events_after(store, cid, 0)]


def test_best_after_a_crash_resume_never_goes_backwards(camp):
    """The resumed process used to announce its first measurement as best (trial 16 = 127.78 while trial 8 =
    122.50 was best, minimizing): the event log now starts from the store's trials."""
    store, c, spec, _ = camp
    for v in (130.0, 122.5, 140.0):
        _done(store, c.id, v)
    log = EventLog(store, c.id, spec)  # what a resumed campaign process makes
    worse = _done(store, c.id, 127.78)
    log.observer("finished", {"trial": worse})
    better = _done(store, c.id, 110.0)
    log.observer("finished", {"trial": better})
    log.close()
    bests = [e["body"] for e in _stream(store, c.id) if e["kind"] == "best"]
    assert [(b["trial"], b["value"]) for b in bests] == [(5, 110.0)]
    assert campaign_view(store, c.id)["best"]["trial"] == 5 == bests[-1]["trial"]


def test_a_started_trial_is_announced_running_with_where_its_sample_is(camp):
    store, c, spec, _ = camp
    t = store.add_trial(c.id, {"o2_pressure": 1.0}, "random", {}, "s")  # the object the scheduler hands over
    store.transition(t.id, "proposed", "running")
    store.locate_sample(c.id, t.sample_id, "storage", t.id)
    log = EventLog(store, c.id, spec)
    view = campaign_view(store, c.id)
    log.observer("started", {"trial": t, "location": "storage"})
    log.close()
    (e,) = _stream(store, c.id)
    assert e["body"]["trial"]["state"] == "running"  # was "proposed": the object read before the transition
    apply(view, e)
    assert digest(view) == digest(campaign_view(store, c.id))


def test_a_transfer_moves_the_sample_in_the_view_as_in_the_store(camp):
    """ "samples: ...-0009 @ chamber" while the chamber held 0010: the step events now say where a move put it."""
    store, c, spec, _ = camp
    t = store.add_trial(c.id, {"o2_pressure": 1.0}, "random", {}, "s")
    store.transition(t.id, "proposed", "running")
    store.locate_sample(c.id, t.sample_id, "storage", t.id)
    view = campaign_view(store, c.id)
    log = EventLog(store, c.id, spec)
    log.observer(
        "step", {"trial": t.number, "step": "transfer:deposition", "device": "robot", "to": "chamber2", "attempt": 1}
    )
    log.document("start", {"uid": "r1", "trial": t.number, "step": "transfer:deposition", "sample_id": t.sample_id})
    log.document("stop", {"run_start": "r1", "exit_status": "success", "reason": ""})
    log.close()
    store.locate_sample(c.id, t.sample_id, "chamber2", t.id)  # what the executor commits with the step's end
    for e in _stream(store, c.id):
        apply(view, e)
    assert view["samples"] == campaign_view(store, c.id)["samples"]
    assert digest(view)["samples"] == {t.sample_id: "chamber2"}
    assert view["running_steps"] == []


def test_a_failed_remote_step_says_why_not_a_status_repr(camp):
    store, c, spec, _ = camp
    log = EventLog(store, c.id, spec)
    log.document("start", {"uid": "r1", "trial": 1, "step": "measure"})
    log.document(
        "stop",
        {
            "run_start": "r1",
            "exit_status": "fail",
            "reason": "Status(obj=RemoteDevice(name='probe'), done=True, success=False)",
        },
    )
    log.close()
    end = [e for e in _stream(store, c.id) if e["kind"] == "step_end"][0]["body"]
    assert "Status(" not in end["reason"] and end["reason"]


def test_out_of_service_and_alerts_close_when_the_operator_brings_the_station_back(camp):
    store, c, *_ = camp
    store.audit(c.id, "station.quarantine", {"device": "probe", "reason": "3 failures"}, user="labloop")
    store.audit(c.id, "campaign.pause", {"reason": "no 'probe' station left in service"}, user="labloop")
    v = campaign_view(store, c.id)
    assert v["quarantined"] == ["probe"] and len(v["alerts"]) == 2
    store.audit(c.id, "station.restore", {"devices": ["probe"]}, user="operator")
    v = campaign_view(store, c.id)
    assert v["quarantined"] == [] and v["alerts"] == []
    store.audit(c.id, "station.quarantine", {"device": "chamber1", "reason": "x"}, user="labloop")
    store.audit(c.id, "campaign.resume", {"trials": []}, user="labloop")  # a new process: every station in service
    assert campaign_view(store, c.id)["quarantined"] == []


def test_actions_follow_the_state_and_a_finished_campaign_offers_none(camp):
    store, c, *_ = camp
    assert campaign_view(store, c.id)["actions"] == ["pause", "stop", "estop"]
    store.update_campaign(c.id, state="paused")
    assert campaign_view(store, c.id)["actions"] == ["resume", "stop", "estop"]
    store.update_campaign(c.id, state="finished", stop_reason="budget")
    assert campaign_view(store, c.id)["actions"] == []
    assert allowed_actions("running", [3]) == ["pause", "stop", "estop", "approve", "reject"]
    view = campaign_view(store, c.id)
    view["campaign"]["state"] = "running"
    apply(view, {"seq": 10**6, "kind": "campaign_end", "body": {"state": "finished", "stop_reason": "budget"}})
    assert view["actions"] == [] and view.pop("stale") is True


def test_status_json_prints_the_view(camp):
    from labloop.cli import app

    store, c, _, url = camp
    _done(store, c.id, 50.0)
    r = CliRunner().invoke(app, ["status", "--store", url, "--campaign", "view-test", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    fresh = campaign_view(store, c.id)
    got["liveness"] = fresh["liveness"]  # its heartbeat age moves with the clock
    assert got == json.loads(json.dumps(fresh))
    assert got["best"]["trial"] == 1 and got["actions"] == ["pause", "stop", "estop"]


def test_a_view_kept_by_events_agrees_with_a_fresh_read_while_a_campaign_runs(tmp_path):
    """A real campaign (simulated two-chamber lab) with its real event log: a view read once and kept by applying
    the stored events (read again when an event asks) agrees with a fresh read at every check, within a bound."""
    from labloop.run.campaign import CampaignRunner, prepare_text

    store = Store(f"sqlite:///{tmp_path / 'lab.db'}")
    data = two_chamber(max_trials=6)
    data["lab"]["time_scale"] = 3600.0
    runner = CampaignRunner.start(prepare_text(yaml.safe_dump(data), "t.yaml"), store)
    log = EventLog(store, runner.campaign.id, runner.spec)
    runner.observer, runner.documents = log.observer, log.document
    cid = runner.campaign.id
    thread = threading.Thread(target=runner.run, daemon=True)
    view = campaign_view(store, cid)
    thread.start()
    checks = 0
    try:
        while True:
            ended = not thread.is_alive()  # the last check begins after the campaign has ended
            deadline = time.monotonic() + 5.0  # the bound: events are committed within ~20 ms of the change
            while True:
                for e in _stream_after(store, cid, view["last_seq"]):
                    apply(view, e)
                if view.pop("stale", False):
                    view = campaign_view(store, cid)
                fresh = campaign_view(store, cid)
                if digest(view) == digest(fresh) or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            assert digest(view) == digest(fresh)
            checks += 1
            if ended and checks >= 3:
                break
            time.sleep(0.05)
    finally:
        thread.join(60)
        log.close()
    assert checks >= 3 and view["campaign"]["state"] != "running"
    assert all(t["state"] == "done" for t in campaign_view(store, cid)["trials"])
    store.close()


def _stream_after(store, cid, after):
    return [{"seq": e.seq, "kind": e.kind, "body": e.body} for e in events_after(store, cid, after)]


def test_watch_starts_from_the_campaign_views_best(camp):
    """`watch --campaign` shows the store's best from the start (it used to wait for the stream's next `best`
    event, which after a crash resume named a worse trial)."""
    from labloop.cli.daemon_cmds import WatchView

    store, c, *_ = camp
    for v in (130.0, 122.5):
        _done(store, c.id, v)
    w = WatchView()
    w.seed(campaign_view(store, c.id))
    assert w.campaigns[c.id]["best"] == "122.5 (trial 2)"
    w.add(
        [
            {
                "campaign_id": c.id,
                "campaign": c.name,
                "seq": 3,
                "kind": "measurement",
                "body": {"trial": {"number": 3, "state": "done", "values": {"sheet_resistance": 127.78}}},
            }
        ]
    )
    assert w.campaigns[c.id]["best"] == "122.5 (trial 2)"


def test_the_page_of_a_finished_campaign_offers_no_control(camp):
    """A finished campaign's page still offered pause/resume/stop/estop: the buttons an operator's role allows are
    rendered hidden unless the campaign's state allows them (the page's script shows them as the state changes)."""
    import re

    from starlette.testclient import TestClient
    from web_helpers import add_user

    from labloop.web.app import Dashboard

    store, c, _, url = camp
    token = add_user(store, "olga", "operator")
    with TestClient(Dashboard(url, tail=False).app(), base_url="http://127.0.0.1") as client:

        def shown() -> set[str]:
            html = client.get("/campaigns/view-test", headers={"Authorization": f"Bearer {token}"}).text
            return {m.group(1) for m in re.finditer(r'<button data-action="(\w+)"[^>]*class="act \w+">', html)}

        assert shown() == {"pause", "stop", "estop"}
        store.update_campaign(c.id, state="finished", stop_reason="budget spent")
        assert shown() == set()


def test_a_pause_is_announced_after_the_store_says_paused(tmp_path):
    """The page showed "paused" from the stream's event while the store (and so /api and status) still said
    running: the runner now announces what a request changed once the answer is committed."""
    from labloop.control.requests import ask_runner
    from labloop.run.campaign import CampaignRunner, prepare_text

    store = Store(f"sqlite:///{tmp_path / 'lab.db'}")
    data = two_chamber(max_trials=30)
    data["lab"]["time_scale"] = 600.0
    seen: dict[str, str] = {}

    def observer(kind, _data):
        if kind in ("paused", "resumed"):
            seen[kind] = store.campaign(runner.campaign.id).state

    runner = CampaignRunner.start(prepare_text(yaml.safe_dump(data), "t.yaml"), store, observer)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        c = store.campaign(runner.campaign.id)
        ask_runner(store, c, "pause", None, "olga", 30.0)
        ask_runner(store, store.campaign(c.id), "resume", None, "olga", 30.0)
        ask_runner(store, store.campaign(c.id), "stop", None, "olga", 30.0)
    finally:
        thread.join(120)
    assert seen == {"paused": "paused", "resumed": "running"}
    store.close()


def test_the_view_gives_the_page_the_lab_clock_of_running_steps(camp):
    """The page draws process streams in the lab's minutes from the step's start (as the report does), so the view
    carries the campaign's time scale (the audited one of its latest run, else the file's) and each running step's
    start."""
    store, c, spec, _ = camp
    assert campaign_view(store, c.id)["time_scale"] == spec.lab.time_scale
    store.audit(c.id, "campaign.lab", {"time_scale": 500.0})
    t = store.add_trial(c.id, {"o2_pressure": 1.0}, "random", {}, "s")
    store.transition(t.id, "proposed", "running")
    store.start_step(t.id, 0, "synthesize:deposition", "synthesize", device="chamber1")
    view = campaign_view(store, c.id)
    assert view["time_scale"] == 500.0
    step = view["running_steps"][0]
    assert isinstance(step["started"], float) and abs(step["started"] - time.time()) < 3600
