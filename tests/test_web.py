"""The dashboard's HTTP side without a browser: sign-in, sessions, CSRF, roles, 401/403/404, the event stream.

Real store (SQLite file), real ASGI app through Starlette's TestClient; a real campaign's rows where a page needs
one. The browser tests (test_dashboard_browser.py) drive the same app in Chromium.
"""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from running import two_chamber
from sqlalchemy import func, select
from starlette.testclient import TestClient
from web_helpers import PASSWORD, add_user

from labloop.data.status import snapshot
from labloop.identity import accounts
from labloop.store import Store, chain
from labloop.store.schema import Event, OperatorRequest, WebSession
from labloop.web.app import COOKIE, Dashboard
from labloop.web.thin import Thinner


@pytest.fixture
def site(tmp_path):
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    store = Store(url)
    text = yaml.safe_dump(two_chamber(max_trials=2))
    c = store.create_campaign("web-test", text, hashlib.sha256(text.encode()).hexdigest())
    tokens = {role: add_user(store, role, role) for role in ("viewer", "operator", "approver", "admin")}
    dash = Dashboard(url, tail=False, action_wait=0.3)
    with TestClient(dash.app(), base_url="http://127.0.0.1") as client:
        yield client, store, c, tokens, dash
    store.close()


def sign_in(client: TestClient, name: str, password: str = PASSWORD):
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return client.post(
        "/login", data={"csrf": csrf, "name": name, "password": password, "next": "/"}, follow_redirects=False
    )


def page_csrf(client: TestClient, campaign: str = "web-test") -> str:
    html = client.get(f"/campaigns/{campaign}").text
    return re.search(r'"csrf":"([^"]+)"', html).group(1)


def test_wrong_password_is_refused_and_opens_no_session(site):
    client, store, *_ = site
    r = sign_in(client, "operator", "not the password")
    assert r.status_code == 401 and "Wrong name or password" in r.text
    r = sign_in(client, "nobody", PASSWORD)  # an unknown name reads the same: no hint which it was
    assert r.status_code == 401 and "Wrong name or password" in r.text
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(WebSession)) == 0
    assert client.get("/api/campaigns").status_code == 401
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")


def test_sign_in_sets_a_strict_http_only_cookie_and_shows_campaigns(site):
    client, *_ = site
    r = sign_in(client, "viewer")
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = client.get("/")
    assert page.status_code == 200 and "web-test" in page.text
    assert "Content-Security-Policy" in page.headers


def test_login_form_without_its_token_is_refused(site):
    client, *_ = site
    r = client.post("/login", data={"csrf": "forged", "name": "operator", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403


def test_viewer_sees_no_buttons_and_a_forged_action_is_refused_and_audited(site):
    client, store, c, *_ = site
    sign_in(client, "viewer")
    html = client.get("/campaigns/web-test").text
    assert 'data-action="pause"' not in html and 'data-action="estop"' not in html
    csrf = page_csrf(client)
    r = client.post("/api/campaigns/web-test/actions/pause", json={}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403
    assert "operator" in r.json()["error"]["problem"]
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(OperatorRequest)) == 0  # nothing changed
    refused = [a for a in store.audit_log() if a.outcome == "refused"]
    assert refused and refused[-1].user == "viewer" and refused[-1].role == "viewer"
    assert chain.problems(*store.audit_chain()) == []


def test_operator_sees_buttons_but_a_request_without_csrf_token_is_refused(site):
    client, store, *_ = site
    sign_in(client, "operator")
    html = client.get("/campaigns/web-test").text
    assert 'data-action="pause"' in html and 'data-action="estop"' in html
    r = client.post("/api/campaigns/web-test/actions/pause", json={})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]["problem"]
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(OperatorRequest)) == 0


