#!/usr/bin/env python3
"""Dashboard figures (issue 12), end to end in headless Chromium on loopback; prints JSON lines.

A real daemon (``labloop serve --http``) runs a simulated campaign in its child process; N pages (default 5) are
open on it. Every stream event is stamped by the child when it is emitted (``events.at``); each page records when
it drew the event (after the DOM update of the frame that shows it). Latency = drawn - emitted, so it covers the
child's commit, the daemon's stream, the server-sent event and the page's redraw. Same machine, same clock.

The latency and the losses are those of the campaign events (everything but monitor readings): a page must show
every one. Monitor readings are thinned by the server to what a page plots (``labloop.web.thin``); those a page
received and plotted are reported apart (drawn when the stream chart is redrawn, at most once a second), with how
many of the emitted ones reached it.

Also: page weight (bytes of every response the campaign page loads, and how many) and time to first contentful
paint of the campaign page.

Usage: python benchmarks/dashboard_latency.py [--pages 5] [--trials 12] [--time-scale 1800]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import yaml
from daemon_helpers import DaemonProcess, add_user
from running import two_chamber
from sqlalchemy import select

from labloop.identity import accounts
from labloop.store import Store
from labloop.store.schema import Event
from labloop.web.thin import reading_key

PASSWORD = "benchmark password"


def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    d.set_page_load_timeout(120)
    return d


def open_page(d, base: str, path: str) -> None:
    from selenium.webdriver.common.by import By

    d.get(f"{base}/login?next={path}")
    d.find_element(By.ID, "name").send_keys("viewer")
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.find_element(By.ID, "signin").click()
    deadline = time.monotonic() + 60
    while d.execute_script("return document.body.getAttribute('data-live')") != "1":
        if time.monotonic() > deadline:
            raise SystemExit("the page never went live")
        time.sleep(0.05)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=5)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--time-scale", type=float, default=1800.0)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="labloop-dash-"))
    daemon = DaemonProcess(tmp)
    keys = {r: add_user(daemon.store_url, r, r, daemon.server_keys) for r in ("viewer", "operator")}
    store = Store(daemon.store_url)
    accounts.set_password(store, "viewer", PASSWORD)
    daemon.start(http="127.0.0.1:0")
    drivers = []
    try:
        data = two_chamber(max_trials=a.trials)
        data["name"] = "bench"
        data["lab"]["time_scale"] = a.time_scale
        # the pages open before the campaign starts, so they see every event live
        client = daemon.client(keys["operator"], timeout=300)
        drivers = [driver() for _ in range(a.pages)]
        r = client.call("submit", timeout=300, text=yaml.safe_dump(data), source="bench.yaml")
        cid = r["campaign_id"]
        t_open = time.monotonic()
        for d in drivers:
            open_page(d, daemon.http, "/campaigns/bench")
        opened_s = time.monotonic() - t_open
        first = drivers[0]
        nav = first.execute_script(
            "const n = performance.getEntriesByType('navigation')[0];"
            "const r = performance.getEntriesByType('resource').filter(e => !e.name.includes('/api/'));"
            "const p = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');"
            "return {bytes: n.encodedBodySize + r.reduce((s, e) => s + (e.encodedBodySize || 0), 0),"
            " files: 1 + r.length, fcp_ms: p ? p.startTime : null, dom_ms: n.domContentLoadedEventEnd};"
        )
        print(
            json.dumps(
                {
                    "bench": "dashboard_page",
                    "page_bytes": nav["bytes"],
                    "files": nav["files"],
                    "first_contentful_paint_ms": round(nav["fcp_ms"] or -1, 1),
                    "dom_content_loaded_ms": round(nav["dom_ms"], 1),
                }
            ),
            flush=True,
        )
        deadline = time.monotonic() + 900
        while store.campaign(cid).state == "running":
            if time.monotonic() > deadline:
                raise SystemExit("the campaign did not end")
            time.sleep(0.5)
        with store.session() as s:
            rows = s.execute(select(Event.seq, Event.at, Event.kind, Event.body).where(Event.campaign_id == cid)).all()
        emitted = {seq: at.replace(tzinfo=at.tzinfo or UTC).timestamp() * 1000 for seq, at, _, _ in rows}
        # campaign events: everything but monitor readings; a page must draw every one of them
        campaign = {seq for seq, _, kind, body in rows if reading_key(kind, body) is None}
        ended = time.monotonic()
        for d in drivers:  # every page has drawn the last event (or a minute has passed)
            while (
                d.execute_script("return window.labloopLive.lastSeq") < max(emitted) and time.monotonic() - ended < 60
            ):
                time.sleep(0.2)
        time.sleep(1.5)  # the last stream redraw (at most a second after the last reading)
        lat: list[float] = []
        lat_readings: list[float] = []
        lat_arrived: list[float] = []  # emitted -> in the page's script (before drawing): the server's share
        lost: list[tuple[int, str]] = []
        readings_received = readings_drawn = 0
        kind_of = {seq: kind for seq, _, kind, _ in rows}
        for d in drivers:
            arr, start = d.execute_script(
                "const l = window.labloopLive; return [l.arrivals.filter(a => a.seq != null)"
                ".map(a => [a.seq, a.shown, a.caughtUp, !!a.reading, a.t]), l.startSeq]"
            )
            shown = {q for q, t, _, _, _ in arr if t is not None}
            # events sent before the page was live came as catch-up from the store: not a live latency
            for q, t, caught, _, came in arr:
                reading = q in emitted and q not in campaign
                readings_received += reading
                if t is None or caught or q not in emitted:
                    continue
                if reading:
                    readings_drawn += 1
                    lat_readings.append(t - emitted[q])
                else:
                    lat.append(t - emitted[q])
                    lat_arrived.append(came - emitted[q])
            # the page started from its snapshot's last seq: what came before was in the snapshot, not lost
            start = start if start is not None else min(shown, default=0)  # (a page without startSeq: older code)
            lost += [(q, kind_of[q]) for q in sorted(campaign) if q > start and q not in shown]
        n_readings = len(emitted) - len(campaign)
        print(
            json.dumps(
                {
                    "bench": "dashboard_event_latency",
                    "pages": a.pages,
                    "events": len(emitted),
                    "campaign_events": len(campaign),
                    "measured": len(lat),
                    "p50_ms": round(statistics.median(lat), 1),
                    "p95_ms": round(pct(lat, 95), 1),
                    "max_ms": round(max(lat), 1),
                    "arrived_p50_ms": round(statistics.median(lat_arrived), 1),
                    "arrived_p95_ms": round(pct(lat_arrived, 95), 1),
                    "lost": len(lost),
                    "lost_first": lost[:10],
                    "pages_opened_s": round(opened_s, 1),
                }
            ),
            flush=True,
        )
        print(
            json.dumps(
                {
                    "bench": "dashboard_readings",
                    "pages": a.pages,
                    "readings_per_page": n_readings,
                    "received_per_page": round(readings_received / a.pages, 1),
                    "drawn_per_page": round(readings_drawn / a.pages, 1),
                    "drawn_p50_ms": round(statistics.median(lat_readings), 1) if lat_readings else None,
                    "drawn_p95_ms": round(pct(lat_readings, 95), 1) if lat_readings else None,
                }
            ),
            flush=True,
        )
    finally:
        for d in drivers:
            d.quit()
        daemon.stop()
        store.close()


if __name__ == "__main__":
    main()
