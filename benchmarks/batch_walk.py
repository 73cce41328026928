"""Measure batch stations in a whole campaign (the trial walk, not only the rule): the thin-film simulator with
four sputter chambers and an anneal furnace with 4 slots, random recipes with one of two anneal profiles
(anneal_c 300 or 400), capacity 4 versus capacity 1 (every trial fired alone, the lab before batch stations).

Reports furnace firings, samples per firing (mean fill = samples / 4 slots), why each batch fired (from the start
document of each firing), trials done, and the campaign's lab hours (first start to last end, simulated time). The
lab hours come from wall time times the time scale: a loaded machine stretches them; firings and fill do not
depend on it.
Run: OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/batch_walk.py  (one JSON line per configuration)"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from campaign_files import thinfilm  # the tests' campaign builder, on the path above

from labloop.run.campaign import CampaignRunner, prepare_text
from labloop.store import Store

TS = 36000.0


def campaign(capacity: int, trials: int, max_wait_h: float, seed: int) -> dict:
    data = thinfilm(stopping={"max_trials": trials, "target_reached": False})
    data["seed"] = seed
    data["strategy"] = {"name": "random", "initial_design": 1}
    data["parameters"].append(
        {"name": "anneal_c", "type": "discrete", "values": [300, 400], "setpoint": "furnace.anneal_c"}
    )
    data["lab"] = {
        "simulator": "thinfilm",
        "time_scale": TS,
        "options": {
            "chambers": 4,
            "chamber_minutes": 60,
            "probe_minutes": 5,
            "robot_minutes": 1,
            "furnace_slots": 4,
            "furnace_minutes": 120,
        },
        "stations": {"deposition": ["chamber1", "chamber2", "chamber3", "chamber4"]},
        "batching": {"furnace": {"capacity": capacity, "batch_key": ["anneal_c"], "max_wait_s": max_wait_h * 3600}},
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


def measure(capacity: int, trials: int = 16, max_wait_h: float = 1.0, seed: int = 0) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'labloop.db'}")
        runner = CampaignRunner.start(
            prepare_text(yaml.safe_dump(campaign(capacity, trials, max_wait_h, seed)), "bench.yaml"), store
        )
        th = threading.Thread(target=runner.run, daemon=True)
        th.start()
        th.join(600)
        c = store.campaign()
        rows = [s for s in store.steps(campaign_id=c.id) if s.kind == "synthesize" and s.device == "furnace"]
        runs = sorted({s.run_uid for s in rows if s.run_uid})
        reasons: Counter[str] = Counter()
        sizes = []
        for uid in runs:
            start = next(d for n, d in store.documents(run_uid=uid) if n == "start")
            sizes.append(len(start["recipe"].get("samples", [])) or 1)  # capacity 1: the plain recipe, one sample
            reasons[str((start.get("batch") or {}).get("fired_because"))] += 1
        done = [t for t in store.trials(c.id) if t.state == "done"]
        began = min(t.started_at for t in store.trials(c.id) if t.started_at)
        ended = max(t.finished_at for t in store.trials(c.id) if t.finished_at)
        store.close()
    return {
        "capacity": capacity,
        "max_wait_h": max_wait_h,
        "trials_done": len(done),
        "firings": len(runs),
        "mean_fill": round(sum(sizes) / (len(runs) * 4), 2) if runs else 0.0,
        "fired_because": dict(reasons),
        "lab_hours": round((ended - began).total_seconds() * TS / 3600, 1),
    }


if __name__ == "__main__":
    print(json.dumps(measure(1)))
    for wait in (1.0, 4.0):
        print(json.dumps(measure(4, max_wait_h=wait)))