def test_operator_action_reaches_the_runner_as_an_acknowledged_request(site):
    client, store, c, *_ = site
    sign_in(client, "operator")
    csrf = page_csrf(client)
    # no runner is alive for this stored campaign: the request is queued and the answer says so (409)
    r = client.post("/api/campaigns/web-test/actions/pause", json={}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 409
    assert "no runner is answering" in r.json()["error"]["problem"]
    with store.session() as s:
        req = s.scalars(select(OperatorRequest)).all()
    assert [(q.action, q.user) for q in req] == [("pause", "operator")]


def test_bad_action_bodies_get_400_and_change_nothing(site):
    client, store, c, tokens, _ = site
    auth = {"Authorization": f"Bearer {tokens['approver']}"}
    for body in (b"not json", b"[1,2]", b'{"trials": "3"}', b'{"trials": []}', b'{"trials": [-1]}'):
        r = client.post("/api/campaigns/web-test/actions/approve", content=body, headers=auth)
        assert r.status_code == 400, body
    r = client.post("/api/campaigns/web-test/actions/reject", json={"trials": [1]}, headers=auth)
    assert r.status_code == 400 and "reason" in r.json()["error"]["problem"]
    r = client.post("/api/campaigns/web-test/actions/selfdestruct", json={}, headers=auth)
    assert r.status_code == 400
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(OperatorRequest)) == 0


def test_api_token_for_scripts(site):
    client, store, c, tokens, _ = site
    assert client.get("/api/campaigns", headers={"Authorization": "Bearer llt_wrong"}).status_code == 401
    r = client.get("/api/campaigns/web-test", headers={"Authorization": f"Bearer {tokens['viewer']}"})
    assert (
        r.status_code == 200
        and r.json()["campaign"]["name"] == "web-test"
        and r.json()["campaign"]["state"] == "running"
    )
    new = accounts.issue_token(store, "viewer")  # a new token retires the old one
    assert client.get("/api/campaigns", headers={"Authorization": f"Bearer {tokens['viewer']}"}).status_code == 401
    assert client.get("/api/campaigns", headers={"Authorization": f"Bearer {new}"}).status_code == 200


def test_expired_session_and_sign_out(site):
    client, store, *_ = site
    r = sign_in(client, "admin")
    cookie = r.cookies.get(COOKIE) or client.cookies.get(COOKIE)
    assert client.get("/audit").status_code == 200
    accounts.expire_session(store, cookie)
    assert client.get("/api/campaigns").status_code == 401
    r = client.get("/audit", follow_redirects=False)
    assert r.status_code == 303 and "expired=1" in r.headers["location"]
    assert "session has ended" in client.get(r.headers["location"]).text
    sign_in(client, "admin")
    html = client.get("/").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/api/campaigns").status_code == 401


def test_audit_page_is_for_admins_only(site):
    client, *_ = site
    sign_in(client, "operator")
    r = client.get("/audit")
    assert r.status_code == 403 and "admins" in r.text


def test_unknown_campaign_and_page_are_404(site):
    client, *_ = site
    sign_in(client, "viewer")
    assert client.get("/campaigns/nope").status_code == 404
    assert "no campaign called 'nope'" in client.get("/api/campaigns/nope").json()["error"]["problem"]
    assert client.get("/api/campaigns/nope/events").status_code == 404
    assert client.get("/no/such/page").status_code == 404


def test_pages_load_nothing_from_other_sites(site):
    client, *_ = site
    sign_in(client, "admin")
    for path in (
        "/",
        "/campaigns/web-test",
        "/audit",
        "/login",
        "/static/app.js",
        "/static/plot.js",
        "/static/style.css",
    ):
        body = client.get(path).text
        assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', body), path
        assert "@import" not in body and "url(http" not in body, path


def _events(store: Store, cid: int, first: int, last: int) -> None:
    with store.session() as s:
        for seq in range(first, last + 1):
            s.add(Event(campaign_id=cid, seq=seq, kind="step", body={"n": seq}))


