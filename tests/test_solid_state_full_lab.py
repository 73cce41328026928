"""No deadlock in a FULL solid-state lab (issue 24 item 4): every station holds a crucible at once (the dispenser,
the balance, the four furnaces and the diffractometer), more trials are in flight than the lab holds, both robots
move crucibles with a hand-off at the balance (robot1 doses and weighs, robot2 fires, scans and puts away), async
scheduling, against the lab's real protocol servers (`labloop sim serve solid_state`). The campaign must finish
every trial (done, or failed with its reason), and the store must show the lab was really full.

The rule this pins (labloop/run/walk.py ``TrialWalker.step``, labloop/run/resources.py's docstring): **a move
reserves its destination station before it takes the robot, and the robot is held for that one move only, never
while waiting for a station.** The two robots are one reservation per move (``LabResources.acquire_robot``). In a
full lab the crucible on the balance waits for a furnace, the furnaces' crucibles wait for robot2 to take them to
the diffractometer, and the crucible in the dispenser waits for the balance. A move that took the robot first and
then waited for its station would hold the robot while every furnace waits for it: deadlock. This lab has no
buffer places, so parking (``_should_park``) never applies here: the reservation order alone keeps it draining
(places like the rack always have room, and each station kind is visited once).

How it was shown to fail without the rule: with ``TrialWalker.step`` changed so that a move out of a station takes
the robot first and then waits for its destination (moves from the rack unchanged), this test fails: no step
starts or finishes for ``STALL_S``, with trials 1-4 fired and waiting in furnace1-4, trial 5 weighed on the balance
holding the robot while it waits for a furnace, trial 6 dosed in the dispenser, trial 7 proposed (notes/fulllab.md).
The 4-trial run of tests/test_solid_state_campaign.py passes with that change: only a full lab exposes it.

Why the diffractometer scans twice here: a crucible is in the diffractometer only for a scan, and a scan (300
model seconds) is short beside a firing; all seven stations hold a crucible at once only if the diffractometer's
crucible is still there when the hole its predecessor left has moved up the line (a furnace, the balance, the
dispenser refilled: three moves). Two scans give that a margin rather than a coin toss (three runs at load 6-14
on 2 cores: four such moments per run, 0.1-0.35 s each); the objective reads the last pattern, so nothing else
changes. Firings are kept short (peak 500-550 degC, 1-1.5 h dwell: ~20 s at time scale 1000) so ten trials take
three rounds of the furnaces in about a minute.

The hang detector is progress, not speed: it fails only when no step started or finished for ``STALL_S`` real
seconds while the longest step (a firing) takes well under that at this time scale.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from labloop_devices.solid_state.cell import CellRobot
from labloop_simulators.solid_state_lab.campaign import ServedLab, point_at
from labloop_simulators.solid_state_lab.world import World

from labloop.store import Store
from labloop.store.schema import Step, Trial

CAMPAIGN = Path(__file__).resolve().parent.parent / "experiments" / "solid_state.yaml"
TIME_SCALE = 1000.0
TRIALS = 10  # 7 stations: the lab holds 7 crucibles; 10 trials keep it backed up over three rounds of firings
STATIONS = ("dispenser", "balance", "furnace1", "furnace2", "furnace3", "furnace4", "xrd")
STALL_S = 150.0  # no step started or finished for this long: deadlock (a firing here takes ~20 s)
RUN_CAP_S = 1200.0  # a run that still progresses but never ends is a hang too


def full_lab_campaign(endpoints: dict[str, Any]) -> dict[str, Any]:
    data = point_at(yaml.safe_load(CAMPAIGN.read_text()), endpoints)
    data["strategy"] = {"name": "random", "initial_design": 1}  # the scheduling, not the model
    data["stopping"] = {"max_trials": TRIALS, "target_reached": False}
    assert data["scheduling"]["mode"] == "async"
    data["lab"].pop("batching")  # one crucible per firing: 7 crucibles fill the 7 stations
    for p in data["parameters"]:  # short firings: the test's time goes to a full lab, not to cooling
        bounds = {"dwell_h": (1, 1.5), "peak_c": (500, 550), "ramp_c_per_min": (15, 20)}.get(p["name"])
        if bounds:
            p["lower"], p["upper"] = bounds
    workflow = data["workflow"]
    xrd = next(i for i, s in enumerate(workflow) if s["kind"] == "measure" and s["device"] == "xrd")
    workflow.insert(xrd + 1, {**workflow[xrd], "name": "measure:xrd (second scan)"})
    return data


def progress(db: Path) -> tuple[int, int]:
    """(steps recorded, steps finished): what the hang detector watches."""
    try:
        with sqlite3.connect(db, timeout=5) as con:
            row = con.execute("select count(*), count(finished_at) from steps").fetchone()
            return int(row[0]), int(row[1])
    except sqlite3.Error:
        return -1, -1  # the store is being created: not progress, not a stall either


def run_watched(path: Path, db: Path, log: Path) -> int:
    """``labloop run`` in its own process; killed (and the test failed, saying which steps hung) when no step
    started or finished for ``STALL_S``."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "labloop", "run", str(path), "--store", f"sqlite:///{db}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
    seen, quiet, total = progress(db), 0.0, 0.0
    tick = 2.0
    while True:
        try:
            return proc.wait(timeout=tick)
        except subprocess.TimeoutExpired:
            pass
        total += tick
        now = progress(db)
        quiet = 0.0 if now != seen else quiet + tick
        seen = now
        if quiet >= STALL_S or total >= RUN_CAP_S:
            proc.kill()
            proc.wait()
            raise AssertionError(
                f"deadlock: no step started or finished for {quiet:.0f} s ({total:.0f} s in); each unfinished "
                f"trial's last step: {last_steps(db)}; log: {log.read_text()[-1500:]}"
            )


