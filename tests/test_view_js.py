"""The page's apply (labloop/web/static/view.js) is the server's (labloop/data/view.py): the same events from a real
campaign, applied in headless Chromium and in Python to the same view, end in the same view and the same digest."""

from __future__ import annotations

import copy
import json
import threading
from importlib import resources

import yaml
from running import two_chamber
from test_dashboard_browser import browser  # noqa: F401 - a fixture

from labloop.control.eventlog import EventLog
from labloop.data.view import apply, campaign_view, digest
from labloop.store import Store
from labloop.store.events import events_after

RUN = """
const view = arguments[0], events = arguments[1];
events.forEach(e => window.LabloopView.apply(view, e));
delete view.stale;
return [view, window.LabloopView.digest(view)];
"""


def _campaign(tmp_path):
    from labloop.run.campaign import CampaignRunner, prepare_text

    store = Store(f"sqlite:///{tmp_path / 'lab.db'}")
    data = two_chamber(max_trials=5, options={"probe_fault_rate": 0.3}, scheduling={"approval": False})
    runner = CampaignRunner.start(prepare_text(yaml.safe_dump(data), "t.yaml"), store)
    log = EventLog(store, runner.campaign.id, runner.spec)
    runner.observer, runner.documents = log.observer, log.document
    first = campaign_view(store, runner.campaign.id)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    thread.join(120)
    log.close()
    events = [
        {"seq": e.seq, "kind": e.kind, "body": e.body}
        for e in events_after(store, runner.campaign.id, 0, limit=100_000)
        if e.kind != "document"
    ]
    return store, runner.campaign.id, first, events


def test_the_page_applies_events_as_the_server_does(browser, tmp_path):  # noqa: F811 - a fixture imported above
    store, cid, first, events = _campaign(tmp_path)
    assert {"proposal", "trial_start", "step_start", "step_end", "measurement"} <= {e["kind"] for e in events}
    js = resources.files("labloop.web") / "static" / "view.js"
    page = tmp_path / "view.html"
    page.write_text(f'<!doctype html><html><head><script src="file://{js}"></script></head><body></body></html>')
    browser.get(page.as_uri())
    for cut in (len(events) // 3, 2 * len(events) // 3, len(events)):  # part way, and the whole stream
        py = copy.deepcopy(first)
        for e in events[:cut]:
            apply(py, e)
        py.pop("stale", None)
        in_js, js_digest = browser.execute_script(RUN, copy.deepcopy(first), events[:cut])
        assert in_js == json.loads(json.dumps(py))
        assert js_digest == json.loads(json.dumps(digest(py)))
    # and the whole stream ends where a fresh read is (trials, samples, best)
    fresh = digest(campaign_view(store, cid))
    assert {k: digest(py)[k] for k in ("trials", "samples", "best")} == {
        k: fresh[k] for k in ("trials", "samples", "best")
    }
    store.close()
