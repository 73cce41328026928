"""kill -9 at seeded random moments across one solid-state campaign, `labloop resume` after each, the lab's protocol
servers up throughout (as real instruments stay up when the orchestrator dies): counts lost, duplicated and
double-fired trials (all must be zero). Prints JSON lines: one per kill, then the result.

    python benchmarks/kill_resume_solid_state.py --kills 20 --trials 12
    python benchmarks/kill_resume_solid_state.py --kills 3 --trials 4     # a quick check

The lab is ``labloop sim serve solid_state`` on free ports (no faults); the campaign is experiments/solid_state.yaml
pointed at it, with random proposals (the crash path, not the optimizer). The dispenser and the balance cannot say
which crucible they hold (a furnace's crucibles are in robot2's own record, ``CellRobot.locate``), so a kill that
leaves a crucible in one of them makes resume stop for an operator (``sample.unlocated``);
the benchmark plays that operator as the message asks (the crucible back in its rack slot, then `labloop resume`)
and counts the requests (``operator_requests``). The checks read the store and the lab's own world file:

* lost: a proposed trial that did not end done or failed, a failure without a reason, a done trial without its
  objective, or fewer trials than the budget;
* duplicated: a trial number or a crucible used by two trials, or more trials than the budget;
* double-fired: a crucible the furnaces fired more than once (the world records every firing).

A kill during a firing is reattached when the furnace's controller shows it runs (or ran) the program the dead
process started for exactly the crucibles inside (its latched program tag): the trial follows that firing to its
end. Without that evidence (killed before ``run = 1`` reached the controller) the trial fails: a consumed sample is
never processed again. ``failed`` counts those; ``reattached`` the firings followed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from labloop_devices.solid_state.cell import CellRobot
from labloop_simulators.solid_state_lab.campaign import ServedLab, point_at
from labloop_simulators.solid_state_lab.world import World

REPO = Path(__file__).resolve().parents[1]
UNLOCATED = "sample.unlocated"


def slot(sample: str) -> tuple[str, str]:
    """(crucible, its rack slot) of a sample: PREFIX-NNNN is crucible CRNNNN in slot rackNN."""
    found = re.search(r"(\d+)$", sample)
    assert found is not None, sample
    n = int(found.group(1))
    return f"CR{n:04d}", f"rack{n:02d}"


def steps_done(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return int(con.execute("select count(*) from steps").fetchone()[0])
    except sqlite3.Error:
        return 0


def operator(url: str, world: World, seen: set[int]) -> int:
    """Do what each new ``sample.unlocated`` request asks: the crucible back in its rack slot."""
    from labloop.store import Store

    store = Store(url)
    asked = [a for a in store.audit_log(store.campaign().id) if a.action == UNLOCATED and a.id not in seen]
    store.close()
    for a in asked:
        seen.add(a.id)
        code, rack = slot(a.detail["sample"])
        with world.transaction() as w:
            w["crucibles"][code]["location"] = rack
    return len(asked)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--trials", type=int, default=12, help="at most 24 (the rack's crucibles)")
    ap.add_argument("--time-scale", type=float, default=20000.0)
    ap.add_argument("--max-wait", type=float, default=1.5, help="a kill lands 0..this many s after the process moved")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="keep the store, campaign and world files in this folder (for inspection)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(args.keep or tmp_s)
        tmp.mkdir(parents=True, exist_ok=True)
        db, seen = tmp / "labloop.db", set[int]()
        url = f"sqlite:///{db}"
        with ServedLab(tmp / "lab", time_scale=args.time_scale) as lab:
            data = point_at(yaml.safe_load((REPO / "experiments" / "solid_state.yaml").read_text()), lab.endpoints)
            data["strategy"] = {"name": "random", "initial_design": 1}
            data["stopping"] = {"max_trials": args.trials, "target_reached": False}
            path = tmp / "campaign.yaml"
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            world = World(lab.endpoints["world"])
            kills, requests, cmd = 0, 0, ["run", str(path)]
            t0 = time.perf_counter()
            while True:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "labloop", *cmd, "--store", url],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                cmd = ["resume"]
                if kills < args.kills:
                    start = steps_done(db)
                    while proc.poll() is None and steps_done(db) == start:  # until this process moves something
                        time.sleep(0.02)
                    time.sleep(rng.uniform(0.0, args.max_wait))
                if kills < args.kills and proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.communicate()
                    kills += 1
                    print(json.dumps({"kill": kills, "steps_recorded": steps_done(db)}), flush=True)
                    continue
                out, _ = proc.communicate(timeout=900)
                if proc.returncode == 2 and "the lab cannot tell" in out:
                    n = operator(url, world, seen)
                    if not n:
                        raise SystemExit(f"resume stopped for an operator with no request recorded: {out}")
                    requests += n
                    continue
                if proc.returncode == 2 and "has already ended" in out:
                    break  # the last kill landed after the campaign was recorded finished: nothing left to resume
                if proc.returncode != 0 and "stopped:" not in out:  # exit 2 with "stopped:": no trial succeeded
                    raise SystemExit(f"campaign process failed ({proc.returncode}): {out}")
                break  # the campaign ended (kills < --kills when it ended before the next kill)
            wall = time.perf_counter() - t0
            lab_world = world.read()
        result = check(url, lab_world, args.trials) | {
            "benchmark": "kill_resume_solid_state",
            "kills": kills,
            "operator_requests": requests,
            "trials_budget": args.trials,
            "time_scale": args.time_scale,
            "seed": args.seed,
            "wall_s": round(wall, 1),
        }
        print(json.dumps(result), flush=True)


def check(url: str, world: dict[str, Any], budget: int) -> dict[str, Any]:
    from labloop.store import Store

    store = Store(url)
    c = store.campaign()
    trials = store.trials(c.id)
    steps = store.steps(campaign_id=c.id)
    numbers = [t.number for t in trials]
    samples = [t.sample_id for t in trials]
    lost = max(0, budget - len(trials))
    for t in trials:
        if t.state not in ("done", "failed") or (t.state == "failed" and not t.failure_reason):
            lost += 1
        elif t.state == "done" and not isinstance(t.values.get("target_phase_fraction"), float):
            lost += 1
    duplicated = len(numbers) - len(set(numbers)) + len(samples) - len(set(samples)) + max(0, len(trials) - budget)
    firings = {code: len(cr["firings"]) for code, cr in world["crucibles"].items()}
    out = {
        "campaign_state": c.state,
        "stop_reason": c.stop_reason,
        "trials": len(trials),
        "done": sum(t.state == "done" for t in trials),
        "failed": sum(t.state == "failed" for t in trials),
        "interrupted_steps": sum(s.state == "interrupted" for s in steps),
        "lost": lost,
        "duplicated": duplicated,
        "double_fired": sum(n > 1 for n in firings.values()),
        "crucibles_fired": sum(n > 0 for n in firings.values()),
        "reattached": sum(a.action == "trial.reattach" for a in store.audit_log(c.id)),
        # the step each failure names, and whether the firing it cut had started (its crucible fired)
        "failed_at": dict(
            Counter(
                f"{(t.failure_reason or '').split(':')[0]}:{(t.failure_reason or '').split(':')[1]}"
                + (" (fired)" if firings.get(CellRobot.crucible(t.sample_id)) else " (not fired)")
                for t in trials
                if t.state == "failed"
            )
        ),
    }
    store.close()
    return out


if __name__ == "__main__":
    main()
