"""The dashboard in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by
Selenium, against the dashboard served by uvicorn over a real store, with real campaigns running in child processes.

Screenshots of the live page are saved to the test's folder, and to ``$LABLOOP_SCREENSHOTS`` when set (the docs'
pictures are made that way: ``LABLOOP_SCREENSHOTS=docs/screenshots pytest tests/test_dashboard_browser.py``).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from daemon_helpers import DaemonProcess
from daemon_helpers import add_user as daemon_add_user
from running import two_chamber
from sqlalchemy import select
from web_helpers import PASSWORD

from labloop.identity import accounts
from labloop.store import Store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(fn, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - the page may be between renders
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def shoot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    out = os.environ.get("LABLOOP_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(out) / path.name)
    return path


def sign_in(driver, base: str, name: str, next_path: str = "/") -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{base}/login?next={next_path}")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "signin").click()
    wait_for(lambda: driver.find_elements(By.ID, "who"), what="signed-in page")


class Lab:
    """A daemon serving the dashboard (``labloop serve --http``), users of every role with passwords, and
    campaigns submitted to it by an operator's client (each runs in the daemon's child process)."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.daemon = DaemonProcess(tmp_path)
        self.keys = {
            role: daemon_add_user(self.daemon.store_url, role, role, self.daemon.server_keys)
            for role in ("viewer", "operator", "approver", "admin")
        }
        self.store = Store(self.daemon.store_url)
        for role in self.keys:
            accounts.set_password(self.store, role, PASSWORD)
        self.daemon.start(http="127.0.0.1:0")
        self.url = self.daemon.http

    def run(self, name: str, **changes) -> int:
        """Submit a campaign as the operator; returns its id once the daemon has it running."""
        data = two_chamber(max_trials=changes.pop("max_trials", 40), **changes)
        data["name"] = name
        data["lab"]["time_scale"] = 1800.0  # a 60-minute deposition: 2 s
        client = self.daemon.client(self.keys["operator"], timeout=300)
        try:
            r = client.call("submit", timeout=300, text=yaml.safe_dump(data), source=f"{name}.yaml")
        finally:
            client.close()
        return r["campaign_id"]

    def close(self) -> None:
        self.daemon.stop()
        self.store.close()


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    yield lab
    lab.close()


def test_a_viewer_sees_the_live_page_but_no_buttons(browser, lab, tmp_path):
    from selenium.webdriver.common.by import By

    lab.run("viewer-run")
    sign_in(browser, lab.url, "viewer", "/campaigns/viewer-run")
    wait_for(lambda: browser.find_element(By.ID, "state").text == "running", what="state shown")
    assert browser.find_element(By.ID, "role").text == "viewer"
    assert browser.find_elements(By.CSS_SELECTOR, "#controls button") == []
    assert browser.find_elements(By.CSS_SELECTOR, "button.approve") == []
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#trials-table tr[data-number]"), what="trials table")
    shoot(browser, tmp_path, "dashboard-viewer")


def test_an_operator_pauses_a_running_campaign_and_the_page_shows_it(browser, lab, tmp_path):
    from selenium.webdriver.common.by import By

    lab.run("pause-run")
    sign_in(browser, lab.url, "operator", "/campaigns/pause-run")
    wait_for(lambda: browser.find_element(By.ID, "state").text == "running", what="running")
    browser.find_element(By.ID, "btn-pause").click()
    wait_for(lambda: browser.find_element(By.ID, "state").text == "paused", what="paused shown")
    assert "pause" in browser.find_element(By.ID, "action-result").text
    assert lab.store.campaign("pause-run").state == "paused"
    shoot(browser, tmp_path, "dashboard-paused")
    browser.find_element(By.ID, "btn-stop").click()
    wait_for(lambda: browser.find_element(By.ID, "state").text == "stopped", 60, "stopped shown")


def test_an_approver_approves_a_pending_proposal_and_it_runs(browser, lab, tmp_path):
    from selenium.webdriver.common.by import By

    lab.run("approve-run", max_trials=3, scheduling={"approval": True})
    sign_in(browser, lab.url, "approver", "/campaigns/approve-run")
    button = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#approvals button.approve"), 60, "a proposal")[0]
    number = int(button.get_attribute("id").split("-")[1])
    button.click()
    wait_for(
        lambda: (
            lab.store.trials(lab.store.campaign("approve-run").id)[number - 1].state in ("running", "measured", "done")
        ),
        60,
        f"trial {number} running",
    )
    row = f"#trials-table tr[data-number='{number}']"
    wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, row).get_attribute("data-state") in ("running", "done"),
        60,
        "the page shows it running or done",
    )


