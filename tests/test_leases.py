"""Campaign leases (issue 10 item 7): one runner acts on a campaign at a time; a dead runner's campaign is taken
over only after its lease expires; a runner that lost its lease stops acting. On SQLite and on the real PostgreSQL
server (``store_url`` runs each store test on both), with real processes racing and a real ``kill -9``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest
from running import in_background, start, two_chamber, wait_for
from sqlalchemy import update

from labloop.run.campaign import CampaignRunner
from labloop.run.lease import CampaignLease
from labloop.states import UNFINISHED
from labloop.store import Store
from labloop.store.leases import LeaseHeld, LeaseLost
from labloop.store.schema import Lease


def _utc(t):
    return t if t.tzinfo else t.replace(tzinfo=UTC)  # SQLite returns naive UTC


def _campaign(store: Store, name: str = "leased") -> int:
    return store.create_campaign(name, "name: x", "h").id


def test_acquire_renew_release_and_the_fencing_token(store_url):
    store = Store(store_url)
    cid = _campaign(store)
    assert store.lease(cid) is None and store.takeover_candidates() == []
    assert store.acquire_lease(cid, "a", 60) == 1
    assert store.acquire_lease(cid, "a", 60) == 1  # its own live lease: renewed, same token
    with pytest.raises(LeaseHeld, match=r"campaign \d+ is leased to runner 'a' until .* s from now"):
        store.acquire_lease(cid, "b", 60)
    store.renew_lease(cid, "a", 1, 0.2)  # shortened, so that it expires
    wait_for(lambda: [info.campaign_id for info in store.takeover_candidates()] == [cid], timeout=10)
    assert store.acquire_lease(cid, "b", 60) == 2  # a new holder: the token grows
    with pytest.raises(LeaseLost, match="held by runner 'b' \\(token 2\\)"):
        store.renew_lease(cid, "a", 1, 60)  # the old holder learns it was replaced
    assert store.renew_lease(cid, "b", 2, 60) > store.lease(cid).acquired_at
    assert not store.release_lease(cid, "a", 1)  # not the old holder's to release
    assert store.release_lease(cid, "b", 2)
    assert store.acquire_lease(cid, "a", 60) == 3  # released: free at once, token still grows
    store.finish_campaign(cid, "finished", "done")
    store.renew_lease(cid, "a", 3, 0.01)
    time.sleep(0.05)
    assert [i.campaign_id for i in store.expired_leases()] == [cid]
    assert store.takeover_candidates() == []  # an ended campaign is nobody's to take over
    with pytest.raises(ValueError):
        store.acquire_lease(cid, "a", 0)
    store.close()


RACER = textwrap.dedent("""
    import sys, time
    from labloop.store import Store
    from labloop.store.leases import LeaseHeld
    url, cid, name, at = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    store = Store(url, create=False)
    while time.time() < at:
        time.sleep(0.001)
    try:
        print("won", store.acquire_lease(cid, name, 60), flush=True)
    except LeaseHeld as exc:
        print("held", exc.problem, flush=True)
""")


def _race(store_url: str, cid: int, n: int, tag: str) -> list[str]:
    at = time.time() + 3.0  # every racer is connected by then: they start their INSERT within a millisecond
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, store_url, str(cid), f"{tag}{i}", str(at)], stdout=subprocess.PIPE, text=True
        )
        for i in range(n)
    ]
    return [p.communicate(timeout=60)[0].strip() for p in procs]


def test_processes_racing_for_one_campaign_exactly_one_wins(store_url):
    store = Store(store_url)
    cid = _campaign(store)
    out = _race(store_url, cid, 6, "r")
    won = [o for o in out if o.startswith("won")]
    assert len(won) == 1 and won[0] == "won 1", out
    assert all(o.startswith("held") for o in out if not o.startswith("won")), out
    # and for a takeover of an expired lease: again exactly one, with the next token
    holder = store.lease(cid).holder
    store.renew_lease(cid, holder, 1, 0.01)
    out = _race(store_url, cid, 6, "t")
    assert sorted(o.split()[0] for o in out) == ["held"] * 5 + ["won"] and "won 2" in out, out
    store.close()


HOLDER = textwrap.dedent("""
    import sys, time
    from labloop.store import Store
    url, cid, ttl = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    store = Store(url, create=False)
    token = store.acquire_lease(cid, "doomed", ttl)
    print("holding", token, flush=True)
    while True:  # a runner's heartbeat
        store.renew_lease(cid, "doomed", token, ttl)
        time.sleep(0.1)
