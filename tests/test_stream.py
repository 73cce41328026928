"""The live stream: a subscriber that drops its connection mid-campaign catches up with nothing lost and nothing
repeated, and the documents feed ordinary bluesky callbacks."""

from __future__ import annotations

import time

import yaml
from bluesky.callbacks.core import CallbackCounter
from daemon_helpers import DaemonProcess, add_user, wait_until
from running import two_chamber

from labloop.control.bluesky_feed import documents
from labloop.control.client import Follower
from labloop.store import Store
from labloop.store.events import add_events, events_after
from labloop.web.live import StoreTail


def test_a_subscriber_that_reconnects_loses_nothing_and_sees_nothing_twice(tmp_path):
    d = DaemonProcess(tmp_path)
    key = add_user(d.store_url, "wanda", "operator", d.server_keys)
    d.start()
    try:
        client = d.client(key)
        follower = Follower(client, d.stream, "streamed")
        data = two_chamber(max_trials=5)
        data["name"] = "streamed"
        r = client.call("submit", text=yaml.safe_dump(data), source="streamed.yaml", time_scale=7200.0)
        seen = follower.catch_up(r["campaign_id"])
        reconnects, ended = 0, False
        while not ended:
            batch = follower.poll(0.5)
            seen.extend(batch)
            ended = any(e["kind"] == "campaign_end" for e in batch)
            if batch and reconnects < 3 and len(seen) > 200 * (reconnects + 1):
                follower.sub.close(0)  # the connection drops; what the stream sends meanwhile is lost to us
                time.sleep(0.3)
                follower.reconnect()
                reconnects += 1
        watcher = Follower(client, d.stream, "streamed")  # a second subscriber, feeding bluesky callbacks
        counter = CallbackCounter()
        names = []
        for name, doc in documents(watcher, catch_up=r["campaign_id"]):
            counter(name, doc)
            names.append(name)
        st = Store(d.store_url)
        try:
            stored = events_after(st, r["campaign_id"], 0, 1_000_000)
            stored_docs = [(n, doc) for n, doc in st.documents() if n]
        finally:
            st.close()
    finally:
        d.stop()
    seqs = [e["seq"] for e in seen]
    assert reconnects == 3
    assert seqs == list(range(1, len(stored) + 1))  # 0 lost, 0 duplicated, in order
    assert follower.fetched > 0  # some came through `missed`
    assert counter.value == len(stored_docs) == len(names)  # every document, to an ordinary bluesky callback
    assert names.count("start") == names.count("stop") and names[0] == "start"


class _Hub:
    def __init__(self) -> None:
        self.got: list[tuple[int, int, str]] = []

    def publish(self, campaign_id: int, seq: int, kind: str, body: dict) -> None:
        self.got.append((campaign_id, seq, kind))


def _add(store: Store, cid: int, seqs: range, kind: str = "step") -> None:
    add_events(store, [{"campaign_id": cid, "seq": n, "kind": kind, "body": {"n": n}} for n in seqs])


def test_the_dashboards_store_tail_publishes_each_new_event_of_running_campaigns_once_in_seq_order(tmp_path):
    st = Store(f"sqlite:///{tmp_path / 'lab.db'}")
    try:
        running = st.create_campaign("running", "x", "h")
        ended = st.create_campaign("ended", "x", "h")
        _add(st, running.id, range(1, 4))  # before the tail starts: the pages catch up on these from the store
        _add(st, ended.id, range(1, 3))
        st.update_campaign(ended.id, state="finished")
        hub = _Hub()
        tail = StoreTail(st, hub, interval=0.01, discover=0.01).start()  # type: ignore[arg-type]  # _Hub stands in
        try:
            _add(st, running.id, range(4, 6))
            late = st.create_campaign("late", "x", "h")  # created after the tail started: all of it is new
            _add(st, late.id, range(1, 3))
            wait_until(lambda: len(hub.got) >= 4, 10, 0.01)
            st.update_campaign(running.id, state="finished")  # it ends: its last events still go out
            _add(st, running.id, range(6, 7), "campaign_end")
            _add(st, ended.id, range(3, 4))  # not running: nobody's page waits for it live
            wait_until(lambda: (running.id, 6, "campaign_end") in hub.got, 10, 0.01)
        finally:
            tail.stop()
        assert sorted(hub.got) == [(running.id, n, "step") for n in (4, 5)] + [(running.id, 6, "campaign_end")] + [
            (late.id, n, "step") for n in (1, 2)
        ]
        per_campaign = {cid: [n for c, n, _ in hub.got if c == cid] for cid in (running.id, late.id)}
        assert per_campaign == {running.id: [4, 5, 6], late.id: [1, 2]}  # in seq order, nothing twice
    finally:
        st.close()