def test_the_convergence_plot_gains_a_point_when_a_trial_finishes(browser, lab, tmp_path):
    from selenium.webdriver.common.by import By

    lab.run("live-run", max_trials=6)
    sign_in(browser, lab.url, "viewer", "/campaigns/live-run")
    plot = "#convergence-plot g.measured"
    start = int(
        wait_for(
            lambda: (
                browser.find_element(By.CSS_SELECTOR, plot).get_attribute("data-points") is not None
                and browser.find_element(By.CSS_SELECTOR, plot).get_attribute("data-points")
            ),
            what="plot",
        )
    )
    browser.execute_script("window.notReloaded = true")
    wait_for(
        lambda: int(browser.find_element(By.CSS_SELECTOR, plot).get_attribute("data-points")) > start, 60, "a new point"
    )
    # it came from a pushed event, not from reloading the page
    assert browser.execute_script("return window.notReloaded === true")
    kinds = browser.execute_script("return window.labloopLive.arrivals.filter(a => !a.caughtUp).map(a => a.kind)")
    assert "measurement" in kinds
    shoot(browser, tmp_path, "dashboard-live")


def test_a_page_that_reconnects_shows_every_campaign_event_once(browser, lab, tmp_path):
    """The page's stream is closed mid-run and opened again later: what happened meanwhile comes as catch-up from
    the store, so the page shows every campaign event (readings may be thinned, nothing else) exactly once."""
    from labloop.store.schema import Event
    from labloop.web.thin import reading_key

    cid = lab.run("reconnect-run", max_trials=4)
    sign_in(browser, lab.url, "viewer", "/campaigns/reconnect-run")
    wait_for(
        lambda: browser.execute_script(
            "return document.body.getAttribute('data-live') === '1' && window.labloopLive.received > 20"
        ),
        60,
        "live events",
    )
    browser.execute_script("window.labloopLive.source.close()")
    dropped_at = browser.execute_script("return window.labloopLive.lastSeq")
    wait_for(lambda: _max_seq(lab.store, cid) > dropped_at + 30, 60, "events while the page is away")
    browser.execute_script("window.labloopLive.reconnect()")
    wait_for(lambda: lab.store.campaign(cid).state != "running", 120, "the campaign to end")
    time.sleep(1.0)  # the campaign's last events are committed after its state
    last = _max_seq(lab.store, cid)
    wait_for(lambda: browser.execute_script("return window.labloopLive.lastSeq") >= last, 60, "the last event")
    time.sleep(0.5)
    arrivals, start = browser.execute_script(
        "const l = window.labloopLive; return [l.arrivals.map(a => [a.seq, a.shown !== null, a.caughtUp]), l.startSeq]"
    )
    seqs = [a[0] for a in arrivals]
    assert len(seqs) == len(set(seqs)), "no event twice"
    assert any(caught and seq > dropped_at for seq, _, caught in arrivals), "the gap came as catch-up"
    with lab.store.session() as s:
        rows = s.execute(select(Event.seq, Event.kind, Event.body).where(Event.campaign_id == cid)).all()
    campaign = {seq for seq, kind, body in rows if seq > start and reading_key(kind, body) is None}
    shown = {seq for seq, drawn, _ in arrivals if drawn}
    assert campaign and campaign - shown == set()


def _max_seq(store: Store, cid: int) -> int:
    from labloop.store.events import last_seq

    return last_seq(store, cid)


def test_the_report_of_a_live_campaign_opens_offline_in_the_browser(browser, lab, tmp_path):
    """The report of the campaign the dashboard shows, opened from disk: every figure renders, nothing is fetched."""
    from selenium.webdriver.common.by import By

    from labloop.report import write_report

    cid = lab.run("report-run", max_trials=4)
    wait_for(lambda: lab.store.campaign(cid).state != "running", 120, "the campaign to end")
    write_report(lab.store, lab.store.campaign(cid), tmp_path / "report")
    browser.get((tmp_path / "report" / "index.html").as_uri())
    images = browser.find_elements(By.CSS_SELECTOR, "img")
    assert images, "the report shows its figures"
    wait_for(
        lambda: all(
            browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i) for i in images
        ),
        what="every figure rendered",
    )
    remote = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('file:'))"
    )
    assert remote == []
    shoot(browser, tmp_path, "report")
