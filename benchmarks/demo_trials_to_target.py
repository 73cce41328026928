"""Trials to reach the demo's target (sheet resistance <= 5 ohm/sq) on the simulated thin-film lab:
labloop's botorch strategy versus random sampling, same simulator, same seeds, through the same campaign runner
(real RunEngine, real devices, SQLite store). Prints one JSON line per strategy and one with the ratio.

    python benchmarks/demo_trials_to_target.py --seeds 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def run_once(
    strategy: str,
    seed: int,
    max_trials: int,
    time_scale: float,
    options: dict | None = None,
    lab_options: dict | None = None,
    scheduling: dict | None = None,
) -> tuple[int | None, float]:
    """``options``: the strategy's options (``benchmarks/log_transform.py`` sets ``log_outcome``); ``lab_options``
    and ``scheduling``: the simulated lab's and the scheduler's (``benchmarks/lab_faults.py`` sets a chamber fault
    rate and turns off quarantine)."""
    from labloop.run.campaign import CampaignRunner, prepare_text
    from labloop.store import Store

    data = yaml.safe_load((REPO / "experiments" / "thinfilm.yaml").read_text())
    data["seed"] = seed
    data["strategy"]["name"] = strategy
    if options:
        data["strategy"]["options"] = dict(options)
    data["stopping"]["max_trials"] = max_trials
    data["lab"]["time_scale"] = time_scale
    if lab_options:
        data["lab"]["options"] = {**data["lab"].get("options", {}), **lab_options}
    if scheduling:
        data["scheduling"] = {**data.get("scheduling", {}), **scheduling}
    text = yaml.safe_dump(data)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/b.db")
        t0 = time.perf_counter()
        runner = CampaignRunner.start(prepare_text(text, "thinfilm.yaml"), store)
        decision = runner.run()
        wall = time.perf_counter() - t0
        trials = store.trials(runner.campaign.id)
        store.close()
    return (decision.evidence["trial"] if decision.rule == "target" else None), wall / max(1, len(trials))


def summarize(name: str, hits: list[int | None], max_trials: int, per_trial: list[float]) -> dict:
    counted = [h if h is not None else max_trials + 1 for h in hits]
    med = statistics.median(counted)
    return {
        "benchmark": "demo_trials_to_target",
        "strategy": name,
        "seeds": len(hits),
        "median_trials_to_target": med if med <= max_trials else f">{max_trials}",
        "mean_trials_to_target": statistics.fmean(counted),
        "per_seed": hits,
        "not_reached": sum(h is None for h in hits),
        "budget": max_trials,
        "wall_seconds_per_trial": round(statistics.fmean(per_trial), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=60, help="max trials for labloop")
    ap.add_argument("--random-budget", type=int, default=400, help="max trials for random sampling")
    ap.add_argument("--time-scale", type=float, default=1e6)
    args = ap.parse_args()
    results = {}
    for name, budget in (("botorch", args.budget), ("random", args.random_budget)):
        hits, per = [], []
        for seed in range(args.seeds):
            h, p = run_once(name, seed, budget, args.time_scale)
            hits.append(h)
            per.append(p)
            print(f"# {name} seed {seed}: {h}", file=sys.stderr, flush=True)
        results[name] = summarize(name, hits, budget, per)
        print(json.dumps(results[name]), flush=True)
    b, r = results["botorch"]["mean_trials_to_target"], results["random"]["mean_trials_to_target"]
    print(json.dumps({"benchmark": "demo_trials_to_target", "ratio_mean_labloop_over_random": round(b / r, 3)}))


if __name__ == "__main__":
    main()
