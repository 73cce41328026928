"""Measure batch stations in a whole campaign (the trial walk, not only the rule): the thin-film simulator with
four sputter chambers and an anneal furnace with 4 slots, random recipes with one of two anneal profiles
(anneal_c 300 or 400), capacity 4 versus capacity 1 (every trial fired alone, the lab before batch stations).

Reports furnace firings, samples per firing (mean fill = samples / 4 slots), why each batch fired (from the start
document of each firing), trials done, and the campaign's lab hours (first start to last end, simulated time). The
lab hours come from wall time times the time scale: a loaded machine stretches them; firings and fill do not
depend on it.
Run: OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/batch_walk.py  (one JSON line per configuration)

``--share``: a CONTINUOUS anneal key (anneal_c 250-450 degC), where independent proposals never share a firing,
with and without ``share_proposals`` (labloop/run/batch_share.py), for the random and the botorch strategy (the
botorch runs at a lower time scale, ``--botorch-ts``, so that the lab does not idle for lab hours while the model
thinks; their lab hours still include the asks). ``--target SEEDS``: botorch campaigns to the thin-film target
(5 ohm/sq, at most 40 trials) with and without sharing, experiments to the target per seed: the price of sharing on
the optimizer (the simulator's film does not depend on the anneal, so this measures the cost of constraining a
parameter the model must learn is irrelevant, not of a worse anneal)."""

from __future__ import annotations

import json
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from campaign_files import thinfilm  # the tests' campaign builder, on the path above

from labloop.run.campaign import CampaignRunner, prepare_text
from labloop.store import Store

TS = 36000.0


def campaign(
    capacity: int,
    trials: int,
    max_wait_h: float,
    seed: int,
    *,
    continuous: bool = False,
    strategy: str = "random",
    share: bool = False,
    min_ratio: float = 0.0,
    ts: float = TS,
    target: bool = False,
) -> dict:
    data = thinfilm(stopping={"max_trials": trials, "target_reached": target})
    data["seed"] = seed
    data["strategy"] = (
        {"name": "random", "initial_design": 1} if strategy == "random" else {"name": "botorch", "initial_design": 6}
    )
    anneal = (
        {"name": "anneal_c", "type": "continuous", "lower": 250, "upper": 450}
        if continuous
        else {"name": "anneal_c", "type": "discrete", "values": [300, 400]}
    )
    data["parameters"].append({**anneal, "setpoint": "furnace.anneal_c"})
    batching: dict = {"capacity": capacity, "batch_key": ["anneal_c"], "max_wait_s": max_wait_h * 3600}
    if share:
        batching.update(share_proposals=True, share_min_ratio=min_ratio)
    data["lab"] = {
        "simulator": "thinfilm",
        "time_scale": ts,
        "options": {
            "chambers": 4,
            "chamber_minutes": 60,
            "probe_minutes": 5,
            "robot_minutes": 1,
            "furnace_slots": 4,
            "furnace_minutes": 120,
        },
        "stations": {"deposition": ["chamber1", "chamber2", "chamber3", "chamber4"]},
        "batching": {"furnace": batching},
    }
    data["workflow"] = [
        {"kind": "transfer", "to": "deposition"},
        {"kind": "synthesize", "device": "deposition"},
        {"kind": "transfer", "to": "furnace"},
        {"kind": "synthesize", "device": "furnace"},
        {"kind": "transfer", "to": "probe"},
        {"kind": "measure", "device": "probe"},
        {"kind": "transfer", "to": "storage"},
    ]
    return data


def measure(
    capacity: int, trials: int = 16, max_wait_h: float = 1.0, seed: int = 0, **options: Any
) -> dict[str, object]:
    ts = float(options.get("ts", TS))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'labloop.db'}")
        runner = CampaignRunner.start(
            prepare_text(yaml.safe_dump(campaign(capacity, trials, max_wait_h, seed, **options)), "bench.yaml"), store
        )
        th = threading.Thread(target=runner.run, daemon=True)
        th.start()
        th.join(1800)
        c = store.campaign()
        rows = [s for s in store.steps(campaign_id=c.id) if s.kind == "synthesize" and s.device == "furnace"]
        runs = sorted({s.run_uid for s in rows if s.run_uid})
        reasons: Counter[str] = Counter()
        sizes = []
        for uid in runs:
            start = next(d for n, d in store.documents(run_uid=uid) if n == "start")
            sizes.append(len(start["recipe"].get("samples", [])) or 1)  # capacity 1: the plain recipe, one sample
            reasons[str((start.get("batch") or {}).get("fired_because"))] += 1
        trials_ = sorted(store.trials(c.id), key=lambda t: t.number)
        done = [t for t in trials_ if t.state == "done"]
        began = min(t.started_at for t in trials_ if t.started_at)
        ended = max(t.finished_at for t in trials_ if t.finished_at)
        notes = [(t.info or {}).get("batch_share") for t in trials_]
        hit = [t.number for t in done if float((t.values or {}).get("sheet_resistance", 1e9)) <= 5.0]
        store.close()
    out: dict[str, object] = {
        "capacity": capacity,
        "max_wait_h": max_wait_h,
        "trials_done": len(done),
        "firings": len(runs),
        "mean_fill": round(sum(sizes) / (len(runs) * 4), 2) if runs else 0.0,
        "fired_because": dict(reasons),
        "lab_hours": round((ended - began).total_seconds() * ts / 3600, 1),
    }
    if options:
        out.update({k: v for k, v in options.items() if k != "target"})
        out["shared_proposals"] = sum(1 for n in notes if n and n.get("shared"))
        ratios = sorted(n["acquisition_ratio"] for n in notes if n and n.get("acquisition_ratio") is not None)
        if ratios:  # share_min_ratio > 0: the expected-improvement ratios weighed, and how many were declined
            out["acquisition_ratio_median"] = round(ratios[len(ratios) // 2], 3)
            out["declined_by_ratio"] = sum(
                1 for n in notes if n and n.get("acquisition_ratio") is not None and not n["shared"]
            )
        out["experiments_to_target"] = hit[0] if hit else None
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--share", action="store_true", help="continuous key, with and without share_proposals")
    ap.add_argument("--target", type=int, default=0, help="seeds of botorch campaigns to the target, +/- sharing")
    ap.add_argument("--botorch-ts", type=float, default=3600.0)
    ap.add_argument("--strategies", default="random,botorch")
    ap.add_argument("--wait-h", type=float, default=1.0, help="max_wait of the --target runs (lab hours)")
    ap.add_argument("--min-ratio", type=float, default=0.0, help="share_min_ratio of the --target runs")
    args = ap.parse_args()
    if args.target:
        for seed in range(args.target):
            for share in (False, True):
                print(
                    json.dumps(
                        measure(
                            4,
                            trials=40,
                            max_wait_h=args.wait_h,
                            seed=seed,
                            continuous=True,
                            strategy="botorch",
                            share=share,
                            min_ratio=args.min_ratio,
                            ts=args.botorch_ts,
                            target=True,
                        )
                    ),
                    flush=True,
                )
    elif args.share:
        for strat in args.strategies.split(","):
            ts = TS if strat == "random" else args.botorch_ts
            for share in (False, True):
                for wait in (1.0, 4.0):
                    print(
                        json.dumps(measure(4, max_wait_h=wait, continuous=True, strategy=strat, share=share, ts=ts)),
                        flush=True,
                    )
    else:
        print(json.dumps(measure(1)))
        for wait in (1.0, 4.0):
            print(json.dumps(measure(4, max_wait_h=wait)))
