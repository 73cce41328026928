"""The live stream: a subscriber that drops its connection mid-campaign catches up with nothing lost and nothing
repeated, and the documents feed ordinary bluesky callbacks."""

from __future__ import annotations

import time

import yaml
from bluesky.callbacks.core import CallbackCounter

from daemon_helpers import DaemonProcess, add_user
from labloop.control.bluesky_feed import documents
from labloop.control.client import Follower
from labloop.store import Store
from labloop.store.events import events_after
from running import two_chamber


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
