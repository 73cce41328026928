"""Thousands of experiments: ask time and proposal quality of the exact GP against the local (trust-region) model.

Problem: botorch's Hartmann-6 (``botorch.test_functions.Hartmann``, maximized, optimum 3.32237), d = 6 continuous
parameters in [0, 1], measured with Gaussian noise (``--noise``, default 0.05). Starting data: ``n`` uniform random
points (``numpy.random.default_rng(seed)``), the same for both methods.

* ``--mode speed``: the seconds of one cold ask (a fresh strategy, q = 1) with ``model_scope`` exact and local at
  each ``--ns``, ``--repeats`` times (median, and the process CPU time: the machine is shared).
* ``--mode quality``: from the same ``n`` starting points (``--quality-n``, default 2000), ``--asks`` further
  one-at-a-time asks per seed, each measured (noisy) and added; the simple regret ``3.32237 - max f(x)`` of the
  true (noise-free) values over every measured point (``regret``) and over the new proposals alone
  (``regret_new``), for both methods on the same seeds.

Prints one JSON line per measurement, then a summary line per mode.

    python benchmarks/large_n.py --mode speed --ns 2000 10000 --repeats 2
    python benchmarks/large_n.py --mode quality --seeds 0-4 --asks 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from _seeds import seeds
from botorch.test_functions import Hartmann

from labloop.spec import CampaignSpec, ContinuousParameter, ObjectiveSpec, StrategySpec
from labloop.strategy import Observation, make_strategy

OPT = 3.32237
H6 = Hartmann(dim=6, negate=True).to(torch.double)


def f(params: dict) -> float:
    x = torch.tensor([[params[f"x{i}"] for i in range(6)]], dtype=torch.double)
    return float(H6(x)[0])


def spec(scope: str, seed: int) -> CampaignSpec:
    return CampaignSpec(
        name="large-n",
        seed=seed,
        parameters=[ContinuousParameter(name=f"x{i}", lower=0, upper=1) for i in range(6)],
        objectives=[ObjectiveSpec(name="y", direction="maximize", plugin="reading")],
        strategy=StrategySpec(options={"model_scope": scope}),
    )


def start(n: int, seed: int, noise: float) -> tuple[list[Observation], list[float]]:
    rng = np.random.default_rng(seed)
    X = rng.random((n, 6))
    obs, true = [], []
    for x in X:
        p = {f"x{i}": float(v) for i, v in enumerate(x)}
        t = f(p)
        true.append(t)
        obs.append(Observation(p, {"y": t + noise * float(rng.standard_normal())}))
    return obs, true


def speed(a) -> None:
    rows = []
    for n in a.ns:
        obs, _ = start(n, 0, a.noise)
        for scope in a.scopes:
            if scope == "exact" and n > a.exact_max_n:
                print(json.dumps({"mode": "speed", "n": n, "scope": scope, "skipped": "n > --exact-max-n"}))
                continue
            wall, cpu = [], []
            for r in range(a.repeats):
                strat = make_strategy(spec(scope, r))
                t0, c0 = time.perf_counter(), time.process_time()
                p = strat.ask(1, obs, [])
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            row = {
                "mode": "speed",
                "n": n,
                "scope": scope,
                "median_s": round(statistics.median(wall), 2),
                "max_s": round(max(wall), 2),
                "cpu_median_s": round(statistics.median(cpu), 2),
                "repeats": a.repeats,
                "local_model": p[0].info.get("local_model"),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)


def quality(a) -> None:
    res: dict[str, list[dict]] = {s: [] for s in a.scopes}
    for seed in a.seeds:
        base, base_true = start(a.quality_n, seed, a.noise)
        for scope in a.scopes:
            obs, new_true = list(base), []
            strat = make_strategy(spec(scope, seed))
            rng = np.random.default_rng(10_000 + seed)  # the measurement noise of the new points, same per method
            secs = []
            for _ in range(a.asks):
                t0 = time.perf_counter()
                p = strat.ask(1, obs, [])[0]
                secs.append(time.perf_counter() - t0)
                t = f(p.params)
                new_true.append(t)
                obs.append(Observation(p.params, {"y": t + a.noise * float(rng.standard_normal())}))
            row = {
                "mode": "quality",
                "seed": seed,
                "scope": scope,
                "n": a.quality_n,
                "asks": a.asks,
                "regret_start": round(OPT - max(base_true), 4),
                "regret": round(OPT - max(base_true + new_true), 4),
                "regret_new": round(OPT - max(new_true), 4),
                "median_ask_s": round(statistics.median(secs), 2),
            }
            res[scope].append(row)
            print(json.dumps(row), flush=True)
    summary = {"mode": "quality-summary", "n": a.quality_n, "asks": a.asks, "seeds": a.seeds}
    for scope, rows in res.items():
        summary[scope] = {
            k: round(statistics.median(r[k] for r in rows), 4) for k in ("regret", "regret_new", "median_ask_s")
        }
    if len(a.scopes) == 2:  # paired: local minus exact, per seed
        ex, lo = res["exact"], res["local"]
        summary["paired_regret_diff_local_minus_exact"] = [
            round(loc["regret"] - e["regret"], 4) for e, loc in zip(ex, lo)
        ]
    print(json.dumps(summary), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=["speed", "quality"], default="speed")
    ap.add_argument("--ns", type=int, nargs="*", default=[2000, 10000])
    ap.add_argument("--scopes", nargs="*", default=["exact", "local"])
    ap.add_argument("--exact-max-n", type=int, default=2000, help="skip the exact GP above this n (minutes per ask)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--quality-n", type=int, default=2000)
    ap.add_argument("--asks", type=int, default=10)
    ap.add_argument("--seeds", type=seeds, default=seeds("0-4"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    (speed if a.mode == "speed" else quality)(a)


if __name__ == "__main__":
    main()
