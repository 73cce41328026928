"""Daemon figures (JSON lines): status round trip with CURVE (p50/p99), pause and stop acknowledged (p95),
stream document -> subscriber latency (p95) and loss across forced reconnects, time to notice a killed campaign
process.

    .venv/bin/python benchmarks/daemon_control.py [--status N] [--pauses N] [--time-scale X]
        [--stream-seconds S] [--kills N]

``--time-scale`` sets how fast the campaign beside the measurements runs, hence the stream's rate: the default
3600 gives ~600 events/s (and the GIL contention the pause target is about); 450 gives ~100 events/s, the rate of
the stream target. The stream figure prints the rate it was measured at.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from daemon_helpers import DaemonProcess, add_user, wait_until
from running import two_chamber

from labloop.control.client import Follower
from labloop.control.requests import ask_runner
from labloop.store import Store


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def out(**kw) -> None:
    print(json.dumps(kw), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--status", type=int, default=2000)
    ap.add_argument("--pauses", type=int, default=20)
    ap.add_argument("--stream-seconds", type=float, default=20.0)
    ap.add_argument("--time-scale", type=float, default=3600.0)
    ap.add_argument("--kills", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    d = DaemonProcess(tmp)
    key = add_user(d.store_url, "bench", "operator", d.server_keys)
    d.start()
    try:
        c = d.client(key)
        data = two_chamber(max_trials=400)
        data["name"] = "bench"
        r = c.call("submit", text=yaml.safe_dump(data), source="bench.yaml", time_scale=a.time_scale)
        cid = r["campaign_id"]
        follower = Follower(c, d.stream, "bench")
        lat: list[float] = []
        emitted: list[float] = []  # the child's event time (queued for the store) -> subscriber
        t = []
        for _ in range(a.status):
            t0 = time.perf_counter()
            c.call("status", campaign=cid)
            t.append(time.perf_counter() - t0)
        out(
            metric="status_round_trip_ms",
            p50=round(1000 * pct(t, 0.5), 3),
            p99=round(1000 * pct(t, 0.99), 3),
            n=a.status,
            note="CURVE on loopback, snapshot <= 0.5 s old; a running campaign beside it",
        )
        seen: list[int] = []
        reconnects = 0
        began = time.monotonic()
        deadline = began + a.stream_seconds
        while time.monotonic() < deadline:
            for e in follower.poll(0.2):
                seen.append(e["seq"])
                if "v" in e:  # live, not fetched through missed
                    at = datetime.fromisoformat(e["at"])
                    emitted.append(time.time() - (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp())
                if e["kind"] == "document" and "v" in e:  # live (not fetched): its document time -> now
                    doc = e["body"]["doc"]
                    if "time" in doc:
                        lat.append(time.time() - float(doc["time"]))
            # 10 forced reconnects spread over the run, whatever the rate
            if time.monotonic() - began > a.stream_seconds * (reconnects + 1) / 11 and reconnects < 10:
                follower.sub.close(0)
                time.sleep(0.1)
                follower.reconnect()
                reconnects += 1
        seen.extend(e["seq"] for e in follower.catch_up(cid, max(seen)))
        lost = len(set(range(seen[0], max(seen) + 1)) - set(seen))
        dup = len(seen) - len(set(seen))
        out(
            metric="stream_document_latency_ms",
            p50=round(1000 * pct(lat, 0.5), 2),
            p95=round(1000 * pct(lat, 0.95), 2),
            n=len(lat),
            rate_per_s=round(len(seen) / a.stream_seconds, 1),
            note="document's own time -> subscriber, loopback",
        )
        out(
            metric="stream_event_latency_ms",
            p50=round(1000 * pct(emitted, 0.5), 2),
            p95=round(1000 * pct(emitted, 0.95), 2),
            n=len(emitted),
            note="the child's emit (queued for the store) -> subscriber: commit + daemon tail + PUB/SUB",
        )
        out(metric="stream_reconnects", reconnects=reconnects, lost=lost, duplicated=dup, events=len(seen))
        acks: dict[str, list[float]] = {"pause": [], "resume": [], "pause_on_store": [], "resume_on_store": []}
        for _ in range(a.pauses):
            for action in ("pause", "resume"):
                t0 = time.perf_counter()
                c.call(action, campaign=cid, wait=5.0)
                acks[action].append(time.perf_counter() - t0)
        st = Store(d.store_url)
        for _ in range(a.pauses):  # baseline, same run: the same requests on the store, without the daemon
            for action in ("pause", "resume"):
                t0 = time.perf_counter()
                ask_runner(st, st.campaign(cid), action, None, "bench", 5.0)
                acks[f"{action}_on_store"].append(time.perf_counter() - t0)
        st.close()
        for action, xs in acks.items():
            if xs:
                out(
                    metric=f"{action}_acknowledged_ms",
                    p50=round(1000 * pct(xs, 0.5), 1),
                    p95=round(1000 * pct(xs, 0.95), 1),
                    n=len(xs),
                )
        notice = []
        for _ in range(a.kills):
            pid = next(x for x in c.call("list") if x["id"] == cid)["pid"]
            st = Store(d.store_url)
            before = sum(1 for x in st.audit_log(cid) if x.action == "daemon.crash")
            t0 = datetime.now(UTC)
            os.kill(pid, signal.SIGKILL)
            row = wait_until(lambda: [x for x in st.audit_log(cid) if x.action == "daemon.crash"][before:], 30, 0.01)  # noqa: B023 - wait_until calls it within this iteration
            at = row[0].at if row[0].at.tzinfo else row[0].at.replace(tzinfo=UTC)
            notice.append((at - t0).total_seconds())
            wait_until(lambda: next(x for x in c.call("list") if x["id"] == cid)["pid"] not in (None, pid), 120)  # noqa: B023 - wait_until calls it within this iteration
            st.close()
        if notice:
            out(
                metric="killed_campaign_noticed_s",
                max=round(max(notice), 3),
                values=[round(x, 3) for x in notice],
                note="SIGKILL -> crash recorded in the audit log (then resumed)",
            )
        c.call("stop", campaign=cid)
    finally:
        d.stop()


if __name__ == "__main__":
    main()