""")


def test_a_killed_holder_is_taken_over_only_after_its_lease_expires(store_url):
    store = Store(store_url)
    cid = _campaign(store)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, store_url, str(cid), "2.0"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().split() == ["holding", "1"]
    time.sleep(0.3)  # a few renewals
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    last = store.lease(cid)  # its last renewal: nothing renews it any more
    refused = 0
    while True:
        try:
            token = store.acquire_lease(cid, "heir", 60)
            break
        except LeaseHeld as exc:
            refused += 1
            assert "'doomed'" in exc.problem
            time.sleep(0.05)
    taken = store.lease(cid)
    assert token == 2 and taken.holder == "heir"
    assert taken.acquired_at >= last.expires_at  # on the store's clock: never before the expiry
    assert refused >= 1
    store.close()


def test_resume_breaks_the_lease_of_a_runner_whose_process_is_gone(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
    cid = _campaign(store)
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    gone = f"{socket.gethostname()}:{proc.stdout.strip()}:{time.time() - 5:.3f}:deadbeef"  # that pid has exited
    store.acquire_lease(cid, gone, 600)
    with pytest.raises(LeaseHeld):
        CampaignLease.acquire(store, cid, 60, break_dead=False)  # another machine could not tell: it waits
    lease = CampaignLease.acquire(store, cid, 60)  # this host can: the dead process's lease is broken
    assert lease.token == 2 and store.lease(cid).holder == lease.holder
    store.renew_lease(cid, lease.holder, 2, 60)
    with pytest.raises(LeaseHeld):  # a live holder's lease is never broken
        CampaignLease.acquire(store, cid, 60)
    store.close()


# ------------------------------------------------------------------------------------------------ the runner
def test_a_runner_that_cannot_renew_stops_acting_and_another_takes_the_campaign_over(tmp_path):
    """Runner A loses the store for its renewals (a network partition): it stops acting on its own before its
    lease expires; runner B takes the campaign over only after the expiry and finishes it. No step of A starts
    after B took over, and no trial is deposited twice."""
    data = two_chamber(max_trials=6, options={"state_file": str(tmp_path / "world.json")})  # B finds the samples
    data["strategy"]["initial_design"] = 6
    # slow enough that A still has work when its lease runs out (at the default 36000x the six trials end within
    # the 3-s lease once the store is fast, and A would finish its budget instead of stopping on its own)
    data["lab"]["time_scale"] = 1200.0
    store_a, runner_a = start(data, tmp_path)
    runner_a.lease_ttl = 3.0
    th, result = in_background(runner_a)
    cid = runner_a.campaign.id
    wait_for(
        lambda: any(s.kind == "synthesize" and s.state == "done" for s in store_a.steps(campaign_id=cid)), timeout=60
    )

    def unreachable(*_a, **_k):
        raise ConnectionError("store unreachable (simulated partition)")

    store_a.renew_lease = unreachable  # its other writes still go through until it stops on its own
    th.join(60)
    assert not th.is_alive()
    decision = result["decision"]
    assert decision.rule == "lease_lost" and "could not be renewed" in decision.reason
    assert store_a.campaign(cid).state == "running"  # the loser recorded no end: the campaign is someone's to take
    last_step_a = max(_utc(s.started_at) for s in store_a.steps(campaign_id=cid))

    store_b = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
    while True:
        try:
            runner_b, resumptions = CampaignRunner.resume(store_b, store_b.campaign(cid), lease_ttl=3.0)
            break
        except LeaseHeld:
            time.sleep(0.1)
    taken = store_b.lease(cid)
    assert taken.token == 2 and taken.acquired_at > last_step_a
    assert runner_b.run(resumptions).rule == "budget"
    trials = store_b.trials(cid)
    assert len(trials) == 6 and not [t for t in trials if t.state in UNFINISHED]
    for t in trials:
        deposits = [s for s in store_b.steps(t.id) if s.kind == "synthesize" and s.state == "done"]
        assert len(deposits) <= 1, f"trial {t.number} deposited twice"
    assert cid in [i.campaign_id for i in store_b.expired_leases()]  # released on the clean end
    assert store_b.takeover_candidates() == []  # ended cleanly: released, and finished
    store_a.close()
    store_b.close()


def test_a_runner_whose_lease_was_taken_stops_at_its_next_heartbeat(tmp_path):
    data = two_chamber(max_trials=20)
    store, runner = start(data, tmp_path)
    th, result = in_background(runner)
    cid = runner.campaign.id
    wait_for(
        lambda: store.lease(cid) is not None and any(s.state == "done" for s in store.steps(campaign_id=cid)),
        timeout=60,
    )
    holder = store.lease(cid)
    with store.session() as s:  # as if it had expired and another runner had taken it (one statement: the
        # runner's own heartbeat cannot renew in between)
        s.execute(
            update(Lease)
            .where(Lease.campaign_id == cid)
            .values(holder="usurper", token=Lease.token + 1, expires_at=datetime.now(UTC) + timedelta(minutes=10))
        )
    assert store.lease(cid).token == holder.token + 1
    th.join(60)
    assert not th.is_alive()
    assert result["decision"].rule == "lease_lost" and "held by runner 'usurper'" in result["decision"].reason
    assert store.campaign(cid).state == "running" and store.lease(cid).holder == "usurper"
    done = len([t for t in store.trials(cid) if t.state == "done"])
    assert done < 20  # it stopped long before its budget
    store.close()


def test_resume_never_reopens_a_campaign_another_runner_ended(tmp_path):
    store, runner = start(two_chamber(max_trials=1), tmp_path)
    cid = runner.campaign.id
    store.finish_campaign(cid, "finished", "budget: 1 trial")  # the other runner ended it after we listed it
    with pytest.raises(Exception, match="has already ended"):
        CampaignRunner.resume(store, store.campaign(cid))
    assert store.campaign(cid).state == "finished"
    assert store.acquire_lease(cid, "someone", 60) >= 1  # and its lease was given back
    store.close()
