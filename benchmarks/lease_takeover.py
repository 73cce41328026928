"""Many labs, one store (issue 10 item 7): N campaigns, two runner processes on one PostgreSQL store, one of them
killed (``kill -9``) again and again while it runs a campaign; a fresh runner process replaces each killed one.

Each runner process is a small daemon loop: every 0.2 s it takes any unfinished campaign whose lease it can acquire
(``CampaignRunner.resume``: a campaign never run, or one whose runner died and whose lease has expired) and runs it
in a thread of its own, several at once; it exits when every campaign has ended. Runners wait for leases to expire as runners on other
machines must (``break_dead_leases = False``: no same-host shortcut). Every runner logs when it acquired and when it
left a campaign, and every step it starts; the parent logs each kill. A runner is killed only while the other
runs (its replacement has started), so takeovers measure the lease, not a process start.

Measured (JSON lines; one per kill, then a summary):
* ``campaigns_run_twice``: campaigns on which a process started a step (its lease check passed) after another
  process had taken the campaign over since that process's own acquisition (target 0);
* ``trials_lost``: trials left unfinished (proposed/running/interrupted...) once every campaign ended, plus
  campaigns that never ended (target 0); trials failed because a kill interrupted their deposition are counted
  apart (``trials_failed_by_kill``: the sample was consumed, labloop records it failed rather than deposit twice);
* ``takeover_s``: from the kill to another process's acquisition of the campaign's lease (the start of its
  successful attempt), against the lease ttl (the lease must expire first: without the same-host shortcut it
  cannot be much less than the ttl minus the time since the last renewal); ``resumed_s``: to the runner being
  ready to act (lab rebuilt, trials settled). One runner resumes the orphans one after another, so the last of
  several waits for the others.

    python benchmarks/lease_takeover.py --campaigns 6 --trials 30 --kills 10 --ttl 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def campaign_data(name: str, trials: int, folder: str, seed: int, time_scale: float) -> dict:
    data = yaml.safe_load((REPO / "experiments" / "thinfilm.yaml").read_text())
    data["name"] = name
    data["seed"] = seed
    data["strategy"] = {"name": "random", "initial_design": 1}
    data["stopping"] = {"max_trials": trials, "target_reached": False}
    data["lab"]["time_scale"] = time_scale  # a trial is ~70 simulated minutes (7 s at 600x)
    data["lab"]["options"].update(
        {"chamber_minutes": 60, "probe_minutes": 5, "robot_minutes": 1, "state_file": f"{folder}/{name}.world.json"}
    )
    return data


def log(path: str, **row) -> None:
    with open(path, "a") as f:
        f.write(json.dumps({"t": time.time(), "pid": os.getpid(), **row}) + "\n")
        f.flush()


# ------------------------------------------------------------------------------------------------ runner process
def worker(url: str, log_path: str, ttl: float) -> None:
    """A daemon's loop: every 0.2 s, take each unfinished campaign whose lease it can acquire and run it in a
    thread of its own (several at once); exit when every campaign has ended."""
    import threading

    from labloop.errors import LabloopError
    from labloop.run.campaign import CampaignRunner
    from labloop.run.executor import TrialExecutor
    from labloop.store import Store
    from labloop.store.leases import LeaseHeld, LeaseLost

    CampaignRunner.break_dead_leases = False
    record_run = TrialExecutor._record_run

    def logged(self, ctx, *args, **kwargs):  # a step this process really starts (its lease check passed)
        log(log_path, ev="act", cid=ctx.campaign_id)
        return record_run(self, ctx, *args, **kwargs)

    TrialExecutor._record_run = logged
    store = Store(url, create=False)
    log(log_path, ev="started")
    mine: dict[int, threading.Thread] = {}

    def run(runner, resumptions, cid: int) -> None:
        try:
            decision = runner.run(resumptions)
            log(log_path, ev="ended", cid=cid, rule=decision.rule)
        except LabloopError as exc:
            log(log_path, ev="ended", cid=cid, rule="error", error=exc.problem)

    while True:
        open_ = [c for c in store.campaigns() if c.state in ("running", "paused")]
        if not open_ and not any(th.is_alive() for th in mine.values()):
            log(log_path, ev="exit")
            return
        for c in open_:
            if c.id in mine and mine[c.id].is_alive():
                continue
            t_try = time.time()
            try:
                runner, resumptions = CampaignRunner.resume(store, c, lease_ttl=ttl)
            except (LeaseHeld, LeaseLost, LabloopError):  # held by the other runner, lost again while resuming,
                continue  # or ended by the other runner since the list was read
            # t_try: the lease was acquired by the first statement after it; t: the runner is ready (lab rebuilt,
            # trials settled)
            log(log_path, ev="acquired", cid=c.id, token=runner.lease.token, t_try=t_try)
            mine[c.id] = threading.Thread(target=run, args=(runner, resumptions, c.id), daemon=True)
            mine[c.id].start()
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------------ parent
def read_log(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.strip()]


def acting(path: str, pid: int) -> set[int]:
    """The campaigns ``pid`` acts on now (acquired and not ended), per the log."""
    cids: set[int] = set()
    for row in read_log(path):
        if row["pid"] != pid:
            continue
        if row["ev"] == "acquired":
            cids.add(row["cid"])
        elif row["ev"] == "ended":
            cids.discard(row["cid"])
    return cids


def spawn(url: str, log_path: str, ttl: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", "--url", url, "--log", log_path, "--ttl", str(ttl)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_twice(rows: list[dict]) -> int:
    """Campaigns on which a process started a step after another process had taken the campaign over since its
    own acquisition: two runners acting on one campaign."""
    acquired: dict[tuple[int, int], float] = {}  # (pid, cid) -> its latest acquisition
    takeovers: dict[int, list[tuple[float, int]]] = {}  # cid -> [(time, pid)]
    twice = set()
    for row in sorted(rows, key=lambda r: r["t"]):
        cid = row.get("cid")
        if row["ev"] == "acquired":
            acquired[(row["pid"], cid)] = row["t"]
            takeovers.setdefault(cid, []).append((row["t"], row["pid"]))
        elif row["ev"] == "act":
            since = acquired.get((row["pid"], cid), -1.0)
            if any(since < t <= row["t"] and pid != row["pid"] for t, pid in takeovers.get(cid, [])):
                twice.add(cid)
    return len(twice)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=DEFAULT_URL, help="PostgreSQL server (a fresh schema is made and dropped)")
    ap.add_argument("--campaigns", type=int, default=6)
    ap.add_argument("--trials", type=int, default=30, help="trials per campaign")
    ap.add_argument("--time-scale", type=float, default=600.0)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--ttl", type=float, default=3.0, help="lease ttl, seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--log", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.url, args.log, args.ttl)
        return

    import sqlalchemy as sa

    from labloop.run.campaign import CampaignRunner, prepare_text
    from labloop.states import UNFINISHED
    from labloop.store import Store
    from labloop.store.connection import normalize_url

    rng = random.Random(args.seed)
    schema = f"lease_bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(normalize_url(args.url))
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{args.url}{'&' if '?' in args.url else '?'}options=-csearch_path%3D{schema}"
    tmp = tempfile.mkdtemp(prefix="lease-bench-")
    log_path = f"{tmp}/runners.jsonl"
    procs: list[subprocess.Popen] = []
    try:
        store = Store(url)
        for i in range(args.campaigns):
            data = campaign_data(f"lease-bench-{i}", args.trials, tmp, args.seed * 100 + i, args.time_scale)
            CampaignRunner.start(prepare_text(yaml.safe_dump(data), f"c{i}.yaml"), store)
        t_start = time.time()
        procs = [spawn(url, log_path, args.ttl) for _ in range(2)]
        kills: dict[int, float] = {}
        takeovers: list = []
        resumed: list = []
        while len(kills) < args.kills:
            if all(c.state not in ("running", "paused") for c in store.campaigns()):
                break
            started = {r["pid"] for r in read_log(log_path) if r["ev"] == "started"}
            victims = [p for p in procs if p.poll() is None and acting(log_path, p.pid)]
            if not victims or not all(p.pid in started for p in procs):  # the other runner is up: it takes over
                time.sleep(0.1)
                continue
            if not victims:
                time.sleep(0.1)
                continue
            time.sleep(rng.uniform(0.5, 2.0))  # somewhere in the middle of its campaigns
            p = rng.choice(victims)
            orphans = acting(log_path, p.pid)
            if p.poll() is not None or not orphans:
                continue
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            kills[p.pid] = time.time()
            procs.remove(p)
            procs.append(spawn(url, log_path, args.ttl))
            # wait for the other runner(s) to take each of its campaigns over
            deadline = time.time() + 10 * args.ttl + 60
            pending, taken = set(orphans), {}
            while time.time() < deadline and pending:
                for r in read_log(log_path):
                    if r["ev"] == "acquired" and r["cid"] in pending and r["t"] > kills[p.pid]:
                        taken[r["cid"]] = (r["t_try"] - kills[p.pid], r["t"] - kills[p.pid])
                        pending.discard(r["cid"])
                pending = {c for c in pending if store.campaign(c).state in ("running", "paused")}
                time.sleep(0.05)
            for cid in sorted(orphans):
                row = {
                    "benchmark": "lease_takeover",
                    "kill": len(kills),
                    "campaign": cid,
                    "takeover_s": round(taken[cid][0], 3) if cid in taken else None,
                    "resumed_s": round(taken[cid][1], 3) if cid in taken else None,
                    "ttl_s": args.ttl,
                }
                takeovers.append(row["takeover_s"])
                resumed.append(row["resumed_s"])
                print(json.dumps(row), flush=True)
        for p in procs:
            p.wait(timeout=600)
        end = time.time()
        trials = [t for c in store.campaigns() for t in store.trials(c.id)]
        unfinished = [t for t in trials if t.state in UNFINISHED]
        not_ended = [c.id for c in store.campaigns() if c.state in ("running", "paused")]
        by_kill = [t for t in trials if t.state == "failed" and "interrupted" in (t.failure_reason or "")]
        done_takeovers = [x for x in takeovers if x is not None]
        print(
            json.dumps(
                {
                    "benchmark": "lease_takeover",
                    "campaigns": args.campaigns,
                    "trials_per_campaign": args.trials,
                    "kills": len(kills),
                    "ttl_s": args.ttl,
                    "campaigns_run_twice": run_twice(read_log(log_path)),
                    "trials_lost": len(unfinished) + len(not_ended),
                    "trials_total": len(trials),
                    "trials_done": sum(t.state == "done" for t in trials),
                    "trials_failed_by_kill": len(by_kill),
                    "trials_failed": sum(t.state == "failed" for t in trials),
                    "takeover_s_median": round(statistics.median(done_takeovers), 3) if done_takeovers else None,
                    "takeover_s_max": round(max(done_takeovers), 3) if done_takeovers else None,
                    "takeovers_missing": len(takeovers) - len(done_takeovers),
                    "resumed_s_median": round(statistics.median([x for x in resumed if x is not None]), 3)
                    if done_takeovers
                    else None,
                    "wall_s": round(end - t_start, 1),
                }
            ),
            flush=True,
        )
        store.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


if __name__ == "__main__":
    main()
