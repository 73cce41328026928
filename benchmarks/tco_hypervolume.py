"""Hypervolume after N trials of the transparent-conductor campaign (experiments/transparent_conductor.yaml, issue 11
item 3): labloop's botorch strategy (qLogNEHVI on two objectives, the transmittance floor modelled as an outcome
constraint) versus random sampling, same simulated lab with its dock, same seeds, through the same campaign runner
(real RunEngine, real devices, UV-vis spectra as HDF5 assets, SQLite store). One JSON line per run and one summary
line per strategy.

Hypervolume: of the done trials that meet the floor (mean 400-800 nm transmittance >= 0.80, the campaign's outcome
constraint), the points
(-log10 R_s, T_vis), both maximized, dominated region above the fixed reference point (-4, 0.80), i.e.
R_s = 1e4 ohm/sq and T_vis = 0.80 (botorch's DominatedPartitioning). Units: decades of R_s times transmittance.

    python benchmarks/tco_hypervolume.py --seeds 5 --trials 16
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
REF_POINT = (-4.0, 0.80)  # (-log10 R_s [ohm/sq], T_vis): T_vis = the campaign's floor (a test keeps them equal)


def hypervolume(points: list[tuple[float, float]], ref=REF_POINT) -> float:
    """Dominated hypervolume of (R_s, T_vis) points in the space (-log10 R_s, T_vis) above ``ref``."""
    import torch
    from botorch.utils.multi_objective.box_decompositions.dominated import DominatedPartitioning

    ys = [(-math.log10(r), t) for r, t in points if r > 0 and t >= ref[1] and -math.log10(r) > ref[0]]
    if not ys:
        return 0.0
    Y = torch.tensor(ys, dtype=torch.double)
    part = DominatedPartitioning(ref_point=torch.tensor(ref, dtype=torch.double), Y=Y)
    return float(part.compute_hypervolume())


def run_once(strategy: str, seed: int, trials: int, time_scale: float) -> dict:
    from labloop.run.campaign import CampaignRunner, prepare_text
    from labloop.store import Store

    data = yaml.safe_load((REPO / "experiments" / "transparent_conductor.yaml").read_text())
    data["seed"] = seed
    data["strategy"]["name"] = strategy
    data["stopping"] = {"max_trials": trials, "target_reached": False}
    data["lab"]["time_scale"] = time_scale
    with tempfile.TemporaryDirectory() as tmp:
        data["lab"]["options"].update({"dock_minutes": 1, "data_dir": f"{tmp}/assets"})
        store = Store(f"sqlite:///{tmp}/b.db")
        t0 = time.perf_counter()
        runner = CampaignRunner.start(prepare_text(yaml.safe_dump(data), "transparent_conductor.yaml"), store)
        runner.run()
        wall = time.perf_counter() - t0
        done = [t for t in store.trials(runner.campaign.id) if t.state == "done"]
        store.close()
    points = [(t.values["sheet_resistance"], t.values["visible_transmittance"]) for t in done]
    feasible = [p for p in points if p[1] >= REF_POINT[1]]
    return {
        "benchmark": "tco_hypervolume",
        "strategy": strategy,
        "seed": seed,
        "trials": trials,
        "done": len(done),
        "feasible": len(feasible),
        "hypervolume": round(hypervolume(points), 4),
        "best_rs_feasible": round(min((r for r, _ in feasible), default=math.inf), 3),
        "wall_seconds": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=16, help="N: trials per campaign (failed ones included)")
    ap.add_argument("--time-scale", type=float, default=1e6)
    args = ap.parse_args()
    summary = {}
    for name in ("botorch", "random"):
        hv = []
        for seed in range(args.seeds):
            row = run_once(name, seed, args.trials, args.time_scale)
            hv.append(row["hypervolume"])
            print(json.dumps(row), flush=True)
            print(f"# {name} seed {seed}: {row['hypervolume']}", file=sys.stderr, flush=True)
        summary[name] = hv
        print(
            json.dumps(
                {
                    "benchmark": "tco_hypervolume",
                    "strategy": name,
                    "seeds": args.seeds,
                    "trials": args.trials,
                    "reference_point": {
                        "neg_log10_sheet_resistance": REF_POINT[0],
                        "visible_transmittance": REF_POINT[1],
                    },
                    "median_hypervolume": round(statistics.median(hv), 4),
                    "mean_hypervolume": round(statistics.fmean(hv), 4),
                    "per_seed": hv,
                }
            ),
            flush=True,
        )
    b, r = statistics.median(summary["botorch"]), statistics.median(summary["random"])
    print(json.dumps({"benchmark": "tco_hypervolume", "median_labloop_over_random": round(b / r, 3) if r else None}))


if __name__ == "__main__":
    main()
