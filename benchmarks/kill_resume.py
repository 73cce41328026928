"""kill -9 at random moments, then `labloop resume`, over and over: counts lost, duplicated and double-processed
trials (all must be zero). A two-chamber simulated lab runs an async campaign whose simulated world (sample
locations, films) persists in a state file, as a real lab's samples would. Prints one JSON line.

    python benchmarks/kill_resume.py --kills 20 --trials 40
    python benchmarks/kill_resume.py --kills 20 --shipped    # experiments/thinfilm.yaml exactly as shipped

With ``--shipped`` the bundled campaign runs unchanged (one chamber, its own time scale, its stopping rules); its
simulated world is kept where labloop keeps it by default, beside the store.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def campaign(tmp: Path, trials: int, time_scale: float) -> dict:
    data = yaml.safe_load((REPO / "experiments" / "thinfilm.yaml").read_text())
    data["stopping"] = {"max_trials": trials, "target_reached": False}
    data["strategy"] = {"name": "random", "initial_design": 1}
    data["lab"] = {
        "simulator": "thinfilm",
        "time_scale": time_scale,
        # shorter depositions than the throughput benchmark, so kills land in every kind of step
        "options": {
            "chambers": 2,
            "chamber_minutes": 10,
            "probe_minutes": 5,
            "robot_minutes": 1,
            "state_file": str(tmp / "world.json"),
        },
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
    return data


def steps_done(db: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("select count(*) from steps").fetchone()[0]
    except sqlite3.Error:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--time-scale", type=float, default=3600.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="keep the store and world files in this folder (for inspection)")
    ap.add_argument("--shipped", action="store_true", help="run experiments/thinfilm.yaml exactly as shipped")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(args.keep or tmp_s)
        tmp.mkdir(parents=True, exist_ok=True)
        path = tmp / "campaign.yaml"
        if args.shipped:
            shipped = (REPO / "experiments" / "thinfilm.yaml").read_text()
            path.write_text(shipped)
            args.trials = yaml.safe_load(shipped)["stopping"]["max_trials"]
        else:
            path.write_text(yaml.safe_dump(campaign(tmp, args.trials, args.time_scale)))
        db = tmp / "labloop.db"
        url = f"sqlite:///{db}"
        kills, kill_steps, cmd = 0, [], ["run", str(path)]
        t0 = time.perf_counter()
        while True:
            proc = subprocess.Popen(
                [sys.executable, "-m", "labloop", *cmd, "--store", url],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            cmd = ["resume"]
            if kills >= args.kills:
                _, err = proc.communicate(timeout=600)
                if proc.returncode != 0:
                    raise SystemExit(f"final resume failed: {err}")
                break
            start = steps_done(db)
            while proc.poll() is None and steps_done(db) == start:  # wait until this process moves something
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 1.5))
            if proc.poll() is not None:
                if proc.returncode != 0:
                    raise SystemExit(f"run failed: {proc.stderr.read()}")
                break  # the campaign finished before the next kill (reported: kills < --kills)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            kill_steps.append(steps_done(db))
        wall = time.perf_counter() - t0
        print(
            json.dumps(
                check(tmp, url, args.trials)
                | {
                    "benchmark": "kill_resume",
                    "shipped": args.shipped,
                    "kills": kills,
                    "kill_points_step_counts": kill_steps,
                    "wall_s": round(wall, 1),
                }
            )
        )


def check(tmp: Path, url: str, trials_expected: int) -> dict:
    from labloop.run.objectives import SheetResistance, TrialData
    from labloop.store import Store

    store = Store(url)
    c = store.campaign()
    trials = store.trials(c.id)
    world_file = tmp / "world.json" if (tmp / "world.json").exists() else next(tmp.glob("*.world.json"))
    world = {r["id"]: r for r in json.loads(world_file.read_text())}
    numbers = [t.number for t in trials]
    duplicated = len(numbers) - len(set(numbers)) + max(0, len(trials) - trials_expected)
    lost = double = unfinished = 0
    sheet = SheetResistance()
    interrupted_synth = 0
    for t in trials:
        steps = store.steps(t.id)
        synth = [s for s in steps if s.kind == "synthesize"]
        deposits = [h for h in world.get(t.sample_id, {}).get("history", []) if h.startswith(("deposited", "aborted"))]
        double += int(len(synth) > 1 or len(deposits) > 1)
        interrupted_synth += sum(s.state == "interrupted" for s in synth)
        if t.state not in ("done", "failed"):
            unfinished += 1
        measured = [s for s in steps if s.kind == "measure" and s.state == "done"]
        if measured and not (
            t.state == "done"
            and abs(t.values["sheet_resistance"] - sheet(TrialData(t.params, store.documents(trial_id=t.id)))) < 1e-9
        ):
            lost += 1
    out = {
        "audit_reconciled": sum(a.action == "sample.reconcile" for a in store.audit_log(c.id)),
        "quarantined": sum(a.action == "station.quarantine" for a in store.audit_log(c.id)),
        "campaign_state": c.state,
        "stop_reason": c.stop_reason,
        "trials": len(trials),
        "done": sum(t.state == "done" for t in trials),
        "failed": sum(t.state == "failed" for t in trials),
        "unfinished": unfinished,
        "lost": lost,
        "duplicated": duplicated,
        "double_processed": double,
        "interrupted_depositions_failed": interrupted_synth,
        "samples_not_in_storage": {
            t.sample_id: world.get(t.sample_id, {}).get("location")
            for t in trials
            if world.get(t.sample_id, {}).get("location") != "storage"
        },
    }
    store.close()
    return out


if __name__ == "__main__":
    main()
