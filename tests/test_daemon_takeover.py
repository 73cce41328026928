"""Two daemons on one real PostgreSQL store: daemon A runs a campaign, A's host dies (``kill -9`` of the daemon and
of its campaign process), daemon B takes the campaign over once its lease expires and finishes it; no trial is run
twice and none is lost."""

from __future__ import annotations

import yaml
from daemon_helpers import DaemonProcess, add_user, wait_until
from running import two_chamber

from labloop.control.client import Client
from labloop.control.supervisor import TAKEOVER_ACTION
from labloop.states import TrialState
from labloop.store import Store
from labloop.store.events import events_after

UNFINISHED = {
    TrialState.PROPOSED.value,
    TrialState.APPROVED.value,
    TrialState.RUNNING.value,
    TrialState.MEASURED.value,
    TrialState.INTERRUPTED.value,
}


def test_a_daemon_takes_over_the_campaign_of_a_dead_daemon_once(tmp_path, postgres_url, monkeypatch):
    monkeypatch.setenv("LABLOOP_LEASE_TTL", "6")  # inherited by both daemons and their campaign processes
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = DaemonProcess(tmp_path / "a", postgres_url), DaemonProcess(tmp_path / "b", postgres_url)
    olga = add_user(postgres_url, "olga", "operator", a.server_keys)
    data = two_chamber(max_trials=8)
    data["name"] = "shared-store"
    a.start()
    b.start()
    try:
        cid = Client(a.control, olga, 60).call("submit", text=yaml.safe_dump(data), source="shared.yaml")["campaign_id"]
        st = Store(postgres_url)
        try:
            wait_until(lambda: sum(t.state == "done" for t in st.trials(cid)) >= 2, 120)
            first = st.lease(cid)
            assert first is not None
            victims = a.kill_host()
            assert len(victims) >= 2  # the daemon and its campaign process
            wait_until(lambda: st.campaign(cid).state == "finished", 180, 0.2)
            taken = [e for e in st.audit_log(cid) if e.action == TAKEOVER_ACTION]
            assert len(taken) == 1, [e.detail for e in taken]
            # taken from the dead host's runner (or, when the machine's load starved a first resume past its
            # lease, from that failed resume) by another
            assert taken[0].detail["to"] != taken[0].detail["from"]
            assert "took over campaign 'shared-store'" in b.output()
            kinds = [e.kind for e in events_after(st, cid, 0, 100_000)]
            assert "takeover" in kinds
            trials = st.trials(cid)
            numbers = [t.number for t in trials]
            assert len(numbers) == len(set(numbers)) == 8
            assert not [t.number for t in trials if t.state in UNFINISHED]
            steps = st.steps(campaign_id=cid)
            assert not [s for s in steps if s.state == "running"]
            by_trial: dict[int, list] = {}
            for s in steps:
                by_trial.setdefault(s.trial_id, []).append(s)
            for trial_steps in by_trial.values():
                done = [s.index for s in trial_steps if s.state == "done"]
                assert len(done) == len(set(done)), "a step of a trial was done twice"
                spans = sorted((s.started_at, s.finished_at) for s in trial_steps)
                for (_, end), (start, _) in zip(spans, spans[1:]):
                    assert end is not None and end <= start, "two runners acted on one trial at once"
        finally:
            st.close()
    finally:
        a.stop()
        b.stop()


# ------------------------------------------------------------------------------ the takeover policy, in-process
def orphan(tmp_path, on_crash: str):
    """A running campaign whose runner died elsewhere: its lease has expired."""
    st = Store(f"sqlite:///{tmp_path / 'lab.db'}")
    data = two_chamber(max_trials=3)
    data["scheduling"] = {"on_crash": on_crash}
    c = st.create_campaign("orphan", yaml.safe_dump(data), "hash")
    st.acquire_lease(c.id, "other-host:4242:1.0:dead", 0.001)
    wait_until(lambda: st.takeover_candidates())
    return st, c


def supervisor(tmp_path, st, spawned):
    from labloop.control.supervisor import Supervisor

    sup = Supervisor(st, st.url, tmp_path / "logs", lambda cid, name: None)

    def spawn(user, **kw):
        spawned.append(kw)
        return {"ok": True}

    sup.spawn = spawn
    return sup


def test_a_campaign_left_for_an_operator_is_not_taken_over(tmp_path):
    st, c = orphan(tmp_path, "wait")
    spawned: list = []
    assert supervisor(tmp_path, st, spawned).take_over() == []
    assert spawned == [] and not [e for e in st.audit_log(c.id) if e.action == TAKEOVER_ACTION]
    st.close()


def test_a_takeover_is_recorded_once_and_never_repeated_while_this_daemon_runs_it(tmp_path):
    st, c = orphan(tmp_path, "resume")
    spawned: list = []
    sup = supervisor(tmp_path, st, spawned)
    real = sup.spawn

    def spawn(user, **kw):  # what the child's resume does: take the lease
        st.acquire_lease(c.id, "this-host:1:1.0:child", 60)
        return real(user, **kw)

    sup.spawn = spawn
    lines = sup.take_over()
    assert len(lines) == 1 and "took over campaign 'orphan'" in lines[0]
    assert spawned == [{"resume": c.id, "takeover_from": "other-host:4242:1.0:dead"}]
    taken = [e for e in st.audit_log(c.id) if e.action == TAKEOVER_ACTION]
    assert [(e.detail["from"], e.detail["to"]) for e in taken] == [
        ("other-host:4242:1.0:dead", "this-host:1:1.0:child")
    ]
    assert sup.take_over() == []  # the lease is held now: nothing more to take
    st.close()


def test_a_lost_race_is_no_crash_and_no_takeover(tmp_path):
    from labloop.errors import LabloopError

    st, c = orphan(tmp_path, "resume")
    spawned: list = []
    sup = supervisor(tmp_path, st, spawned)

    def spawn(user, **kw):  # another daemon's child took the lease first; ours refuses
        spawned.append(kw)
        st.acquire_lease(c.id, "third-host:7:1.0:winner", 60)
        raise LabloopError("campaign is leased to runner 'third-host:7:1.0:winner'", "wait")

    sup.spawn = spawn
    lines = sup.take_over()
    assert len(spawned) == 1 and lines == [
        f"did not take over campaign 'orphan' (id {c.id}): it is held by runner third-host:7:1.0:winner now"
    ]
    assert not [e for e in st.audit_log(c.id) if e.action in (TAKEOVER_ACTION, "daemon.crash")]
    st.close()
