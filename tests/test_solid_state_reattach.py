"""A firing outlives the orchestrator: killed mid-firing, ``labloop resume`` follows the program the furnace still
runs to its end (issue 24 item 8), instead of failing every crucible in it as it did before.

The evidence (labloop/run/recovery.py, devices/solid_state/cell.py ``CellFurnace.program_of``): the arm's own
record puts the crucible in the furnace (``CellRobot.locate``: no operator is asked), and the controller's latched
program tag is the one the dead process wrote for exactly the crucibles inside, so its ``run = 1`` reached the
controller. Anything less (a firing that never started, an aborted or tripped one) fails the trial as before, and a
crucible is never fired twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from labloop_devices.solid_state.cell import CellRobot, firing_tag, furnace
from labloop_simulators.solid_state_lab.campaign import ServedLab, point_at
from labloop_simulators.solid_state_lab.world import World
from test_solid_state_kill import CAMPAIGN, run

from labloop.run.recovery import UNLOCATED
from labloop.store import Store


def campaign_file(tmp_path: Path, lab: ServedLab, trials: int) -> Path:
    data = point_at(yaml.safe_load(CAMPAIGN.read_text()), lab.endpoints)
    data["strategy"] = {"name": "random", "initial_design": 1}
    data["stopping"] = {"max_trials": trials, "target_reached": False}
    data["scheduling"] = {"mode": "sequential"}
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def kill_while_firing(path: Path, url: str, lab: ServedLab) -> tuple[str, str]:
    """Run the campaign and SIGKILL it once a furnace's controller says it fires trial 1's crucible (evidence read
    from the controller, not a delay: a loaded machine cannot move the kill before ``run = 1``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "labloop", "run", str(path), "--store", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while proc.poll() is None:
            firing = firing_step(url)
            if firing is not None:
                station, sample = firing
                served = lab.endpoints["devices"][station]
                dev = furnace(name=station, address=served["address"], time_scale=float(lab.endpoints["time_scale"]))
                try:
                    while proc.poll() is None and dev.program_of([sample]) is None:
                        time.sleep(0.01)
                    os.kill(proc.pid, signal.SIGKILL)
                finally:
                    dev.destroy()
                assert proc.wait() == -signal.SIGKILL
                return station, sample
            time.sleep(0.02)
        raise AssertionError(f"the campaign ended ({proc.returncode}) before a firing could be cut")
    finally:
        if proc.poll() is None:
            proc.kill()


def firing_step(url: str) -> tuple[str, str] | None:
    """The furnace and sample of a running firing step, if the store has one yet."""
    store = Store(url)
    try:
        campaigns = store.campaigns()
        if not campaigns:
            return None
        trials = {t.id: t for t in store.trials(campaigns[0].id)}
        for s in store.steps(campaign_id=campaigns[0].id):
            if s.label == "synthesize:furnace" and s.state == "running":
                return s.device, trials[s.trial_id].sample_id
        return None
    finally:
        store.close()


def test_a_kill_mid_firing_is_resumed_by_following_the_firing_to_its_end(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    with ServedLab(tmp_path / "lab", time_scale=5000) as lab:
        path = campaign_file(tmp_path, lab, trials=2)
        station, sample = kill_while_firing(path, url, lab)
        store = Store(url)
        cid = store.campaign().id
        cut = [s for s in store.steps(campaign_id=cid) if s.state == "running"]
        store.close()
        assert [(s.label, s.device) for s in cut] == [("synthesize:furnace", station)]
        resumed = run(["resume"], url, None)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert f"trial 1: {station} still runs (or finished) the program" in resumed.stdout  # told, not hidden
        world = World(lab.endpoints["world"]).read()

    store = Store(url)
    trials = store.trials(cid)
    assert [t.state for t in trials] == ["done", "done"], [(t.number, t.state, t.failure_reason) for t in trials]
    audit = store.audit_log(cid)
    (reattached,) = [a for a in audit if a.action == "trial.reattach"]
    assert reattached.detail["trial"] == 1 and reattached.detail["station"] == station
    assert reattached.detail["samples"] == [trials[0].sample_id] == [sample]
    assert not [a for a in audit if a.action == UNLOCATED]  # the arm's record said where the crucible was
    rows = [s for s in store.steps(trials[0].id) if s.label == "synthesize:furnace"]
    assert [s.state for s in rows] == ["interrupted", "done"] and rows[1].device == station
    start = next(d for d in store.documents(run_uid=rows[1].run_uid) if d[0] == "start")[1]
    assert start["batch"]["reattach"] and start["recipe"]["reattach"]  # the record says it followed, not fired
    # the firing the dead process started is the only one its crucible saw, with the trial's own profile
    crucible = world["crucibles"][CellRobot.crucible(trials[0].sample_id)]
    assert len(crucible["firings"]) == 1, crucible["firings"]
    assert crucible["firings"][0]["atmosphere"] == trials[0].params["atmosphere"]
    assert abs(crucible["firings"][0]["peak_c"] - trials[0].params["peak_c"]) < 0.01
    truth = crucible["product"]["fractions"]["LiMn2O4"]
    assert abs(trials[0].values["target_phase_fraction"] - truth) <= 0.06  # measured from what the furnace made
    store.close()


def test_the_furnace_says_it_runs_a_firing_only_for_the_crucibles_whose_start_reached_it(tmp_path: Path) -> None:
    """``program_of`` against the served furnace: the written-but-not-started firing, the running one, the ended
    one, another set of crucibles, and an aborted program (``stop()``: never "done")."""
    with ServedLab(tmp_path / "lab", time_scale=20000) as lab:
        served = lab.endpoints["devices"]["furnace1"]
        dev = furnace(name="furnace1", address=served["address"], time_scale=float(lab.endpoints["time_scale"]))
        mine, other = ["ab-0001", "ab-0002"], ["ab-0003"]
        assert dev.program_of(mine) is None  # nothing ever started here
        dev.program.put(firing_tag(mine))  # written, and the process died before run = 1
        assert dev.program_of(mine) is None
        dev.peak.put(300.0)
        dev.dwell.put(60.0)
        dev.run.put(1)
        assert dev.program_of(mine) == "running" and dev.program_of(other) is None
        assert dev.program_of(mine[:1]) is None  # exactly the crucibles inside, all of them or none
        deadline = time.monotonic() + 120
        while dev.program_of(mine) != "done":
            assert time.monotonic() < deadline, "the program never ended"
            time.sleep(0.05)
        dev.program.put(firing_tag(other))
        dev.run.put(1)
        assert dev.program_of(other) == "running"
        dev.run.put(0)  # aborted: it cools, and is not done
        deadline = time.monotonic() + 120
        while dev.running.get():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # cooled or not, an aborted program never says done
        assert dev.program_of(other) is None
        dev.destroy()


def test_a_failed_sample_is_taken_out_by_the_arm_that_serves_its_station() -> None:
    """After a failure, the move out of a station is the workflow's next move after the one into it: robot2 for a
    furnace (its record knows the slot; robot1 would refuse: "its record has no CR0001 in furnace1", and the furnace
    was quarantined), robot1 for the dispenser, robot2 for the balance (the hand-off's side)."""
    from labloop.run.walk import _robot_out_of
    from labloop.spec import parse_spec

    spec = parse_spec(yaml.safe_load(CAMPAIGN.read_text()))
    kinds = {"furnace": ["furnace1", "furnace2", "furnace3", "furnace4"]}
    assert _robot_out_of(spec.workflow, "furnace3", kinds) == "robot2"
    assert _robot_out_of(spec.workflow, "dispenser", kinds) == "robot1"
    assert _robot_out_of(spec.workflow, "balance", kinds) == "robot2"
    assert _robot_out_of(spec.workflow, "xrd", kinds) == "robot2"
