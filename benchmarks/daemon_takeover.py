"""Two real daemons (``labloop serve`` subprocesses, each its own keys folder) on one PostgreSQL store; one of them
is killed together with its campaign processes (a host dying: ``kill -9`` of the daemon and of its children) again
and again while campaigns run; the other takes the dead one's campaigns over once their leases expire.

Each round submits a campaign to the daemon about to die, waits until it has a finished trial, kills that daemon's
"host", measures the takeover and starts the dead daemon again (it becomes the survivor of the next round).
Measured (JSON lines; one per kill, then a summary):

* ``takeover_s``: from the kill to the campaign's lease held by another runner (the surviving daemon's new campaign
  process, which took it atomically), ``recorded_s``: to the takeover in the audit log (that process reported the
  campaign resumed); the lease ttl is the floor they are compared with (the lease must expire first);
* ``campaigns_run_twice``: campaigns taken over more than once for one kill, or with a step of a trial done twice,
  or with two steps of one trial overlapping in time (two runners acting at once) (target 0);
* ``trials_lost``: trials left unfinished once every campaign ended, plus campaigns that never ended (target 0).

    LABLOOP_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/daemon_takeover.py --kills 10 --ttl 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import sqlalchemy as sa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from daemon_helpers import DaemonProcess, add_user, wait_until
from running import two_chamber

from labloop.control.client import Client
from labloop.control.supervisor import TAKEOVER_ACTION
from labloop.store import Store
from labloop.store.connection import normalize_url

UNFINISHED = ("proposed", "approved", "running", "measured", "interrupted")


def out(**kw) -> None:
    print(json.dumps(kw), flush=True)


def run_twice(st: Store, cid: int, kills_of: int) -> bool:
    taken = [e for e in st.audit_log(cid) if e.action == TAKEOVER_ACTION]
    if len(taken) > kills_of:
        return True
    by_trial: dict[int, list] = {}
    for s in st.steps(campaign_id=cid):
        by_trial.setdefault(s.trial_id, []).append(s)
    for steps in by_trial.values():
        done = [s.index for s in steps if s.state == "done"]
        if len(done) != len(set(done)):
            return True
        spans = sorted((s.started_at, s.finished_at) for s in steps)
        if any(end is None or end > start for (_, end), (start, _) in zip(spans, spans[1:])):
            return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--ttl", type=float, default=3.0, help="lease ttl, seconds (LABLOOP_LEASE_TTL)")
    ap.add_argument("--trials", type=int, default=6, help="trials per campaign")
    a = ap.parse_args()
    base = os.environ.get("LABLOOP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"daemon_takeover_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(normalize_url(base))
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    os.environ["LABLOOP_LEASE_TTL"] = str(a.ttl)  # both daemons and their campaign processes inherit it
    tmp = Path(tempfile.mkdtemp(prefix="daemon-takeover-"))
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    daemons = [DaemonProcess(tmp / "a", url), DaemonProcess(tmp / "b", url)]
    keys = [add_user(url, f"op{i}", "operator", d.server_keys) for i, d in enumerate(daemons)]
    st = Store(url)
    takeovers, recorded, cids = [], [], []
    expected: dict[int, int] = {}  # campaign -> kills of its runner's host
    t_start = time.time()
    try:
        for d in daemons:
            d.start()
        for k in range(a.kills):
            victim = k % 2
            d = daemons[victim]
            data = two_chamber(max_trials=a.trials)
            data["name"] = f"takeover-{k}"
            cid = Client(d.control, keys[victim], 120).call(
                "submit", text=yaml.safe_dump(data), source=f"takeover-{k}.yaml"
            )["campaign_id"]
            cids.append(cid)
            wait_until(lambda: any(t.state == "done" for t in st.trials(cid)), 300, 0.1)  # noqa: B023 - wait_until calls it within this iteration
            assert d.proc is not None
            pids = {p.pid for p in psutil.Process(d.proc.pid).children(recursive=True)}
            orphans = {}  # campaigns whose runner dies with this host -> its lease holder
            for c in cids:
                held = st.lease(c)
                if held is not None and int(held.holder.rsplit(":", 3)[1]) in pids:
                    orphans[c] = held.holder
            t_kill = time.time()
            d.kill_host()
            for c, holder in orphans.items():
                expected[c] = expected.get(c, 0) + 1

                def taken(c=c, holder=holder):
                    if st.campaign(c).state not in ("running", "paused"):
                        return "ended"
                    held = st.lease(c)
                    return held if held is not None and held.holder != holder else None

                lease = wait_until(taken, 120, 0.02)
                t_lease = time.time()
                wait_until(
                    lambda c=c: (
                        st.campaign(c).state not in ("running", "paused")
                        or len([e for e in st.audit_log(c) if e.action == TAKEOVER_ACTION]) >= expected[c]
                    ),
                    120,
                    0.05,
                )
                t_rec = time.time()
                if lease == "ended":  # it ended between the check and the kill: nothing to take over
                    expected[c] -= 1
                    continue
                takeovers.append(t_lease - t_kill)
                recorded.append(t_rec - t_kill)
                out(
                    benchmark="daemon_takeover",
                    kill=k + 1,
                    campaign=c,
                    takeover_s=round(t_lease - t_kill, 3),
                    recorded_s=round(t_rec - t_kill, 3),
                    ttl_s=a.ttl,
                    new_holder=lease.holder,
                )
            d.start()  # the dead host comes back; it survives the next round
        wait_until(lambda: all(st.campaign(c).state not in ("running", "paused") for c in cids), 900, 0.5)
        trials = [t for c in cids for t in st.trials(c)]
        out(
            benchmark="daemon_takeover",
            summary=True,
            kills=a.kills,
            ttl_s=a.ttl,
            campaigns=len(cids),
            trials_per_campaign=a.trials,
            campaigns_run_twice=sum(run_twice(st, c, expected.get(c, 0)) for c in cids),
            takeovers=len(takeovers),
            trials_lost=sum(t.state in UNFINISHED for t in trials)
            + sum(st.campaign(c).state in ("running", "paused") for c in cids),
            trials_total=len(trials),
            trials_done=sum(t.state == "done" for t in trials),
            trials_failed=sum(t.state == "failed" for t in trials),
            takeover_s_median=round(statistics.median(takeovers), 3),
            takeover_s_max=round(max(takeovers), 3),
            recorded_s_median=round(statistics.median(recorded), 3),
            recorded_s_max=round(max(recorded), 3),
            wall_s=round(time.time() - t_start, 1),
        )
    finally:
        st.close()
        for d in daemons:
            d.stop()
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


if __name__ == "__main__":
    main()
