"""Bells against polling, in one run: a real daemon (``labloop serve``) and its campaign processes, once with
``LABLOOP_WAKEUPS=0`` (every reader polls: the runner's request thread every 20 ms, a caller's answer every 5 ms,
the daemon's stream tail every 5 ms) and once with bells (the writer rings the reader after its commit; polling
every 0.5 s only as a fallback), on SQLite and, with ``--postgres URL``, on PostgreSQL.

What each mode measures, in this order:

* ``idle_cpu``: CPU seconds (user + system) of the daemon and of its campaign processes over ``--idle`` seconds,
  with 5 campaigns paused (``--campaigns`` idle ones and the one below; their runners waiting for requests, the
  daemon following their streams).
* ``pause_ack``: a pause (then a resume) of the running campaign, asked from this process on the store, as
  ``labloop pause`` does: from the request's commit to the answer seen by the caller (``ack_s``), and from before
  the request's write (``total_s``).
* ``stream``: every live event of the running campaign received on the daemon's stream (a CURVE SUB socket, as
  ``labloop watch`` has), from the event's creation in the campaign process (its ``at``) to its receipt here: it
  includes the campaign's own batching of stream commits (at most 20 ms, the same in both modes).
* ``estop``: an emergency stop of each campaign, request to acknowledgement (commit of the request to
  the answer seen by the caller; the runner halts its devices before it answers).

    .venv/bin/python benchmarks/wakeups.py --postgres postgresql://postgres@127.0.0.1:5432/test

JSON lines: one per measurement series, then one summary line per backend and mode.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def stats(xs: list[float]) -> dict[str, Any]:
    xs = sorted(xs)
    if not xs:
        return {"n": 0}
    return {
        "n": len(xs),
        "median_ms": round(statistics.median(xs) * 1000, 2),
        "p90_ms": round(xs[min(len(xs) - 1, int(0.9 * len(xs)))] * 1000, 2),
        "max_ms": round(xs[-1] * 1000, 2),
    }


def pg_schema(url: str) -> tuple[str, Any, str]:
    import sqlalchemy as sa

    from labloop.store.connection import normalize_url

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}", engine, schema


def ask(st: Any, cid: int, action: str) -> tuple[float, float, str]:
    """(commit -> answer seen, write -> answer seen, outcome) of one request, the way ``ask_runner`` asks."""
    from labloop.control.requests import await_answers

    w = st.bells.waiter(("answers", cid))
    try:
        t0 = time.perf_counter()
        rid = st.request(cid, action, {}, "bench")
        t1 = time.perf_counter()
        r = await_answers(st, [rid], 60.0, w).get(rid)
        t2 = time.perf_counter()
    finally:
        w.close()
    return t2 - t1, t2 - t0, (r.state if r is not None else "unanswered")


def cpu_of(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def stream_listener(d: Any, key: Any, name: str, stop: threading.Event, out: list[float]) -> threading.Thread:
    import zmq

    from labloop.identity.keys import apply_client

    def run() -> None:
        ctx = zmq.Context.instance()
        sub = ctx.socket(zmq.SUB)
        apply_client(sub, key)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, name.encode())
        sub.connect(d.stream)
        while not stop.is_set():
            if not sub.poll(100):
                continue
            frames = sub.recv_multipart()
            now = time.time()
            try:
                msg = json.loads(frames[1])
                at_ = datetime.fromisoformat(msg["at"])
                at = (at_ if at_.tzinfo else at_.replace(tzinfo=UTC)).timestamp()
            except (ValueError, KeyError, IndexError, TypeError):
                continue
            out.append(now - at)
        sub.close(0)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def one_mode(backend: str, url: str, mode: str, a: argparse.Namespace) -> dict[str, Any]:
    import yaml
    from daemon_helpers import DaemonProcess, add_user, wait_until
    from running import two_chamber

    from labloop.store import Store

    os.environ["LABLOOP_WAKEUPS"] = "0" if mode == "polling" else "1"
    tmp = Path(tempfile.mkdtemp(prefix=f"wake-{backend}-{mode}-"))
    d = DaemonProcess(tmp, url)
    key = add_user(d.store_url, "bench", "operator", d.server_keys)
    d.start()
    st = Store(d.store_url, create=False)
    out: dict[str, Any] = {"benchmark": "wakeups", "backend": backend, "mode": mode}
    try:
        c = d.client(key)
        ids = []
        for i in range(a.campaigns + 1):
            data = two_chamber(max_trials=400, options={"probe_minutes": 5 + i})
            data["name"] = f"c{i}"
            r = c.call(
                "submit",
                timeout=330.0,
                text=yaml.safe_dump(data),
                source="bench.yaml",
                time_scale=600.0 if i < a.campaigns else 6000.0,
            )
            ids.append(r["campaign_id"])
        busy = ids[-1]
        for cid in ids:
            wait_until(lambda cid=cid: c.call("status", campaign=cid)["running_steps"], 180)
        for cid in ids[:-1]:
            ack, _, state = ask(st, cid, "pause")
            assert state == "done", state
        # the idle window: the busy campaign is paused too, so that only the idle cost is counted
        ask(st, busy, "pause")
        time.sleep(2.0)  # steps that were running finish
        import psutil

        pids = [d.proc.pid] + [p.pid for p in psutil.Process(d.proc.pid).children(recursive=True)]
        c0, d0, t0 = cpu_of(pids), cpu_of(pids[:1]), time.monotonic()
        time.sleep(a.idle)
        used, span = cpu_of(pids) - c0, time.monotonic() - t0
        daemon = cpu_of(pids[:1]) - d0
        out["idle_cpu"] = {
            "paused_campaigns": a.campaigns + 1,
            "processes": len(pids),
            "seconds": round(span, 2),
            "cpu_s": round(used, 3),
            "cpu_percent": round(100 * used / span, 2),
            "daemon_cpu_s": round(daemon, 3),
            "campaigns_cpu_s": round(used - daemon, 3),
        }
        ask(st, busy, "resume")
        lat: list[float] = []
        stop = threading.Event()
        listener = stream_listener(d, key, "c" + str(a.campaigns), stop, lat)
        acks, totals, resumes = [], [], []
        time.sleep(1.0)
        for _ in range(a.tries):
            time.sleep(random.uniform(0.2, 0.6))  # a random phase of the pollers
            ack, total, state = ask(st, busy, "pause")
            assert state == "done", state
            acks.append(ack)
            totals.append(total)
            time.sleep(random.uniform(0.2, 0.6))
            ack, _, state = ask(st, busy, "resume")
            resumes.append(ack)
        time.sleep(1.0)
        stop.set()
        listener.join(2)
        out["pause_ack"] = {"ack": stats(acks), "total": stats(totals), "resume_ack": stats(resumes)}
        out["stream"] = stats(lat)
        estops = []
        for cid in ids:
            ack, _, state = ask(st, cid, "estop")
            estops.append(ack)
        out["estop"] = stats(estops)
        c.close()
    finally:
        st.close()
        d.stop()
    out["load_1min"] = round(os.getloadavg()[0], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--postgres", help="also on this PostgreSQL server (a fresh schema, dropped after)")
    ap.add_argument(
        "--campaigns",
        type=int,
        default=4,
        help="idle campaigns (plus the running one, also paused for the idle window)",
    )
    ap.add_argument("--idle", type=float, default=20.0, help="seconds of the idle CPU window")
    ap.add_argument("--tries", type=int, default=15, help="pause/resume pairs")
    a = ap.parse_args()
    sys.path.insert(0, str(HERE.parent / "tests"))
    backends = [("sqlite", None)] + ([("postgresql", a.postgres)] if a.postgres else [])
    for backend, base in backends:
        for mode in ("polling", "bells"):
            if base is None:
                url, cleanup = None, None
            else:
                url, engine, schema = pg_schema(base)
                cleanup = (engine, schema)
            try:
                row = one_mode(backend, url, mode, a)
            finally:
                if cleanup is not None:
                    import sqlalchemy as sa

                    with cleanup[0].begin() as conn:
                        conn.execute(sa.text(f'DROP SCHEMA "{cleanup[1]}" CASCADE'))
                    cleanup[0].dispose()
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
