"""What verified identities cost (issue 10, items 5 and 6): the round trip of a tiny message on a loopback
ROUTER/DEALER pair with plain TCP against the same pair with CURVE and labloop's ZAP handler (``StoreAuthenticator``
on a real store); how long ``users revoke`` takes to stop ``identify`` on a connection already open; and what a
hash-chained audit append costs.

    python benchmarks/auth_overhead.py [--messages 5000] [--revokes 20] [--appends 200] [--store URL]

Prints JSON lines: one per transport (``roundtrip``: p50/p99/mean in ms), one for revocation (``revoke``: median and
max ms from the revoke's commit to ``identify`` returning None), one for audit appends (``audit_append``: p50/p99
ms per committed ``Store.audit`` row, whose ``verify`` must come back intact) and its baseline
(``plain_insert_baseline``: one unchained row per transaction, measured alternately in the same run). The echo server runs in its own
process; the client measures ``send`` -> reply received, after 200 warm-up messages.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _server(addr_q: mp.Queue[str], curve: bool, store_url: str, keys_dir: str) -> None:
    import zmq

    from labloop.control.auth import StoreAuthenticator
    from labloop.identity.keys import ServerKeys, apply_server
    from labloop.store import Store

    ctx = zmq.Context()
    auth = None
    router = ctx.socket(zmq.ROUTER)
    if curve:
        store = Store(store_url)
        auth = StoreAuthenticator(ctx, store)
        auth.start()
        apply_server(router, ServerKeys.load_or_create(Path(keys_dir)))
    port = router.bind_to_random_port("tcp://127.0.0.1")
    addr_q.put(f"tcp://127.0.0.1:{port}")
    while True:
        frames = router.recv_multipart(copy=False)
        if curve and auth is not None:  # what the daemon does per request: who sent it, still admitted?
            auth.identify(frames[-1].get("User-Id"))
        if frames[-1].bytes == b"quit":
            break
        router.send_multipart(frames)
    router.close(0)
    if auth is not None:
        auth.stop()
    ctx.term()


def roundtrip(curve: bool, n: int, store_url: str, keys_dir: str) -> dict:
    import zmq

    from labloop.identity.keys import ClientKey, ServerKeys, apply_client
    from labloop.store import Store

    q: mp.Queue[str] = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_server, args=(q, curve, store_url, keys_dir))
    proc.start()
    addr = q.get(timeout=120)
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    if curve:
        public, secret = zmq.curve_keypair()
        name = f"bench-{time.monotonic_ns()}"
        store = Store(store_url)
        store.add_user(name, "viewer", public.decode(), created_by="benchmark")
        store.close()
        apply_client(
            dealer,
            ClientKey(
                name=name,
                role="viewer",
                public_key=public.decode(),
                secret_key=secret.decode(),
                server_public_key=ServerKeys.load_or_create(Path(keys_dir)).public_z85(),
            ),
        )
    dealer.connect(addr)
    msg = b'{"v":1,"method":"status"}'
    times = []
    for i in range(n + 200):
        t0 = time.perf_counter()
        dealer.send(msg)
        dealer.recv()
        if i >= 200:
            times.append((time.perf_counter() - t0) * 1e3)
    dealer.send(b"quit")
    proc.join(timeout=30)
    dealer.close(0)
    ctx.term()
    return {
        "bench": "roundtrip",
        "transport": "curve+zap" if curve else "plain tcp",
        "messages": n,
        "p50_ms": round(_pct(times, 0.5), 4),
        "p99_ms": round(_pct(times, 0.99), 4),
        "mean_ms": round(statistics.fmean(times), 4),
    }


def revoke(trials: int, store_url: str, keys_dir: str) -> dict:
    """A connected user is revoked (committed); time until ``identify`` on their open connection says None."""
    import zmq

    from labloop.control.auth import StoreAuthenticator
    from labloop.identity.keys import ClientKey, ServerKeys, apply_client, apply_server
    from labloop.store import Store

    store = Store(store_url)
    ctx = zmq.Context()
    auth = StoreAuthenticator(ctx, store)
    auth.start()
    keys = ServerKeys.load_or_create(Path(keys_dir))
    router = ctx.socket(zmq.ROUTER)
    apply_server(router, keys)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    took = []
    for i in range(trials):
        public, secret = zmq.curve_keypair()
        name = f"revokee-{time.monotonic_ns()}"
        store.add_user(name, "operator", public.decode(), created_by="benchmark")
        dealer = ctx.socket(zmq.DEALER)
        apply_client(
            dealer,
            ClientKey(
                name=name,
                role="operator",
                public_key=public.decode(),
                secret_key=secret.decode(),
                server_public_key=keys.public_z85(),
            ),
        )
        dealer.connect(f"tcp://127.0.0.1:{port}")
        dealer.send(b"hi")
        frames = router.recv_multipart(copy=False)
        assert auth.identify(frames[-1].get("User-Id")) is not None
        time.sleep(0.1 + 0.0137 * i)  # revokes land at different phases of the refresh cycle
        store.revoke_user(name, by="benchmark")
        t0 = time.perf_counter()
        while auth.identify(name) is not None:
            time.sleep(0.0005)
        took.append((time.perf_counter() - t0) * 1e3)
        dealer.close(0)
    router.close(0)
    auth.stop()
    ctx.term()
    store.close()
    return {
        "bench": "revoke",
        "trials": trials,
        "median_ms": round(statistics.median(took), 1),
        "max_ms": round(max(took), 1),
    }


def appends(n: int, store_url: str) -> list[dict]:
    """Chained audit appends against a baseline in the same run: one plain row (an ``events`` row, same shape:
    a JSON body, one commit) per transaction, alternating with the appends so both see the same load."""
    from labloop.control import audit
    from labloop.store import Store
    from labloop.store.schema import Event

    store = Store(store_url)
    campaign = store.create_campaign(f"bench-{time.monotonic_ns()}", "name: bench\n", "0" * 64)
    chained, plain = [], []
    for i in range(n):
        body = {"i": i, "args": {"campaign": "x", "trials": [1, 2, 3]}}
        t0 = time.perf_counter()
        store.audit(None, "bench", body, user="bench")
        t1 = time.perf_counter()
        with store.session() as s:
            s.add(Event(campaign_id=campaign.id, seq=i, kind="bench", body=body))
        t2 = time.perf_counter()
        chained.append((t1 - t0) * 1e3)
        plain.append((t2 - t1) * 1e3)
    t0 = time.perf_counter()
    problems = audit.verify(store)
    verify_ms = (time.perf_counter() - t0) * 1e3
    rows = len(store.audit_log())
    store.close()
    kind = store_url.split(":")[0]
    return [
        {
            "bench": "audit_append",
            "store": kind,
            "appends": n,
            "p50_ms": round(_pct(chained, 0.5), 3),
            "p99_ms": round(_pct(chained, 0.99), 3),
            "verify_ms": round(verify_ms, 1),
            "rows": rows,
            "intact": problems == [],
        },
        {
            "bench": "plain_insert_baseline",
            "store": kind,
            "inserts": n,
            "p50_ms": round(_pct(plain, 0.5), 3),
            "p99_ms": round(_pct(plain, 0.99), 3),
        },
    ]


def main() -> None:
    from labloop.identity.keys import ServerKeys

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--revokes", type=int, default=20)
    ap.add_argument("--appends", type=int, default=200)
    ap.add_argument("--store", default=None, help="store URL (default: a new SQLite file)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store or f"sqlite:///{tmp}/bench.db"
        keys = str(Path(tmp) / "keys")
        ServerKeys.load_or_create(Path(keys))
        for curve in (False, True):
            print(json.dumps(roundtrip(curve, args.messages, url, keys)), flush=True)
        print(json.dumps(revoke(args.revokes, url, keys)), flush=True)
        for line in appends(args.appends, url):
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
