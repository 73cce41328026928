"""Bells (labloop.store.bell): the writer of a row wakes its reader, across processes, on SQLite and PostgreSQL.

The fallback poll is set to minutes here, so whatever arrives within the (generous) bounds below was woken by a
bell: without one, each of these waits would end empty at the bound.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest
import yaml
import zmq
from running import in_background, two_chamber, wait_for

from labloop.control.requests import ask_runner
from labloop.control.stream import Publisher
from labloop.run.campaign import CampaignRunner, prepare_text
from labloop.store import Store
from labloop.store.bell import ENV, FALLBACK_ENV, Bells
from labloop.store.bell_backends import socket_folder
from labloop.store.events import add_events

SLOW_FALLBACK = "120"  # seconds: far beyond every bound of this file

LISTENER = """
import sys
from labloop.store import Store
st = Store(sys.argv[1], create=False)
w = st.bells.waiter(("requests", 7))
print("ready", flush=True)
print("rung" if w.wait(0.005) else "not rung", flush=True)
sys.stdin.read()  # stays alive (its socket or connection open) until told
"""


@pytest.fixture(autouse=True)
def slow_fallback(monkeypatch):
    monkeypatch.setenv(FALLBACK_ENV, SLOW_FALLBACK)
    monkeypatch.delenv(ENV, raising=False)


def listener(url: str) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", LISTENER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def answer_line(p: subprocess.Popen[str], timeout: float = 60.0) -> str:
    """The listener's second line, read on a thread so that a listener never rung fails the test at ``timeout``."""
    got: list[str] = []
    th = threading.Thread(target=lambda: got.append(p.stdout.readline().strip()), daemon=True)  # type: ignore[union-attr]
    th.start()
    th.join(timeout)
    return got[0] if got else "no answer"


def test_a_ring_wakes_a_listener_in_another_process(store_url):
    st = Store(store_url)
    p = listener(store_url)
    try:
        st.ring(("requests", 8))  # another channel: not this listener's
        st.ring(("requests", 7))
        assert answer_line(p) == "rung"
    finally:
        p.stdin.close()  # type: ignore[union-attr] - it ends, removing its socket
        p.wait(60)
        st.close()


def test_a_dead_listener_or_none_at_all_does_not_break_the_writer(store_url):
    st = Store(store_url)
    st.ring(("answers", 3))  # nobody listens: nothing happens
    p = listener(store_url)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    try:
        st.ring(("requests", 7))  # to a listener that died: no error
        if store_url.startswith("sqlite"):  # and its socket is cleared away
            folder = socket_folder(st._path)
            assert folder is not None and not [n for n in os.listdir(folder) if n.startswith("requests.7.")]
        other = Store(store_url, create=False)  # a live listener is still rung
        w = other.bells.waiter(("requests", 7))
        st.ring(("requests", 7))
        assert w.wait(0.005, limit=60.0)
        w.close()
        other.close()
    finally:
        st.close()


def test_a_ring_between_listening_and_waiting_is_not_lost(sqlite_url):
    st, other = Store(sqlite_url), Store(sqlite_url)
    w = st.bells.waiter(("events", 1))
    other.ring(("events", 1))
    assert w.wait(0.005, limit=60.0)  # rung before the wait began: it returns at once
    w.close()
    st.close()
    other.close()


def test_the_stream_publishes_an_event_when_it_is_rung(sqlite_url):
    st, child = Store(sqlite_url), Store(sqlite_url)
    cid = st.create_campaign("c", "spec", "hash").id
    ctx = zmq.Context()
    pub = Publisher(ctx, st, "tcp://127.0.0.1:*", lambda sock: None)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(pub.sock.getsockopt(zmq.LAST_ENDPOINT).decode())
    pub.watch(cid, "c", 0)
    pub.start()
    try:
        got = []
        for seq in range(1, 100):  # until the subscription has joined (a PUB drops what comes before)
            add_events(child, [{"campaign_id": cid, "seq": seq, "at": None, "kind": "alert", "body": {}}])
            if sub.poll(1000 if seq < 99 else 60_000):
                got = sub.recv_multipart()
                break
        assert got, "no event published"
    finally:
        pub.close()
        sub.close(0)
        ctx.term()
        st.close()
        child.close()


def _runner(store_url: str):
    data = two_chamber(max_trials=400)
    store = Store(store_url)
    runner = CampaignRunner.start(prepare_text(yaml.safe_dump(data), "test.yaml"), store)
    th, _ = in_background(runner)
    # trials finished: the runner's request thread is long past its first read, napping on its bell
    wait_for(lambda: sum(t.state == "done" for t in store.trials(runner.campaign.id)) >= 2, 120)
    return store, runner, th


@pytest.mark.parametrize("wakeups", ["on", "off"])
def test_a_request_is_answered_through_the_bells_or_as_before_by_polling(store_url, tmp_path, monkeypatch, wakeups):
    """With bells, a pause is answered (the runner woken by the request's bell, the caller by the answer's) long
    before the two-minute fallback poll; with ``LABLOOP_WAKEUPS=0``, by the old 20 ms and 5 ms polls, no bell
    involved."""
    if wakeups == "off":
        monkeypatch.setenv(ENV, "0")
    monkeypatch.chdir(tmp_path)
    store, runner, th = _runner(store_url)
    operator = Store(store_url, create=False)  # the operator's side: its own bells, as another process has
    try:
        c = operator.campaign(runner.campaign.id)
        assert ask_runner(operator, c, "pause", None, "olga", wait=30.0).startswith("paused")
        assert operator.campaign(c.id).state == "paused"
        assert ask_runner(operator, c, "stop", None, "olga", wait=30.0)
        th.join(60)
        assert not th.is_alive()
        hubs = [s.__dict__.get("_bells") for s in (store, operator)]
        if wakeups == "off":  # nothing listened, nothing rang: polling only
            assert all(b is None or (not b.on and b._the_hub is None) for b in hubs)
        else:
            assert all(b is not None and b.on for b in hubs)
    finally:
        operator.close()
        store.close()


def test_wakeups_off_starts_no_listener(monkeypatch, sqlite_url):
    monkeypatch.setenv(ENV, "0")
    bells = Bells(sqlite_path=None)
    stop = threading.Event()
    bells.ring(("requests", 1))
    assert bells.nap(("requests", 1), 0.001, stop) is False and bells._the_hub is None
    stop.set()
    assert bells.nap(("requests", 1), 0.001, stop) is True


def test_a_listener_whose_connection_is_cut_wakes_and_listens_again(postgres_url):
    """PostgreSQL: the listening connection killed by the server (a restart, a network cut): its waiters are woken
    (whatever was rung meanwhile was not heard), and once connected again it hears the channel again."""
    import sqlalchemy as sa

    from labloop.store.connection import normalize_url

    st, writer = Store(postgres_url), Store(postgres_url)
    w = st.bells.waiter(("answers", 5))
    backend = st.bells._hub().backend
    pid = backend._conn.info.backend_pid
    engine = sa.create_engine(normalize_url(postgres_url))
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        assert w.wait(0.005, limit=60.0)  # woken by the loss itself
        wait_for(lambda: backend._conn is not None and backend._conn.info.backend_pid != pid and not backend._lost, 60)
        w.wait(0.005, limit=0.0)
        writer.ring(("answers", 5))
        assert w.wait(0.005, limit=60.0)
    finally:
        w.close()
        engine.dispose()
        st.close()
        writer.close()
