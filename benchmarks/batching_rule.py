"""Measure the batch rule (labloop/run/batching.py) on a seeded arrival stream, on lab time (no devices).

Trials reach a furnace kind (capacity 4) one by one, exponential gaps (mean 20 lab min), each with one of two
firing profiles; the scheduler knows the next 3 trials in flight (their key and arrival time). For each max_wait_s
it reports firings (and the same without the no-company clause: 'blind'), mean fill (samples / capacity), counts by reason and the mean wait of a sample for company.
Run: .venv/bin/python benchmarks/batching_rule.py  (one JSON line per configuration)"""

from __future__ import annotations

import json
import random

from labloop.run.batching import BatchFormer, Prospect
from labloop.spec import BatchSpec


def measure(
    max_wait_s: float, n: int = 400, seed: int = 1, lookahead: int = 3, blind: bool = False
) -> dict[str, object]:
    """``blind``: the scheduler reports every key as coming at an unknown time, so each batch waits the full
    ``max_wait_s`` or until full (the rule without its no-company clause), for comparison."""
    rng = random.Random(seed)
    t, arrivals = 0.0, []
    for i in range(n):
        t += rng.expovariate(1 / 1200.0)
        arrivals.append((t, i, rng.choice((800, 900))))
    now = [0.0]
    nxt = [0]

    def prospects() -> list[Prospect]:
        if blind:
            return [Prospect(-1, (800,)), Prospect(-2, (900,))]
        ahead = arrivals[nxt[0] : nxt[0] + lookahead]
        return [Prospect(i, (k,), at - now[0]) for at, i, k in ahead]

    f = BatchFormer("furnace", BatchSpec(capacity=4, batch_key=["peak_c"], max_wait_s=max_wait_s), lambda: now[0])
    f.prospects = prospects
    joined: dict[int, float] = {}
    while nxt[0] < n or f.open:
        deadline = f.next_deadline()
        arrival = arrivals[nxt[0]][0] if nxt[0] < n else float("inf")
        if deadline is not None and now[0] + deadline < arrival:
            now[0] += deadline
        else:
            now[0], i, key = arrivals[nxt[0]]
            nxt[0] += 1
            f.join(i, f"s{i}", {"peak_c": key})
            joined[i] = now[0]
        f.poll()
    waits = [b.fired_at - joined[m] for b in f.fired for m in b.members if b.fired_at is not None]
    stats = f.stats()
    return {
        "max_wait_s": max_wait_s,
        "rule": "blind" if blind else "lookahead",
        "firings": stats["batches"],
        "mean_fill": round(stats["mean_fill"], 3),
        "by_reason": stats["by_reason"],
        "mean_sample_wait_min": round(sum(waits) / len(waits) / 60, 1),
    }


if __name__ == "__main__":
    for w in (0.0, 1800.0, 3600.0, 7200.0, 14400.0):
        print(json.dumps({"benchmark": "batching_rule", **measure(w)}))
        print(json.dumps({"benchmark": "batching_rule", **measure(w, blind=True)}))
