"""The audit log tells what happened to every command: accepted, refused (and why) or failed (with the error id the
client saw), refused submits and stops of ended campaigns included; a revoked key in a loop is one row per key per
minute with the count; internal errors have a traceback in the daemon's log file; bad numbers are refused naming
the field."""

from __future__ import annotations

import json
import threading

import pytest
import yaml
from daemon_helpers import DaemonProcess, add_user, key_file, wait_until
from running import two_chamber
from typer.testing import CliRunner

from labloop.cli import app
from labloop.control import methods, protocol
from labloop.control.server import Daemon
from labloop.errors import LabloopError
from labloop.store import Store

cli = CliRunner()


def audit_rows(url, **match):
    st = Store(url)
    try:
        rows = st.audit_log()
    finally:
        st.close()
    return [r for r in rows if all(getattr(r, k) == v for k, v in match.items())]


def run_hints(output: str) -> int:
    """Run every command a message suggests that needs no placeholder filled in; each must succeed. Returns how
    many ran."""
    import re
    import shlex

    ran = 0
    for hint in re.findall(r"`(labloop [^`]*)`", output):
        words = shlex.split(hint)[1:]
        if any(w.isupper() or "..." in w for w in words):
            continue  # FILE, N...: the operator fills them in
        r = cli.invoke(app, words)
        assert r.exit_code == 0, (hint, r.output)
        ran += 1
    return ran


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit")
    d = DaemonProcess(tmp)
    d.keys = {n: add_user(d.store_url, n, r, d.server_keys) for n, r in (("olga", "operator"), ("rita", "operator"))}
    d.start()
    d.files = {n: key_file(tmp, k) for n, k in d.keys.items()}
    d.tmp = tmp
    yield d
    d.stop()


def test_refused_submits_and_ended_stops_are_audited_with_their_reason(lab):
    c = lab.client(lab.keys["olga"])
    bad = "name: x\nparameters: [\n"  # not YAML
    with pytest.raises(LabloopError):
        c.call("submit", text=bad, source="bad.yaml")
    rows = audit_rows(lab.store_url, action="submit", user="olga")
    assert [r.outcome for r in rows] == ["refused"]
    assert rows[0].detail["reason"] and "bad.yaml" in rows[0].detail["reason"]

    data = two_chamber(max_trials=2)
    data["name"] = "short"
    r = c.call("submit", timeout=330.0, text=yaml.safe_dump(data), source="short.yaml")
    rows = audit_rows(lab.store_url, action="submit", user="olga")
    assert [x.outcome for x in rows] == ["refused", "accepted"] and rows[1].campaign_id == r["campaign_id"]
    wait_until(lambda: c.call("status", campaign=r["campaign_id"])["campaign"]["state"] == "finished", 180)

    with pytest.raises(LabloopError, match="already ended") as err:  # a stop of an ended campaign: refused
        c.call("stop", campaign=r["campaign_id"])
    assert "labloop run" not in err.value.fix
    srv = ["--server", lab.control, "--key", lab.files["olga"]]
    res = cli.invoke(app, ["stop", "--campaign", str(r["campaign_id"]), *srv])  # the hint works as printed
    assert res.exit_code == 2 and run_hints(res.output) >= 1
    stops = audit_rows(lab.store_url, action="stop", user="olga")
    assert [x.outcome for x in stops] == ["refused", "refused"] and "already ended" in stops[0].detail["reason"]
    assert stops[0].campaign_id == r["campaign_id"]

    # the same on the store, without the daemon: audited once, refused, with the reason
    res = cli.invoke(app, ["stop", "--campaign", str(r["campaign_id"]), "--store", lab.store_url, "--user", "sam"])
    assert res.exit_code == 2 and "already ended" in res.output
    assert run_hints(res.output) >= 1
    local = audit_rows(lab.store_url, user="sam")
    assert [(x.action, x.outcome) for x in local] == [("request.stop", "refused")]
    c.close()


def test_a_revoked_key_in_a_loop_is_one_row_with_the_count(lab):
    client = lab.client(lab.keys["rita"])
    assert isinstance(client.call("list"), list)
    st = Store(lab.store_url)
    try:
        st.revoke_user("rita", by="test")
    finally:
        st.close()
    refused = 0

    def refused_now():
        nonlocal refused
        try:
            client.call("list")
        except LabloopError as exc:
            assert "not a user of this lab, or was revoked" in exc.problem
            refused += 1
            return True
        return False

    wait_until(refused_now, 30)
    for _ in range(59):
        assert refused_now()
    client.close()
    assert not audit_rows(lab.store_url, user="rita", outcome="refused")  # counted, not a row per request
    lab.stop(campaigns=False)  # a closing daemon writes the open windows
    rows = audit_rows(lab.store_url, user="rita", outcome="refused")
    lab.start()
    assert len(rows) == 1 and rows[0].detail["count"] == refused == 60
    assert rows[0].detail["args"] == {"methods": {"list": 60}}
    assert "revoked" in rows[0].detail["reason"]
    st = Store(lab.store_url)
    try:
        from labloop.control.audit import verify

        assert verify(st) == []  # the chain stays verifiable
    finally:
        st.close()


