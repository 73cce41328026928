"""Emergency-stop latency while the optimizer is busy: from the estop request committed in the store to every
device's ``stop()`` called, with a strategy that thinks for 10 s per proposal (as a GP fit on thousands of points
would), once sleeping and once computing in pure Python (holding the GIL most of the time) and trials running on a two-chamber simulated lab.

Each try starts a fresh campaign, waits until trials run and the strategy is inside a slow ask, commits an estop
request the way ``labloop estop`` does, and times the devices' ``stop()`` calls. One JSON line per try, then the
median and max (target: max <= 100 ms):

    python benchmarks/estop_latency.py --tries 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the deliberately slow strategy the tests use (tests/slow_strategy.py)


def campaign(busy: bool) -> dict:
    from running import two_chamber

    data = two_chamber(max_trials=40)
    data["strategy"] = {
        "name": "slow_strategy:SlowStrategy",
        "initial_design": 1,
        "options": {"delay": 10.0, "busy": busy},
    }
    data["scheduling"] = {"lookahead": 0}
    return data


def one_try(i: int, busy: bool) -> dict:
    from running import record_stops

    from labloop.run.campaign import CampaignRunner, prepare_text
    from labloop.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/b.db")
        runner = CampaignRunner.start(prepare_text(yaml.safe_dump(campaign(busy)), "bench.yaml"), store)
        stopped = record_stops(runner.p.lab)
        thinking = runner.p.strategy.thinking
        th = threading.Thread(target=runner.run, daemon=True)
        th.start()
        deadline = time.monotonic() + 60
        while not thinking.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05 * (i % 5))  # land the request at different points of the control loop's poll
        running = sum(1 for t in store.trials(runner.campaign.id) if t.state == "running")
        store.request(runner.campaign.id, "estop", {}, user="bench")
        t0 = time.perf_counter()
        th.join(10)
        still_thinking = thinking.is_set()
        # let the abandoned ask end before the next try, so no earlier optimizer competes for the CPU
        while thinking.is_set():
            time.sleep(0.05)
        store.close()
    latencies = [v - t0 for v in stopped.values()]
    return {
        "benchmark": "estop_latency",
        "optimizer": "cpu-bound" if busy else "sleeping",
        "try": i,
        "devices": len(stopped),
        "trials_running": running,
        "optimizer_busy": still_thinking,
        "latency_ms": round(1000 * max(latencies), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tries", type=int, default=20)
    ap.add_argument("--optimizer", choices=["both", "sleeping", "cpu-bound"], default="both")
    args = ap.parse_args()
    modes = {"both": (False, True), "sleeping": (False,), "cpu-bound": (True,)}[args.optimizer]
    for busy in modes:  # a strategy that waits (releases the GIL), and one that computes in Python (holds it)
        rows = []
        for i in range(args.tries):
            row = one_try(i, busy)
            rows.append(row)
            print(json.dumps(row), flush=True)
        lat = [r["latency_ms"] for r in rows]
        print(
            json.dumps(
                {
                    "benchmark": "estop_latency",
                    "summary": True,
                    "optimizer": rows[0]["optimizer"],
                    "tries": len(rows),
                    "median_ms": statistics.median(lat),
                    "max_ms": max(lat),
                    "all_during_busy_optimizer": all(r["optimizer_busy"] for r in rows),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
