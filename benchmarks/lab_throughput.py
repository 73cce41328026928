"""Lab throughput: two deposition chambers (60 simulated min each), one probe (5 min), one shared robot (1 min per
move), time-scaled. Runs the same number of trials with the async scheduler and one trial at a time (sequential),
in the same process, and prints one JSON line per mode plus one with the ratios:

* makespan (wall seconds) and makespan ratio async / sequential (target <= 0.55);
* utilization of the bottleneck stations (the chambers) after the first cycle: recipe time on each chamber
  divided by the window from its first recipe start to its last recipe end (target >= 0.95);
* orchestration overhead per trial in ms: wall time of the sequential run minus device time (68 simulated
  minutes a trial, scaled) minus strategy time, per trial.

    python benchmarks/lab_throughput.py --trials 12 --time-scale 3600 --strategy random
    python benchmarks/lab_throughput.py --dock --trials 8 --time-scale 300    # issue 11: does the dock slow it?

With ``--dock`` it runs the async campaign twice, without and with the materials dock (profilometer, UV-vis, XRD,
microscope: one more measurement and robot move each, after the probe), and compares the chambers' utilization:
the dock must not slow the bottleneck.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

from labloop.store.times import utc

REPO = Path(__file__).resolve().parents[1]
DEVICE_MINUTES = 60 + 5 + 3 * 1  # deposition, measurement, three robot moves


DOCK = ("profilometer", "uvvis", "xrd", "microscope")


def campaign(mode: str, trials: int, time_scale: float, strategy: str, dock: str | None = None) -> dict:
    data = yaml.safe_load((REPO / "experiments" / "thinfilm.yaml").read_text())
    data["stopping"] = {"max_trials": trials, "target_reached": False}
    data["strategy"] = {"name": strategy, "initial_design": 4}
    data["scheduling"] = {"mode": mode}
    data["lab"] = {
        "simulator": "thinfilm",
        "time_scale": time_scale,
        "options": {"chambers": 2, "chamber_minutes": 60, "probe_minutes": 5, "robot_minutes": 1},
        "stations": {"deposition": ["chamber1", "chamber2"]},
        "buffers": ["hotel"],
    }
    data["workflow"] = [
        {"kind": "transfer", "to": "deposition"},
        {"kind": "synthesize", "device": "deposition"},
        {"kind": "transfer", "to": "probe"},
        {"kind": "measure", "device": "probe"},
        {"kind": "transfer", "to": "storage"},
    ]
    if dock:  # every sample also visits the dock after its objective measurement
        data["lab"]["options"].update({"dock": True, "data_dir": dock})
        data["workflow"][-1:-1] = [
            s for d in DOCK for s in ({"kind": "transfer", "to": d}, {"kind": "measure", "device": d})
        ]
    return data


def ts(d) -> float:
    return utc(d).timestamp()


def run(mode: str, trials: int, time_scale: float, strategy: str, dock: bool = False) -> dict:
    from labloop.run.campaign import CampaignRunner, prepare_text
    from labloop.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/b.db")
        data = campaign(mode, trials, time_scale, strategy, f"{tmp}/data" if dock else None)
        runner = CampaignRunner.start(prepare_text(yaml.safe_dump(data), "bench.yaml"), store)
        t0 = time.perf_counter()
        runner.run()
        makespan = time.perf_counter() - t0
        cid = runner.campaign.id
        all_trials = store.trials(cid)
        steps = store.steps(campaign_id=cid)
        store.close()
    ask = sum(float(t.info.get("ask_seconds", 0.0)) for t in all_trials) / max(
        1, len({t.info.get("ask_seconds") for t in all_trials})
    )  # one ask may cover several trials (batch)
    util = {}
    for chamber in ("chamber1", "chamber2"):
        deps = sorted(
            (ts(s.started_at), ts(s.finished_at))
            for s in steps
            if s.kind == "synthesize" and s.device == chamber and s.finished_at
        )
        if len(deps) >= 2:
            window = deps[-1][1] - deps[0][0]
            util[chamber] = round(sum(b - a for a, b in deps) / window, 4)
    device_s = trials * DEVICE_MINUTES * 60 / time_scale
    return {
        "benchmark": "lab_throughput",
        "mode": mode,
        "dock": dock,
        "trials": trials,
        "time_scale": time_scale,
        "strategy": strategy,
        "states": sorted({t.state for t in all_trials}),
        "makespan_s": round(makespan, 3),
        "device_time_per_trial_s": round(device_s / trials, 4),
        "strategy_time_s": round(ask, 3),
        "chamber_utilization": util,
        "overhead_ms_per_trial_if_serial": round(1000 * (makespan - device_s - ask) / trials, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--time-scale", type=float, default=3600.0)
    ap.add_argument("--strategy", default="random")
    ap.add_argument("--dock", action="store_true", help="compare async runs without and with the materials dock")
    args = ap.parse_args()
    if args.dock:
        plain = run("async", args.trials, args.time_scale, args.strategy)
        print(json.dumps(plain), flush=True)
        docked = run("async", args.trials, args.time_scale, args.strategy, dock=True)
        print(json.dumps(docked), flush=True)
        print(
            json.dumps(
                {
                    "benchmark": "lab_throughput",
                    "dock_comparison": True,
                    "min_chamber_utilization_without_dock": min(plain["chamber_utilization"].values()),
                    "min_chamber_utilization_with_dock": min(docked["chamber_utilization"].values()),
                    "makespan_ratio_dock_over_plain": round(docked["makespan_s"] / plain["makespan_s"], 3),
                }
            ),
            flush=True,
        )
        return
    a = run("async", args.trials, args.time_scale, args.strategy)
    print(json.dumps(a), flush=True)
    s = run("sequential", args.trials, args.time_scale, args.strategy)
    print(json.dumps(s), flush=True)
    print(
        json.dumps(
            {
                "benchmark": "lab_throughput",
                "makespan_ratio_async_over_sequential": round(a["makespan_s"] / s["makespan_s"], 3),
                "min_chamber_utilization_async": min(a["chamber_utilization"].values()),
                "overhead_ms_per_trial": s["overhead_ms_per_trial_if_serial"],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