def test_out_of_range_numbers_are_bad_params_naming_the_field(lab):
    c = lab.client(lab.keys["olga"])
    for method, params, field in (
        ("missed", {"campaign": 1, "after_seq": 10**30}, "after_seq"),
        ("missed", {"campaign": 10**30}, "campaign"),
        ("status", {"campaign": -1}, "campaign"),
        ("approve", {"trials": [10**30]}, "trials"),
        ("submit", {"text": "x", "time_scale": 1e300}, "time_scale"),
    ):
        with pytest.raises(LabloopError) as err:
            c.call(method, **params)
        assert "internal" not in err.value.problem and field in err.value.problem, err.value.problem
        assert f"labloop {method} --help" not in err.value.fix or method not in ("missed",)
    with pytest.raises(LabloopError, match="labloop watch --help"):
        c.call("missed", campaign=1, after_seq=-1)
    assert c.call("list") is not None  # and the daemon answers on
    c.close()


def test_nested_json_is_called_nested_not_wrong_encoding():
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.parse_request(b"[" * 100_000 + b"]" * 100_000)
    assert "nested" in err.value.problem and "UTF-8" not in err.value.problem


def test_an_internal_error_is_logged_with_its_traceback_and_id_and_audited_failed(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    Store(url).close()
    from labloop.identity.keys import ServerKeys

    keys = ServerKeys.load_or_create(tmp_path / "keys")
    olga = add_user(url, "olga", "operator", keys)

    def broken(call, params):
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(methods.HANDLERS, "export", broken)
    d = Daemon(url, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", tmp_path / "keys")
    th = threading.Thread(target=d.serve_forever, daemon=True)
    th.start()
    try:
        from labloop.control.client import Client

        c = Client(d.control_address, olga, 30)
        with pytest.raises(LabloopError) as err:
            c.call("export")
        c.close()
    finally:
        d.stop()
        th.join(10)
    problem = err.value.problem
    assert "internal error" in problem
    error_id = problem.split("internal error ")[1].split()[0]
    logged = (tmp_path / "keys" / "daemon.log").read_text()
    assert error_id in logged and "Traceback" in logged and "ZeroDivisionError: a bug" in logged
    assert str(tmp_path / "keys" / "daemon.log") in err.value.fix
    rows = audit_rows(url, action="export")
    assert [r.outcome for r in rows] == ["failed"] and error_id in rows[0].detail["reason"]
    assert json.dumps(rows[0].detail)


def test_watch_into_a_pipe_prints_each_event_as_it_comes_and_flushes_on_sigterm(lab):
    """Also: --key alone uses the key file's addresses, and submit's hint works as printed."""
    import os
    import signal
    import subprocess
    import sys

    key = lab.keys["olga"].model_copy(update={"control": lab.control, "stream": lab.stream})
    (lab.tmp / "addr").mkdir(exist_ok=True)
    keyfile = key_file(lab.tmp / "addr", key)
    data = two_chamber(max_trials=40, options={"probe_minutes": 6})
    data["name"] = "watched"
    path = lab.tmp / "watched.yaml"
    path.write_text(yaml.safe_dump(data))
    r = cli.invoke(app, ["submit", str(path), "--key", keyfile, "--time-scale", "1800"])  # no --server
    assert r.exit_code == 0, r.output
    hint = r.output.split("`")[1]
    assert hint.startswith("labloop watch --campaign ") and f"--key {keyfile}" in hint
    cid = hint.split("--campaign ")[1].split()[0]
    st = cli.invoke(app, ["status", "--campaign", cid, "--key", keyfile])
    assert st.exit_code == 0 and "watched" in st.output, st.output

    proc = subprocess.Popen(
        [sys.executable, "-m", "labloop", *hint.split()[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=lab.tmp,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        first = proc.stdout.readline()  # arrives while the campaign runs: not held until the end
        assert "watched #" in first, (first, proc.stderr.read() if proc.poll() is not None else "")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "best so far" in rest or "events" in rest  # the summary table, flushed at the end
    c = lab.client(lab.keys["olga"])
    with pytest.raises(LabloopError, match="already runs this lab"):  # a second runner for the same lab: refused
        c.call("submit", timeout=330.0, text=path.read_text(), source="again.yaml")
    again = [x for x in audit_rows(lab.store_url, action="submit") if "again.yaml" in json.dumps(x.detail)]
    assert [x.outcome for x in again] == ["refused"] and "already runs this lab" in again[0].detail["reason"]
    c.call("estop", campaign=int(cid))
    c.close()
