"""Orchestration overhead per step: what labloop itself costs between and around the devices' work.

A sequential campaign (one trial at a time, five steps a trial: three robot moves, a deposition, a measurement) on
the simulated thin-film lab at a high time scale, with the random strategy. Device time is measured at the devices
(every ``set``/``trigger`` from the call until its Status completes), strategy time from each proposal's
``ask_seconds``; the overhead is the rest of the wall time, per step. Every step's documents and the sample's
location are still committed before the next physical action (the kill/resume benchmark checks that).

Beside it, in the same process, the cost of one bare bluesky run (``count`` of a simulated detector): every step is
one bluesky run, so that is the floor of any orchestrator built on bluesky; the rest is labloop's. Prints one JSON
line per run (median over runs, and the floor, in the last line):

    python benchmarks/orchestration_overhead.py --trials 20 --runs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def campaign(trials: int, time_scale: float) -> dict:
    data = yaml.safe_load((REPO / "experiments" / "thinfilm.yaml").read_text())
    data["stopping"] = {"max_trials": trials, "target_reached": False}
    data["strategy"] = {"name": "random", "initial_design": 1}
    data["scheduling"] = {"mode": "sequential"}
    data["lab"]["time_scale"] = time_scale
    return data


class DeviceClock:
    """Adds up the time devices spend working: from each set/trigger call to its Status's completion."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.busy = 0.0

    def wrap(self, device) -> None:
        for name in ("set", "trigger"):
            fn = getattr(device, name, None)
            if fn is None:
                continue

            def timed(*a, _fn=fn, **k):
                t0 = time.perf_counter()
                status = _fn(*a, **k)

                def done(_status=None, _t0=t0):
                    with self.lock:
                        self.busy += time.perf_counter() - _t0

                status.add_callback(done)
                return status

            setattr(device, name, timed)


def one_run(trials: int, time_scale: float) -> dict:
    from labloop.run.campaign import CampaignRunner, prepare_text
    from labloop.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/b.db")
        prepared = prepare_text(yaml.safe_dump(campaign(trials, time_scale)), "bench.yaml")
        clock = DeviceClock()
        for dev in prepared.lab.devices.values():
            clock.wrap(dev)
        runner = CampaignRunner.start(prepared, store)
        t0 = time.perf_counter()
        runner.run()
        wall = time.perf_counter() - t0
        cid = runner.campaign.id
        all_trials = store.trials(cid)
        steps = list(store.steps(campaign_id=cid))
        docs = sum(len(store.documents(trial_id=t.id)) for t in all_trials)
        store.close()
    ask = sum(float((t.info or {}).get("ask_seconds", 0.0)) for t in all_trials)
    overhead = wall - clock.busy - ask
    return {
        "benchmark": "orchestration_overhead",
        "trials": len(all_trials),
        "steps": len(steps),
        "documents": docs,
        "time_scale": time_scale,
        "wall_s": round(wall, 3),
        "device_s": round(clock.busy, 3),
        "strategy_s": round(ask, 3),
        "overhead_ms_per_step": round(1000 * overhead / max(1, len(steps)), 2),
    }


def bluesky_floor(n: int = 30) -> float:
    """What one bare bluesky run costs on this machine, in ms (``count`` of a simulated detector, no callbacks):
    each labloop step is one run, so this is the floor for any orchestrator that runs steps as bluesky plans."""
    import bluesky.plans as bp
    from bluesky import RunEngine
    from ophyd.sim import det

    RE = RunEngine(context_managers=[])
    RE(bp.count([det]))
    t0 = time.perf_counter()
    for _ in range(n):
        RE(bp.count([det]))
    return 1000 * (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--time-scale", type=float, default=20000.0)
    args = ap.parse_args()
    rows = []
    for _ in range(args.runs):
        row = one_run(args.trials, args.time_scale)
        rows.append(row)
        print(json.dumps(row), flush=True)
    per_step = [r["overhead_ms_per_step"] for r in rows]
    floor = bluesky_floor()
    print(
        json.dumps(
            {
                "benchmark": "orchestration_overhead",
                "summary": True,
                "runs": len(rows),
                "median_overhead_ms_per_step": statistics.median(per_step),
                "max_overhead_ms_per_step": max(per_step),
                "bluesky_bare_run_ms": round(floor, 2),
                "labloop_beyond_bluesky_ms_per_step": round(statistics.median(per_step) - floor, 2),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
