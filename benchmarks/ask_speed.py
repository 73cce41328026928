"""Time of one ``ask`` (q = 1) versus observations n and dimensions d.

Spaces: ``d6c`` = 6 continuous (the target: <= 1 s median at n = 200); ``d4m`` / ``d10m`` / ``d20m`` = mixed
(half continuous, a quarter integer, a quarter categorical with 5 choices). The objective is a smooth test function
plus noise; observations are space-filling points. Prints one JSON line per (space, n) with the median and max of
``--repeats`` asks (model fit + acquisition optimization), on one torch thread (the strategy's default): *cold*
(a fresh strategy: hyperparameters fitted from scratch, as after a restart) and *warm* (the strategy's previous ask
saw one observation fewer, as in a running campaign; the hyperparameter fit starts from the previous optimum).

    python benchmarks/ask_speed.py --repeats 3

Wall-clock seconds and CPU seconds of the process are both printed: on a shared machine the wall time includes
waiting for a core, the CPU time is what the ask itself costs (one thread, so CPU time <= wall time).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

from labloop.spec import (
    CampaignSpec,
    CategoricalParameter,
    ContinuousParameter,
    IntegerParameter,
    ObjectiveSpec,
)
from labloop.strategy import Observation, make_strategy


def _space(kind: str) -> list:
    if kind == "d6c":
        return [ContinuousParameter(name=f"x{i}", lower=0, upper=1) for i in range(6)]
    d = int(kind[1:-1])
    n_int = n_cat = d // 4
    n_con = d - n_int - n_cat
    return (
        [ContinuousParameter(name=f"x{i}", lower=0, upper=1) for i in range(n_con)]
        + [IntegerParameter(name=f"k{i}", lower=0, upper=20) for i in range(n_int)]
        + [CategoricalParameter(name=f"c{i}", choices=list("abcde")) for i in range(n_cat)]
    )


def _f(p: dict) -> float:
    s = 0.0
    for k, v in p.items():
        if isinstance(v, str):
            s += 0.3 * "abcde".index(v)
        elif k.startswith("k"):
            s -= ((v - 7) / 20) ** 2
        else:
            s -= (v - 0.3) ** 2 + 0.1 * math.sin(9 * v)
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ns", type=int, nargs="*", default=[50, 200, 1000, 2000])
    ap.add_argument("--spaces", nargs="*", default=["d6c", "d4m", "d10m", "d20m"])
    a = ap.parse_args()
    for kind in a.spaces:
        spec = CampaignSpec(
            name="speed",
            parameters=_space(kind),
            objectives=[ObjectiveSpec(name="y", direction="maximize", plugin="reading")],
        )
        strat = make_strategy(spec)
        for n in a.ns:
            X = strat.space.sample(n, seed=1)
            g = torch.Generator().manual_seed(n)
            obs = [
                Observation(p, {"y": _f(p) + 0.01 * float(torch.randn(1, generator=g))})
                for p in strat.space.decode_many(X)
            ]
            cold, warm, cold_cpu, warm_cpu = [], [], [], []
            for _ in range(a.repeats):
                fresh = make_strategy(spec)  # cold: hyperparameters fitted from the prior (a restarted process)
                t0, c0 = time.perf_counter(), time.process_time()
                fresh.ask(1, obs, [])
                cold.append(time.perf_counter() - t0)
                cold_cpu.append(time.process_time() - c0)
                # warm: as in a running campaign, the previous ask saw one observation fewer
                fresh = make_strategy(spec)
                fresh.ask(1, obs[:-1], [])
                t0, c0 = time.perf_counter(), time.process_time()
                fresh.ask(1, obs, [])
                warm.append(time.perf_counter() - t0)
                warm_cpu.append(time.process_time() - c0)
            med = lambda xs: round(statistics.median(xs), 3)
            print(
                json.dumps(
                    {
                        "space": kind,
                        "d": strat.space.dim,
                        "n": n,
                        "cold_median_s": med(cold),
                        "cold_cpu_s": med(cold_cpu),
                        "warm_median_s": med(warm),
                        "warm_cpu_s": med(warm_cpu),
                        "repeats": a.repeats,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