def last_steps(db: Path) -> list[tuple[int, str, str, str, str]]:
    """Each unfinished trial's state and its last step (label, device, state): where a stuck crucible sits."""
    with sqlite3.connect(db) as con:
        return con.execute(
            "select t.number, t.state, s.label, s.device, s.state from trials t left join steps s on s.id = "
            "(select max(id) from steps where trial_id = t.id) where t.finished_at is null order by t.number"
        ).fetchall()


def occupancy(workflow: list[dict[str, Any]], steps: list[Step]) -> list[tuple[str, datetime, datetime, int]]:
    """When each crucible was surely in each station, from the step rows: from the end of the move that put it
    there to the start of the move that took it out (station, from, to, trial id)."""
    done: dict[int, dict[int, Step]] = {}
    for s in steps:
        if s.state == "done":
            done.setdefault(s.trial_id, {})[s.index] = s
    out = []
    for trial, by_index in done.items():
        for i, step in enumerate(workflow):
            if step["kind"] != "transfer" or i + 1 >= len(workflow) or workflow[i + 1]["kind"] == "transfer":
                continue
            leave = next(j for j in range(i + 1, len(workflow)) if workflow[j]["kind"] == "transfer")
            if i in by_index and i + 1 in by_index and leave in by_index:
                out.append((by_index[i + 1].device, by_index[i].finished_at, by_index[leave].started_at, trial))
    return out


def holding(
    occ: list[tuple[str, datetime, datetime, int]], stations: tuple[str, ...]
) -> list[tuple[datetime, datetime, dict[str, int]]]:
    """Intervals in which each of ``stations`` held a crucible: (from, to, station -> trial id)."""
    edges = sorted({o[1] for o in occ} | {o[2] for o in occ})
    out = []
    for a, b in zip(edges, edges[1:]):
        held = {o[0]: o[3] for o in occ if o[1] <= a and b <= o[2]}
        if set(held) >= set(stations):
            out.append((a, b, held))
    return out


def full_moments(occ: list[tuple[str, datetime, datetime, int]]) -> list[tuple[datetime, datetime, dict[str, int]]]:
    """Intervals in which every station held a crucible: (from, to, station -> trial id)."""
    return holding(occ, STATIONS)


def test_a_full_lab_with_two_robots_drains_without_deadlock(tmp_path: Path) -> None:
    db = tmp_path / "labloop.db"
    with ServedLab(tmp_path / "lab", time_scale=TIME_SCALE) as lab:
        data = full_lab_campaign(lab.endpoints)
        path = tmp_path / "campaign.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        code = run_watched(path, db, tmp_path / "run.log")
        world = World(lab.endpoints["world"]).read()
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]

    store = Store(f"sqlite:///{db}")
    (campaign,) = store.campaigns()
    trials: list[Trial] = store.trials(campaign.id)
    steps = store.steps(campaign_id=campaign.id)
    store.close()
    # every trial finished: done, or failed with its reason
    assert [t.number for t in trials] == list(range(1, TRIALS + 1))
    assert all(t.state in ("done", "failed") for t in trials), [(t.number, t.state) for t in trials]
    assert all(t.failure_reason for t in trials if t.state == "failed")
    for t in trials:  # every crucible back in its rack slot (the lab's own record)
        crucible = world["crucibles"][CellRobot.crucible(t.sample_id)]
        assert crucible["location"] == f"rack{int(CellRobot.crucible(t.sample_id)[2:]):02d}", (t.number, crucible)

    # both robots, with the hand-off at the balance: robot1 brings each crucible to the dispenser and the balance,
    # robot2 takes it from the balance to a furnace, to the diffractometer and back to the rack
    workflow = data["workflow"]
    robots = {i: s["robot"] for i, s in enumerate(workflow) if s["kind"] == "transfer"}
    for t in trials:
        moves = {s.index: s.device for s in steps if s.trial_id == t.id and s.kind == "transfer" and s.state == "done"}
        assert moves == robots if t.state == "done" else moves.items() <= robots.items(), (t.number, moves)
    assert {s["robot"] for s in workflow if s["kind"] == "transfer"} == {"robot1", "robot2"}

    # the lab was really full: at some moment every station held a crucible (seven crucibles of seven trials), and
    # more trials were in flight than the lab holds
    occ = occupancy(workflow, steps)
    full = full_moments(occ)
    assert full, sorted((o[0], o[1].time(), o[2].time(), o[3]) for o in occ)
    assert all(len(set(held.values())) == len(STATIONS) for _, _, held in full)

    def in_flight(at: datetime) -> int:  # proposed, not finished: launched and waiting, or in the lab
        return sum(1 for t in trials if t.proposed_at <= at and (t.finished_at is None or t.finished_at > at))

    assert any(in_flight(a) > len(STATIONS) for a, _, _ in full), [(t.number, t.proposed_at) for t in trials]
    # and the lab was stuck the way a robot held while waiting would deadlock it: all four furnaces full, the
    # balance's crucible weighed and waiting for a furnace (robot2's side), the dispenser's crucible dosed and
    # waiting for the balance (robot1's side)
    finished = {(s.trial_id, s.device): s.finished_at for s in steps if s.kind != "transfer" and s.finished_at}
    chain = [
        (a, held)
        for a, _, held in holding(occ, ("dispenser", "balance", "furnace1", "furnace2", "furnace3", "furnace4"))
        if all(finished[(held[d], d)] <= a for d in ("dispenser", "balance"))
    ]
    assert chain, occ
