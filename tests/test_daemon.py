"""The daemon with real processes and sockets: submit, operator commands through --server, two campaigns at
once, a campaign process killed with SIGKILL, and a viewer refused."""

from __future__ import annotations

import json
import os
import signal

import pytest
import yaml
from daemon_helpers import DaemonProcess, add_user, key_file, wait_until
from running import two_chamber
from typer.testing import CliRunner

from labloop.cli import app
from labloop.store import Store
from labloop.store.events import events_after

cli = CliRunner()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("daemon")
    d = DaemonProcess(tmp)
    keys = {n: add_user(d.store_url, n, r, d.server_keys) for n, r in (("olga", "operator"), ("vera", "viewer"))}
    d.start()
    d.files = {n: key_file(tmp, k) for n, k in keys.items()}
    d.keys = keys
    d.tmp = tmp
    yield d
    d.stop()


def run(lab, *args, user="olga"):
    return cli.invoke(app, [*args, "--server", lab.control, "--key", lab.files[user]])


def campaign_file(lab, name, **kw) -> str:
    data = two_chamber(**kw)
    data["name"] = name
    path = lab.tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def state(lab, cid):
    return lab.client(lab.keys["olga"]).call("status", campaign=cid)["campaign"]["state"]


@pytest.fixture(scope="module")
def two(lab):
    """A long campaign and a short one (on a lab with other options: one runner per lab) submitted together."""
    long_file = campaign_file(lab, "long", max_trials=40, options={"probe_minutes": 6})
    short_file = campaign_file(lab, "short", max_trials=3)
    r1 = run(lab, "submit", long_file, "--time-scale", "1800")
    assert r1.exit_code == 0, r1.output
    r2 = run(lab, "submit", short_file)
    assert r2.exit_code == 0, r2.output
    listed = lab.client(lab.keys["olga"]).call("list")
    return {c["name"]: c for c in listed}


def test_two_campaigns_run_at_once_each_in_its_own_process(lab, two):
    assert two["long"]["pid"] and two["short"]["pid"] and two["long"]["pid"] != two["short"]["pid"]
    assert two["long"]["state"] == "running"
    wait_until(lambda: state(lab, two["short"]["id"]) == "finished", 120)
    st = Store(lab.store_url)
    try:
        starts = [d for name, d in st.documents() if name == "start" and d.get("campaign") == "short"]
        stream = events_after(st, two["short"]["id"], 0, 100_000)
    finally:
        st.close()
    assert starts and {d["provenance"]["user"] for d in starts} == {"olga"}  # the verified submitter
    assert [e.seq for e in stream] == list(range(1, len(stream) + 1))
    assert {"proposal", "step_start", "step_end", "measurement", "best", "stopped"} <= {e.kind for e in stream}
    cid = str(two["short"]["id"])
    watched = run(lab, "watch", "--campaign", cid, "--until-end")  # joins after the end: catches up, returns
    assert watched.exit_code == 0, watched.output
    assert "best so far" in watched.output and "stopped:" in watched.output and "finished" in watched.output
    remote = run(lab, "export", "--campaign", cid, "--format", "csv")
    local = cli.invoke(app, ["export", "--campaign", cid, "--format", "csv", "--store", lab.store_url])
    assert remote.exit_code == 0 and remote.output == local.output and "trial" in remote.output


def test_status_pause_resume_stop_through_the_server(lab, two):
    cid = str(two["long"]["id"])
    r = run(lab, "status", "--campaign", cid)
    assert r.exit_code == 0 and "long" in r.output and "state: running" in r.output, r.output
    r = run(lab, "pause", "--campaign", cid)
    assert r.exit_code == 0 and "paused" in r.output, r.output
    wait_until(lambda: state(lab, cid) == "paused", 30)
    r = run(lab, "resume", "--campaign", cid)
    assert r.exit_code == 0, r.output
    wait_until(lambda: state(lab, cid) == "running", 30)
    r = run(lab, "stop", "--campaign", cid)
    assert r.exit_code == 0, r.output
    wait_until(lambda: state(lab, cid) == "stopped", 120)


