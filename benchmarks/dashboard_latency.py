#!/usr/bin/env python3
"""Dashboard figures (issue 12), in headless Chromium on loopback; prints JSON lines.

1. Event -> page latency with N pages open (default 5): events are committed to the store's ``events`` table and
   published the way the daemon does (``--feed hub``: straight into the live hub) or found by the store tail
   (``--feed tail``: the dashboard reads new rows every 50 ms). Each event carries its send time (ms since the
   epoch); each page records when its EventSource handler ran. Same machine, same clock.
2. Page weight (bytes of every response the campaign page loads) and time to first contentful paint.

Usage: python benchmarks/dashboard_latency.py [--pages 5] [--events 200] [--rate 20] [--feed hub|tail]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import yaml  # noqa: E402

from labloop.store import Store  # noqa: E402
from labloop.store.schema import Event  # noqa: E402
from labloop.web.app import Dashboard  # noqa: E402
from labloop.web.server import HttpServer  # noqa: E402

from running import two_chamber  # noqa: E402
from web_helpers import PASSWORD, add_user  # noqa: E402


def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def sign_in(d, base: str, path: str) -> None:
    from selenium.webdriver.common.by import By

    d.get(f"{base}/login?next={path}")
    d.find_element(By.ID, "name").send_keys("viewer")
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.find_element(By.ID, "signin").click()
    deadline = time.monotonic() + 30
    while not d.execute_script("return document.body.getAttribute('data-live')") == "1":
        if time.monotonic() > deadline:
            raise SystemExit("the page never went live")
        time.sleep(0.05)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=5)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20.0, help="events per second")
    ap.add_argument("--feed", choices=("hub", "tail"), default="hub")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="labloop-dash-"))
    url = f"sqlite:///{tmp / 'labloop.db'}"
    store = Store(url)
    add_user(store, "viewer", "viewer")
    text = yaml.safe_dump(two_chamber(max_trials=2))
    c = store.create_campaign("bench", text, hashlib.sha256(text.encode()).hexdigest())
    dash = Dashboard(url, tail=a.feed == "tail")
    http = HttpServer(dash, "127.0.0.1", 0).start()
    drivers = [driver() for _ in range(a.pages)]
    try:
        for d in drivers:
            sign_in(d, http.url, "/campaigns/bench")
        first = drivers[0]
        nav = first.execute_script(
            "const n = performance.getEntriesByType('navigation')[0];"
            "const r = performance.getEntriesByType('resource');"
            "const p = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');"
            "return {bytes: n.encodedBodySize + r.reduce((s, e) => s + (e.encodedBodySize || 0), 0),"
            " files: 1 + r.length, fcp_ms: p ? p.startTime : null, dom_ms: n.domContentLoadedEventEnd};")
        print(json.dumps({"bench": "dashboard_page", "page_bytes": nav["bytes"], "files": nav["files"],
                          "first_contentful_paint_ms": round(nav["fcp_ms"] or -1, 1),
                          "dom_content_loaded_ms": round(nav["dom_ms"], 1)}), flush=True)
        gap = 1.0 / a.rate
        for seq in range(1, a.events + 1):
            sent = time.time() * 1000
            body = {"at": sent, "n": seq}
            with store.session() as s:  # committed first, as the daemon does
                s.add(Event(campaign_id=c.id, seq=seq, kind="measurement", body=body))
            if a.feed == "hub":
                dash.hub.publish(c.id, seq, "measurement", body)
            time.sleep(gap)
        time.sleep(1.0)
        lat: list[float] = []
        lost = 0
        for d in drivers:
            arr = d.execute_script("return window.labloopLive.arrivals.filter(a => a.kind === 'measurement')")
            got = {x["seq"]: x["t"] - x["sent"] for x in arr}
            lost += a.events - len(got)
            lat.extend(got.values())
        print(json.dumps({"bench": "dashboard_event_latency", "feed": a.feed, "pages": a.pages, "events": a.events,
                          "rate_per_s": a.rate, "p50_ms": round(statistics.median(lat), 1),
                          "p95_ms": round(pct(lat, 95), 1), "max_ms": round(max(lat), 1), "lost": lost}), flush=True)
    finally:
        for d in drivers:
            d.quit()
        http.stop()


if __name__ == "__main__":
    main()
