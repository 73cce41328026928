"""Does leaving lab faults out of what the strategy learns pay? The demo campaign (thin-film lab, target 5 ohm/sq)
with a sputter chamber that fails a deposition with a device fault at random (``chamber_fault_rate``), botorch,
same seeds, two arms in one process:

* ``not_learned`` (labloop's rule, labloop/run/failures.py ``failed_on_the_lab``): a trial that failed on the lab
  is not given to the strategy; its recipe may be proposed again;
* ``learned`` (before the rule): every failed trial is an observed failure, which the feasibility model reads as
  "this recipe fails".

A failed deposition counts as a spent trial in both (the substrate is consumed). The lab's own protections are
turned off (quarantine after 1000 failures in a row, no pause for repeated causes): at this fault rate three
failures in a row happen, the one chamber is quarantined and the campaign waits for an operator, which is right
for a lab and not what is measured here. Reported per arm: trials to the target (a miss counts as budget + 1).

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/lab_faults.py --seeds 0-9 --fault-rate 0.25

``--pool TABLE`` runs the same two arms on a shared lookup table instead (the issue-13 protocol of
benchmarks/replay_tables.py: 5 seeded starting rows, one proposal at a time, budget 150, labloop's default
strategy): each proposed row fails with a lab fault at ``--fault-rate`` (seeded per seed and experiment, so both
arms see the same faults at the same positions). ``learned`` gives the strategy the failed row as a failure, which
in a pool is never proposed again; ``not_learned`` leaves it out, so it may be proposed again. Reported:
experiments to the best row (a failed experiment counts as one; a miss counts as 151).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _seeds import seeds as parse_seeds
from demo_trials_to_target import run_once

import labloop.run.proposals as proposals

PROTECTIONS_OFF = {"quarantine_after": 1000, "pause_after_same_failures": 0}


def pool_run(table: str, seed: int, rate: float, learned: bool, budget: int = 150) -> int | None:
    """Experiments until the table's best row is measured (faults included), or None within ``budget``."""
    import numpy as np
    from replay_tables import N_INIT, shared_table_lab, table_files

    from labloop.benchmark_protocol import start_rows, target_rows
    from labloop.errors import LabloopError
    from labloop.strategy import Observation, make_strategy

    (path,) = table_files([table])
    lab = shared_table_lab(path, seed, budget)
    best_rows, _ = target_rows(lab.values, lab.spec.objectives[0].direction == "maximize")
    strategy = make_strategy(lab.spec, lab.pool)
    rng = np.random.default_rng(7_000_003 + seed)  # the faults: the same draws for both arms
    obs = []
    for i in start_rows(len(lab.values), seed, N_INIT):
        obs.append(Observation(dict(lab.pool.rows[i]), {lab.objective: lab.values[i]}))
        if i in best_rows:
            return len(obs)
    for n in range(N_INIT + 1, budget + 1):
        try:
            params = dict(strategy.ask(1, obs, [])[0].params)
        except LabloopError:  # every row measured or failed: the best row failed once and is never asked again
            return None
        if rng.random() < rate:
            if learned:
                obs.append(Observation(params, {}, failed=True, reason="synthesize:chamber: a lab fault"))
            continue
        i, value = lab.measure(params)
        obs.append(Observation(params, {lab.objective: value}))
        if i in best_rows:
            return n
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--fault-rate", type=float, default=0.25, help="the chamber's fault probability per deposition")
    ap.add_argument("--budget", type=int, default=60)
    ap.add_argument("--time-scale", type=float, default=1e6)
    ap.add_argument("--arms", default="not_learned,learned")
    ap.add_argument("--pool", default=None, help="a shared table (a part of its file name): the pool mode")
    args = ap.parse_args()
    if args.pool:
        args.budget = 150
    rule = proposals.failed_on_the_lab
    results: dict[str, list[int | None]] = {}
    for seed in parse_seeds(args.seeds):
        for arm in args.arms.split(","):
            proposals.failed_on_the_lab = rule if arm == "not_learned" else (lambda reason, labels: False)
            if args.pool:
                hit, per_trial = pool_run(args.pool, seed, args.fault_rate, arm == "learned"), 0.0
            else:
                hit, per_trial = run_once(
                    "botorch",
                    seed,
                    args.budget,
                    args.time_scale,
                    lab_options={"chamber_fault_rate": args.fault_rate},
                    scheduling=PROTECTIONS_OFF,
                )
            results.setdefault(arm, []).append(hit)
            print(
                json.dumps(
                    {
                        "benchmark": "lab_faults",
                        "arm": arm,
                        "seed": seed,
                        "fault_rate": args.fault_rate,
                        "pool": args.pool,
                        "trials_to_target": hit,
                        "budget": args.budget,
                        "wall_s_per_trial": round(per_trial, 3),
                    }
                ),
                flush=True,
            )
    for arm, hits in results.items():
        counted = [h if h is not None else args.budget + 1 for h in hits]
        print(
            json.dumps(
                {
                    "benchmark": "lab_faults",
                    "summary": arm,
                    "seeds": len(hits),
                    "median": statistics.median(counted),
                    "mean": round(statistics.fmean(counted), 2),
                    "reached": sum(h is not None for h in hits),
                    "per_seed": hits,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