def _read_sse(response, n: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seq = kind = None
    for line in response.iter_lines():
        if line.startswith("id: "):
            seq = line[4:]
        elif line.startswith("event: "):
            kind = line[7:]
        elif line == "" and kind is not None:
            out.append((seq, kind))
            seq = kind = None
            if len(out) >= n:
                break
    return out


def test_event_stream_catches_up_from_the_store_after_a_reconnect(site):
    client, store, c, tokens, dash = site
    _events(store, c.id, 1, 5)
    auth = {"Authorization": f"Bearer {tokens['viewer']}"}
    with client.stream("GET", "/api/campaigns/web-test/events", headers=auth) as r:
        got = _read_sse(r, 6)
    assert got == [(str(i), "step") for i in range(1, 6)] + [(None, "live")]
    _events(store, c.id, 6, 8)
    with client.stream("GET", "/api/campaigns/web-test/events", headers={**auth, "Last-Event-ID": "5"}) as r:
        got = _read_sse(r, 4)
    assert got == [("6", "step"), ("7", "step"), ("8", "step"), (None, "live")]
    r = client.get("/api/campaigns/web-test/events?after=abc", headers=auth)
    assert r.status_code == 400


def _reading(descriptor: str, value: float) -> dict:
    return {
        "name": "event",
        "doc": {
            "descriptor": descriptor,
            "time": 1.0,
            "data": {f"{descriptor}_p": value},
            "uid": "x",
            "timestamps": {},
            "seq_num": 1,
        },
    }


def _stored(store: Store, cid: int, rows: list[tuple[int, float, str, dict]]) -> None:
    """(seq, seconds after a fixed time, kind, body) rows into the events table."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with store.session() as s:
        for seq, dt, kind, body in rows:
            s.add(Event(campaign_id=cid, seq=seq, at=t0 + timedelta(seconds=dt), kind=kind, body=body))


def _frames(response):
    """(id, event, data) of each server-sent event, as they come."""
    seq = kind = None
    data = ""
    for line in response.iter_lines():
        if line.startswith("id: "):
            seq = int(line[4:])
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and kind is not None:
            yield seq, kind, json.loads(data)
            seq = kind = None


def test_thinner_keeps_every_campaign_event_and_the_latest_reading_per_signal():
    th = Thinner(after=0, window_s=0.1)
    th.add(1, "step_start", {"trial": 1}, now=0.0)
    for i, seq in enumerate(range(2, 12)):  # ten readings of one signal and one of another within the window
        th.add(seq, "document", _reading("a", float(i)), now=0.001 * i)
    th.add(12, "document", _reading("b", 5.0), now=0.02)
    assert [e[0] for e in th.take(now=0.05)] == [1]  # the readings are held: not due yet
    th.add(13, "measurement", {"trial": {"number": 1}}, now=0.06)  # another event: held readings go first
    frame = th.frame(now=0.06).decode()
    head, data = frame.split("data: ")
    sent = json.loads(data)
    assert [e[0] for e in sent["events"]] == [11, 12, 13] and sent["thinned"] == 9
    assert head.startswith("id: 13\n") and "event: batch" in head
    assert sent["events"][0][2] == {"name": "event", "doc": {"time": 1.0, "data": {"a_p": 9.0}, "descriptor": "a"}}
    th.add(14, "document", _reading("a", 1.0), now=1.0)
    assert th.frame(now=1.05) is None and th.due(1.05) == pytest.approx(0.05)
    assert [e[0] for e in th.take(now=1.1)] == [14]  # due: sent although nothing else came
    assert th.upto == 14
    # documents that are not readings (run start/stop, descriptors) are never thinned
    for seq in (15, 16, 17):
        th.add(seq, "document", {"name": "descriptor", "doc": {"uid": str(seq)}}, now=2.0)
    assert [e[0] for e in th.take(now=2.0)] == [15, 16, 17]


def test_thinned_stream_sends_every_campaign_event_and_a_reconnect_resumes_after_its_last_id(site):
    client, store, c, tokens, dash = site
    rows = [(1, 0.0, "step_start", {"trial": 1})]
    rows += [(seq, 0.001 * seq, "document", _reading("a", float(seq))) for seq in range(2, 12)]
    rows += [
        (12, 0.02, "step_end", {"trial": 1}),
        (13, 1.0, "document", _reading("a", 1.0)),
        (14, 1.0, "document", _reading("b", 1.0)),
        (15, 3.0, "measurement", {"trial": {"number": 1}}),
    ]
    _stored(store, c.id, rows)
    auth = {"Authorization": f"Bearer {tokens['viewer']}"}
    with client.stream("GET", "/api/campaigns/web-test/events?thin=1", headers=auth) as r:
        frames = _frames(r)
        seq, kind, data = next(frames)
        assert (kind, seq) == ("batch", 15)
        assert [e[0] for e in data["events"]] == [1, 11, 12, 13, 14, 15] and data["thinned"] == 9
        assert next(frames)[1] == "live"
    # the page dropped after seq 12 (say): it resumes after the last id it had, nothing of the rest missing
    with client.stream("GET", "/api/campaigns/web-test/events?thin=1", headers={**auth, "Last-Event-ID": "12"}) as r:
        frames = _frames(r)
        seq, kind, data = next(frames)
        assert seq == 15 and [e[0] for e in data["events"]] == [13, 14, 15]
        assert next(frames)[1:] == ("live", {"after": 15})


@contextmanager
def _live_gap(site, query: str, later: list[tuple]):
    """A page's stream after seq 1 (``query``: extra parameters) that gets ``later[0]`` (seq 2) live, then, with
    ``later`` (seqs 2-5) in the store, only seq 5 live: 3 and 4 never come live. Yields the frame seq 2 came in
    (read before 5 is published, so the two cannot share a frame) and the frames still to come."""
    client, store, c, tokens, dash = site
    _stored(store, c.id, [(1, 0.0, "step_start", {"trial": 1})])
    auth = {"Authorization": f"Bearer {tokens['viewer']}"}
    with client.stream("GET", f"/api/campaigns/web-test/events?{query}after=1", headers=auth) as r:
        frames = _frames(r)
        assert next(frames)[1:] == ("live", {"after": 1})  # subscribed: what is published now reaches the page
        _stored(store, c.id, later)
        (seq2, _, kind2, body2), (seq5, _, kind5, body5) = later[0], later[-1]
        dash.hub.publish(c.id, seq2, kind2, body2)
        second = next(frames)
        dash.hub.publish(c.id, seq5, kind5, body5)
        yield second, frames


def test_thinned_live_stream_batches_and_fills_a_gap_from_the_store(site):
    later = [
        (2, 0.0, "step_end", {"trial": 1}),
        (3, 0.0, "document", _reading("a", 1.0)),
        (4, 0.0, "alert", {"message": "hot"}),
        (5, 0.0, "measurement", {"trial": {"number": 1}}),
    ]
    with _live_gap(site, "thin=1&", later) as (second, frames):
        assert second[0] == 2
        seq, kind, data = next(frames)
        assert (seq, kind) == (5, "batch") and [e[0] for e in data["events"]] == [3, 4, 5]


def test_unthinned_live_stream_sends_every_event_and_fills_a_gap_from_the_store(site):
    later = [
        (2, 0.0, "step_end", {"trial": 1}),
        (3, 0.0, "document", _reading("a", 1.0)),
        (4, 0.0, "document", _reading("a", 2.0)),
        (5, 0.0, "measurement", {"trial": {"number": 1}}),
    ]
    with _live_gap(site, "", later) as (second, frames):
        assert second[:2] == (2, "step_end")
        got = [next(frames) for _ in range(3)]
        # every reading, unthinned and whole, in seq order, each its own event
        assert [(seq, kind) for seq, kind, _ in got] == [(3, "document"), (4, "document"), (5, "measurement")]
        assert got[1][2] == _reading("a", 2.0)


def test_the_page_snapshot_is_the_status_snapshot_and_what_the_page_draws(site):
    client, store, c, tokens, _ = site
    _stored(store, c.id, [(1, 0.0, "step_start", {"trial": 1})])
    page = client.get("/api/campaigns/web-test", headers={"Authorization": f"Bearer {tokens['viewer']}"}).json()
    status = snapshot(store, "web-test")
    assert {k: page[k] for k in status} == status
    assert page["last_seq"] == 1 and page["parameters"] and page["objectives"][0]["name"]
    assert page["trials"] == [] and page["approval"] is False


def test_users_passwd_and_token_commands(tmp_path):
    from typer.testing import CliRunner

    from labloop.cli import app

    url = f"sqlite:///{tmp_path / 'l.db'}"
    store = Store(url)
    add_user(store, "dana", "operator")
    runner = CliRunner()
    r = runner.invoke(app, ["users", "passwd", "dana", "--store", url, "--password-stdin"], input="short\n")
    assert r.exit_code != 0 and "too short" in r.output
    r = runner.invoke(app, ["users", "passwd", "nobody", "--store", url, "--password-stdin"], input="long enough pw\n")
    assert r.exit_code != 0 and "no user named 'nobody'" in r.output
    r = runner.invoke(app, ["users", "passwd", "dana", "--store", url, "--password-stdin"], input="a new password\n")
    assert r.exit_code == 0, r.output
    assert accounts.login(store, "dana", "a new password") is not None
    assert accounts.login(store, "dana", PASSWORD) is None
    r = runner.invoke(app, ["users", "token", "dana", "--store", url])
    assert r.exit_code == 0
    assert accounts.token_user(store, r.output.strip()).name == "dana"
    assert [a.action for a in store.audit_log()][-2:] == ["users.passwd", "users.token"]
    store.close()
