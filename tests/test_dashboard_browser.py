"""The dashboard in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by
Selenium, against the dashboard served by uvicorn over a real store, with real campaigns running in child processes.

Screenshots of the live page are saved to the test's folder, and to ``$LABLOOP_SCREENSHOTS`` when set (the docs'
pictures are made that way: ``LABLOOP_SCREENSHOTS=docs/screenshots pytest tests/test_dashboard_browser.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from labloop.store import Store
from labloop.web.app import Dashboard
from labloop.web.server import HttpServer

from campaign_files import write
from running import two_chamber
from web_helpers import PASSWORD, add_user

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
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
    """A store, users of every role, the dashboard on a free port, and campaigns run by child processes."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.url = f"sqlite:///{tmp_path / 'labloop.db'}"
        self.store = Store(self.url)
        for role in ("viewer", "operator", "approver", "admin"):
            add_user(self.store, role, role)
        self.http = HttpServer(Dashboard(self.url), "127.0.0.1", 0).start()
        self.procs: list[subprocess.Popen] = []

    def run(self, name: str, **changes) -> subprocess.Popen:
        data = two_chamber(max_trials=changes.pop("max_trials", 40), **changes)
        data["name"] = name
        data["lab"]["time_scale"] = changes.pop("time_scale", 1800.0)  # a 60-minute deposition: 2 s
        path = write(self.tmp, data, f"{name}.yaml")
        log = open(self.tmp / f"{name}.log", "wb")
        p = subprocess.Popen([sys.executable, "-m", "labloop", "run", str(path), "--store", self.url],
                             stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)

        def stored() -> bool:
            if p.poll() is not None:
                raise AssertionError(f"labloop run ended early: {(self.tmp / f'{name}.log').read_text()[-2000:]}")
            return any(c.name == name for c in self.store.campaigns())

        wait_for(stored, 180, f"campaign {name} stored")  # a child imports torch and botorch first
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.http.stop()
        self.store.close()


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    yield lab
    lab.close()


def test_a_viewer_sees_the_live_page_but_no_buttons(browser, lab, tmp_path):
    from selenium.webdriver.common.by import By

    lab.run("viewer-run")
    sign_in(browser, lab.http.url, "viewer", "/campaigns/viewer-run")
    wait_for(lambda: browser.find_element(By.ID, "state").text == "running", what="state shown")
    assert browser.find_element(By.ID, "role").text == "viewer"
    assert browser.find_elements(By.CSS_SELECTOR, "#controls button") == []
    assert browser.find_elements(By.CSS_SELECTOR, "button.approve") == []
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#trials-table tr[data-number]"), what="trials table")
    shoot(browser, tmp_path, "dashboard-viewer")


def test_an_operator_pauses_a_running_campaign_and_the_page_shows_it(browser, lab, tmp_path):
    from selenium.webdriver.common.by import By

    proc = lab.run("pause-run")
    sign_in(browser, lab.http.url, "operator", "/campaigns/pause-run")
    wait_for(lambda: browser.find_element(By.ID, "state").text == "running", what="running")
    browser.find_element(By.ID, "btn-pause").click()
    wait_for(lambda: browser.find_element(By.ID, "state").text == "paused", what="paused shown")
    assert "pause" in browser.find_element(By.ID, "action-result").text
    assert lab.store.campaign("pause-run").state == "paused"
    shoot(browser, tmp_path, "dashboard-paused")
    browser.find_element(By.ID, "btn-stop").click()
    wait_for(lambda: browser.find_element(By.ID, "state").text == "stopped", what="stopped shown")
    proc.wait(timeout=60)


def test_an_approver_approves_a_pending_proposal_and_it_runs(browser, lab, tmp_path):
    from selenium.webdriver.common.by import By

    lab.run("approve-run", max_trials=3, scheduling={"approval": True})
    sign_in(browser, lab.http.url, "approver", "/campaigns/approve-run")
    button = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#approvals button.approve"), 60, "a proposal")[0]
    number = int(button.get_attribute("id").split("-")[1])
    button.click()
    wait_for(lambda: lab.store.trials(lab.store.campaign("approve-run").id)[number - 1].state
             in ("running", "measured", "done"), 60, f"trial {number} running")
    row = f"#trials-table tr[data-number='{number}']"
    wait_for(lambda: browser.find_element(By.CSS_SELECTOR, row).get_attribute("data-state") in ("running", "done"),
             60, "the page shows it running or done")


def test_the_convergence_plot_gains_a_point_when_a_trial_finishes(browser, lab, tmp_path):
    from selenium.webdriver.common.by import By

    lab.run("live-run", max_trials=6)
    sign_in(browser, lab.http.url, "viewer", "/campaigns/live-run")
    plot = "#convergence-plot g.measured"
    start = int(wait_for(lambda: browser.find_element(By.CSS_SELECTOR, plot).get_attribute("data-points") is not None
                         and browser.find_element(By.CSS_SELECTOR, plot).get_attribute("data-points"), what="plot"))
    refreshes = browser.execute_script("return window.labloopLive.refreshes")
    wait_for(lambda: int(browser.find_element(By.CSS_SELECTOR, plot).get_attribute("data-points")) > start, 60,
             "a new point")
    # it came from a pushed event, not from reloading the page
    assert browser.execute_script("return window.labloopLive.received") > 0
    assert browser.execute_script("return window.labloopLive.refreshes") > refreshes
    shoot(browser, tmp_path, "dashboard-live")