def test_a_viewers_pause_is_refused_naming_the_role_and_audited(lab, two):
    r = run(lab, "pause", "--campaign", str(two["long"]["id"]), user="vera")
    assert r.exit_code == 2
    assert "vera" in r.output and "operator" in r.output, r.output
    # the wording the docs (users-and-audit.md) and the dashboard give: who, in which role, and what it needs
    assert "vera is a viewer and may not pause: that needs the operator role or admin" in r.output, r.output
    st = Store(lab.store_url)
    try:
        rows = [a for a in st.audit_log() if a.user == "vera"]
    finally:
        st.close()
    assert any(
        "pause" in json.dumps([a.action, a.detail]) and "refused" in json.dumps([getattr(a, "outcome", None), a.detail])
        for a in rows
    )
    r = run(lab, "status", "--campaign", str(two["long"]["id"]), user="vera")  # what a viewer may do
    assert r.exit_code == 0, r.output


def test_a_killed_campaign_process_is_noticed_recorded_and_resumed(lab):
    r = run(
        lab, "submit", campaign_file(lab, "crashy", max_trials=6, options={"probe_minutes": 7}), "--time-scale", "3600"
    )
    assert r.exit_code == 0, r.output
    client = lab.client(lab.keys["olga"])
    c = next(c for c in client.call("list") if c["name"] == "crashy")
    wait_until(lambda: client.call("status", campaign=c["id"])["running_steps"], 60, 0.02)
    os.kill(c["pid"], signal.SIGKILL)
    wait_until(lambda: state(lab, c["id"]) == "finished", 180)
    st = Store(lab.store_url)
    try:
        crashes = [a for a in st.audit_log(c["id"]) if a.action == "daemon.crash"]
        kinds = [e.kind for e in events_after(st, c["id"], 0, 100_000)]
        trials = st.trials(c["id"])
    finally:
        st.close()
    assert len(crashes) == 1 and "SIGKILL" in crashes[0].detail["exit"] and crashes[0].detail["resume"]
    assert "crash" in kinds and "campaign_resume" in kinds
    assert len(trials) == 6 and len({t.number for t in trials}) == 6
    # only syntheses cut short by the kill fail (their samples were consumed): at most one per chamber (two)
    failed = [t for t in trials if t.state != "done"]
    assert len(failed) <= 2, [(t.number, t.state, t.failure_reason) for t in failed]
    assert all(t.state == "failed" and "interrupted while running" in (t.failure_reason or "") for t in failed), [
        (t.number, t.state, t.failure_reason) for t in failed
    ]


def test_no_daemon_is_a_clear_error(tmp_path, lab):
    r = cli.invoke(app, ["status", "--server", "tcp://127.0.0.1:1", "--key", lab.files["olga"]])
    assert r.exit_code == 2 and "no daemon answers at tcp://127.0.0.1:1" in r.output


def test_campaigns_outlive_the_daemon_and_a_new_daemon_adopts_and_guards_them(tmp_path):
    d = DaemonProcess(tmp_path)
    key = add_user(d.store_url, "otto", "operator", d.server_keys)
    d.start()
    try:
        data = two_chamber(max_trials=40)
        data["name"] = "adopted"
        r = d.client(key).call("submit", text=yaml.safe_dump(data), source="adopted.yaml", time_scale=900.0)
        d.stop(campaigns=False)  # the daemon goes (an upgrade, a crash); the campaign runs on
        d.start()
        client = d.client(key)
        c = next(c for c in client.call("list") if c["id"] == r["campaign_id"])
        assert c["pid"] == r["pid"] and "adopted campaign 'adopted'" in d.output()
        os.kill(c["pid"], signal.SIGKILL)
        wait_until(
            lambda: next(x for x in client.call("list") if x["id"] == c["id"])["pid"] not in (None, c["pid"]), 120
        )  # resumed in a new process
        client.call("stop", campaign=c["id"], wait=30.0)
        wait_until(lambda: client.call("status", campaign=c["id"])["campaign"]["state"] == "stopped", 180)
        st = Store(d.store_url)
        try:
            crashes = [a for a in st.audit_log(c["id"]) if a.action == "daemon.crash"]
        finally:
            st.close()
        assert len(crashes) == 1 and crashes[0].detail["pid"] == r["pid"] and crashes[0].detail["resume"]
    finally:
        d.stop()
