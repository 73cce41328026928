"""Crash the campaign process without any cleanup (``os._exit``, what ``kill -9`` does) at every step boundary
and in the middle of every step kind, then resume: no measured result is lost, no trial appears twice, no sample
is deposited twice, and the interrupted step is handled by its kind's resume policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from campaign_files import thinfilm

from labloop.run.campaign import CampaignRunner
from labloop.run.objectives import SheetResistance, TrialData
from labloop.store import Store

TRIALS = 3
# Sequential mode makes the n-th step executed the (n-1)-th workflow step of trial 1: 1..5 are
# transfer -> synthesize -> transfer -> measure -> transfer.
KINDS = {1: "transfer", 2: "synthesize", 3: "transfer", 4: "measure", 5: "transfer"}

#: the campaign process with the crash hook installed (the runtime has none: labloop/run/hookpoints.py)
CRASHING = Path(__file__).with_name("crashing.py")


def campaign(tmp_path) -> dict:
    data = thinfilm(stopping={"max_trials": TRIALS, "target_reached": False})
    data["strategy"] = {"name": "random", "initial_design": 1}
    data["scheduling"] = {"mode": "sequential"}
    data["lab"] = {
        "simulator": "thinfilm",
        "time_scale": 3600.0,
        "options": {
            "chamber_minutes": 18,
            "probe_minutes": 6,
            "robot_minutes": 6,
            "state_file": str(tmp_path / "world.json"),
        },
    }
    return data


def crash_run(tmp_path, point: str, n: int) -> subprocess.CompletedProcess:
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(campaign(tmp_path)))
    env = {**os.environ, "LABLOOP_CRASH_AT": f"{point}:{n}", "LABLOOP_CRASH_DELAY": "0.05"}
    return subprocess.run(
        [sys.executable, str(CRASHING), "run", str(path), "--store", f"sqlite:///{tmp_path / 'labloop.db'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "point, n", [("step_end", k) for k in range(1, 6)] + [("step_mid", 1), ("step_mid", 2), ("step_mid", 4)]
)
def test_kill_then_resume_loses_and_repeats_nothing(tmp_path, point, n):
    proc = crash_run(tmp_path, point, n)
    assert proc.returncode == 137, proc.stdout + proc.stderr
    store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
    c = store.campaign()
    before = {t.number: (t.state, dict(t.values)) for t in store.trials(c.id)}
    assert before[1][0] == "running"  # the crash hit trial 1

    runner, resumptions = CampaignRunner.resume(store, c)
    assert [r.trial.number for r in resumptions] == [1]  # to finish it, or to take its sample out of the chamber
    decision = runner.run(resumptions)
    assert decision.rule == "budget"

    trials = store.trials(c.id)
    assert [t.number for t in trials] == list(range(1, TRIALS + 1)), "a trial appeared twice or was skipped"
    assert all(t.state in ("done", "failed") for t in trials)
    world = {r["id"]: r for r in json.loads((tmp_path / "world.json").read_text())}
    sheet = SheetResistance()
    for t in trials:
        steps = store.steps(t.id)
        synth = [s for s in steps if s.kind == "synthesize"]
        assert len(synth) == 1, "a synthesis ran twice"
        deposited = [h for h in world[t.sample_id]["history"] if h.startswith(("deposited", "aborted"))]
        assert len(deposited) <= 1, f"sample {t.sample_id} was processed twice: {deposited}"
        if t.state == "done":
            # the stored value is the measured one (nothing lost, nothing invented)
            assert t.values["sheet_resistance"] == pytest.approx(
                sheet(TrialData(t.params, store.documents(trial_id=t.id)))
            )
            assert [s.state for s in steps if s.kind == "measure"][-1] == "done"
        assert world[t.sample_id]["location"] == "storage"

    first = trials[0]
    kind = KINDS[n]
    steps1 = store.steps(first.id)
    if point == "step_mid":
        cut = [s for s in steps1 if s.state == "interrupted"]
        assert len(cut) == 1 and cut[0].kind == kind
        if kind == "synthesize":
            assert first.state == "failed" and "consumed sample" in first.failure_reason
        else:  # transfers and measurements are simply run again
            assert first.state == "done"
            assert first.failure_reason is None  # done in the end: the crash is in the audit log, not its reason
            assert [s.index for s in steps1 if s.state == "done"] == [0, 1, 2, 3, 4]
    else:
        assert first.state == "done"
        assert [s.index for s in steps1] == [0, 1, 2, 3, 4], "a finished step ran again"
    store.close()


def test_labloop_resume_command_restarts_a_killed_campaign(tmp_path):
    from typer.testing import CliRunner

    from labloop.cli import app

    proc = crash_run(tmp_path, "step_end", 3)
    assert proc.returncode == 137
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    r = CliRunner().invoke(app, ["status", "--store", url])
    assert "state: running" in r.output  # what the store says; the process behind it is gone
    r = CliRunner().invoke(app, ["resume", "--store", url])
    assert r.exit_code == 0, r.output
    assert "restarting campaign" in r.output and "1 unfinished trial(s)" in r.output
    assert "stopped: budget spent: 3 trials" in r.output
    r = CliRunner().invoke(app, ["resume", "--store", url])
    assert r.exit_code == 2 and "has already ended" in r.output


def test_pause_resume_and_stop_commands_reach_a_running_campaign(tmp_path):
    from typer.testing import CliRunner

    from labloop.cli import app

    data = campaign(tmp_path)
    data["stopping"]["max_trials"] = 50
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data))
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "labloop", "run", str(path), "--store", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        import time

        store = Store(url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if store.trials(store.campaign().id):
                    break
            except Exception:  # noqa: BLE001 - the store is being created by the other process
                pass
            time.sleep(0.1)
        cli = CliRunner()
        r = cli.invoke(app, ["pause", "--store", url, "--user", "olga"])
        # the command returns with the runner's answer: the campaign is paused when it prints
        assert r.exit_code == 0 and "paused: steps running now finish" in r.output, r.output
        assert store.campaign().state == "paused"
        r = cli.invoke(app, ["resume", "--store", url, "--user", "olga"])
        assert r.exit_code == 0 and "resumed" in r.output, r.output
        r = cli.invoke(app, ["stop", "--store", url, "--user", "olga"])
        assert r.exit_code == 0 and "stopping: trials in flight finish" in r.output, r.output
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped: stopped by operator" in out
    c = store.campaign()
    assert c.state == "stopped"
    assert [
        (a.action, a.user) for a in store.audit_log(c.id) if a.action.startswith("request.") and a.user == "olga"
    ] == [("request.pause", "olga"), ("request.resume", "olga"), ("request.stop", "olga")]
    answers = [a.detail["action"] for a in store.audit_log(c.id) if a.action == "request.done"]
    assert answers == ["pause", "resume", "stop"]
    assert len(store.trials(c.id)) < 50
    store.close()


# -- the physical lab outlives the orchestrator: resume asks it where the samples are ---------------------------------
def bundled(tmp_path) -> dict:
    """The bundled campaign as a new user runs it (no state_file: the world is kept beside the store), shortened."""
    data = thinfilm(stopping={"max_trials": TRIALS, "target_reached": False})
    data["strategy"] = {"name": "random", "initial_design": 1}
    data["lab"]["time_scale"] = 3600.0
    data["lab"]["options"].update({"chamber_minutes": 18, "probe_minutes": 6, "robot_minutes": 6})
    return data


def kill_during_first_deposition(tmp_path) -> tuple[Store, object, object]:
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(bundled(tmp_path)))
    # 0.05 s into the first deposition (18 lab minutes, 0.3 s here); named by label, not "the second step started"
    env = {**os.environ, "LABLOOP_CRASH_AT": "step_mid:1@synthesize:chamber", "LABLOOP_CRASH_DELAY": "0.05"}
    proc = subprocess.run(
        [sys.executable, str(CRASHING), "run", str(path), "--store", f"sqlite:///{tmp_path / 'labloop.db'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 137, proc.stdout + proc.stderr
    store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
    c = store.campaign()
    [first] = [t for t in store.trials(c.id) if store.steps(t.id)]  # the others wait for the chamber
    assert [(s.kind, s.state) for s in store.steps(first.id)] == [("transfer", "done"), ("synthesize", "running")]
    return store, c, first


def resume_with_the_cli(tmp_path) -> str:
    from typer.testing import CliRunner

    from labloop.cli import app

    r = CliRunner().invoke(app, ["resume", "--store", f"sqlite:///{tmp_path / 'labloop.db'}"])
    assert r.exit_code == 0, r.output
    assert "stopped: budget spent" in r.output, r.output
    return r.output


def world_of(tmp_path) -> dict:
    return {r["id"]: r for r in json.loads((tmp_path / "thinfilm-nb-tio2.world.json").read_text())}


def test_killed_during_a_deposition_the_bundled_campaign_resumes_from_the_world_beside_the_store(tmp_path):
    store, c, first = kill_during_first_deposition(tmp_path)
    assert world_of(tmp_path)[first.sample_id]["location"] == "chamber"  # the lab kept its world on disk
    output = resume_with_the_cli(tmp_path)
    assert "taken out of service" not in output and "no 'chamber' station left" not in output
    audit = store.audit_log(c.id)
    assert not [a for a in audit if a.action == "station.quarantine"]
    assert not [a for a in audit if a.action == "sample.reconcile"]  # store and lab agreed
    trials = store.trials(c.id)
    assert sorted((t.id != first.id, t.state) for t in trials) == [(False, "failed")] + [(True, "done")] * (TRIALS - 1)
    assert "consumed sample" in store.trial(first.id).failure_reason
    world = world_of(tmp_path)
    assert all(world[t.sample_id]["location"] == "storage" for t in trials)
    assert store.campaign(c.id).state == "finished"
    store.close()


@pytest.mark.parametrize("who", ["store", "world"])
def test_resume_records_and_follows_the_lab_when_store_and_lab_disagree(tmp_path, who):
    store, c, first = kill_during_first_deposition(tmp_path)
    if who == "store":  # the store lost track: it says the sample never left the load lock
        store.locate_sample(c.id, first.sample_id, "load_lock", first.id)
        said, says = "load_lock", "chamber"
    else:  # someone took the half-coated sample out of the chamber by hand while labloop was down
        path = tmp_path / "thinfilm-nb-tio2.world.json"
        records = json.loads(path.read_text())
        for r in records:
            if r["id"] == first.sample_id:
                r["location"] = "storage"
        path.write_text(json.dumps(records))
        said, says = "chamber", "storage"
    resume_with_the_cli(tmp_path)
    audit = store.audit_log(c.id)
    entries = [a.detail for a in audit if a.action == "sample.reconcile"]
    assert [(e["sample"], e["store_said"], e["lab_says"]) for e in entries] == [(first.sample_id, said, says)]
    assert not [a for a in audit if a.action == "station.quarantine"]
    trials = store.trials(c.id)
    assert sorted((t.id != first.id, t.state) for t in trials) == [(False, "failed")] + [(True, "done")] * (TRIALS - 1)
    world = world_of(tmp_path)
    assert all(world[t.sample_id]["location"] == "storage" for t in trials)
    assert {s.sample_id: s.location for s in store.samples(c.id)}[first.sample_id] == "storage"
    store.close()


def test_a_sample_the_lab_cannot_locate_pauses_for_an_operator_who_is_told_where_to_look(tmp_path):
    from labloop.errors import LabloopError
    from labloop.run.recovery import plan_resumptions
    from labloop.spec import spec_from_text, spec_hash

    text = yaml.safe_dump(campaign(tmp_path))
    spec = spec_from_text(text, "campaign.yaml")
    store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
    c = store.create_campaign(spec.name, text, spec_hash(text))
    t = store.add_trial(c.id, {}, "random", {}, "ab12", state="running")
    store.locate_sample(c.id, t.sample_id, "load_lock", t.id)
    for index, label, kind, actor, to in [
        (0, "transfer:chamber", "transfer", "robot", "chamber"),
        (1, "synthesize:chamber", "synthesize", "chamber", None),
        (2, "transfer:probe", "transfer", "robot", "probe"),
    ]:
        step = store.start_step(t.id, index, label, kind, 1, actor)
        store.finish_step(step, "done", None, moved=(c.id, t.sample_id, to, t.id) if to else None)
    store.start_step(t.id, 3, "measure:probe", "measure", 1, "probe")  # killed while measuring
    stations, places = {"chamber", "probe"}, {"load_lock", "storage", "hotel"}

    def plan():
        return plan_resumptions(spec, store, c, "load_lock", stations, places, lambda sample: None)

    with pytest.raises(LabloopError) as err:
        plan()  # the store says the probe, and nothing in the lab can tell
    assert f"{err.value.problem}; {err.value.fix}" == (
        "sample ab12-0001: the store says 'probe', the lab cannot tell; look for it in probe or chamber, put it "
        "in storage, then run `labloop resume`"
    )
    after = store.campaign(c.id)
    assert after.state == "paused" and after.control == "pause" and after.note.startswith("sample ab12-0001")
    asked = [a.detail for a in store.audit_log(c.id) if a.action == "sample.unlocated"]
    assert asked == [
        {
            "sample": "ab12-0001",
            "trial": 1,
            "store_said": "probe",
            "lab_says": None,
            "look_in": ["probe", "chamber"],
            "put_in": "storage",
        }
    ]
    assert store.steps(t.id)[-1].state == "running"  # nothing was settled before the operator was asked

    # the operator put the sample in storage and ran `labloop resume`: the measurement is repeated from there
    [r] = plan()
    assert (r.start_step, r.location, r.held) == (2, "storage", None)  # transfer to the probe again, then measure
    assert {s.sample_id: s.location for s in store.samples(c.id)}["ab12-0001"] == "storage"
    [entry] = [a.detail for a in store.audit_log(c.id) if a.action == "sample.reconcile"]
    assert (entry["store_said"], entry["lab_says"], entry["now"]) == ("probe", None, "storage")
    assert "an operator put it in storage" in entry["note"]
    store.close()


def test_a_sample_in_the_gripper_continues_its_move_and_is_recorded(tmp_path):
    from labloop.run.recovery import plan_resumptions
    from labloop.spec import spec_from_text, spec_hash

    text = yaml.safe_dump(campaign(tmp_path))
    spec = spec_from_text(text, "campaign.yaml")
    store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
    c = store.create_campaign(spec.name, text, spec_hash(text))
    t = store.add_trial(c.id, {}, "random", {}, "ab12", state="running")
    store.locate_sample(c.id, t.sample_id, "chamber", t.id)
    for index, label, kind, actor in [
        (0, "transfer:chamber", "transfer", "robot"),
        (1, "synthesize:chamber", "synthesize", "chamber"),
    ]:
        store.finish_step(store.start_step(t.id, index, label, kind, 1, actor), "done")
    store.start_step(t.id, 2, "transfer:probe", "transfer", 1, "robot")  # killed with the sample in the gripper
    [r] = plan_resumptions(
        spec, store, c, "load_lock", {"chamber", "probe"}, {"load_lock", "storage"}, lambda sample: "robot"
    )
    assert (r.start_step, r.location, r.held) == (2, "chamber", "chamber")  # the move is run again, from the gripper
    [entry] = [a.detail for a in store.audit_log(c.id) if a.action == "sample.reconcile"]
    assert (entry["store_said"], entry["lab_says"], entry["now"]) == ("chamber", "robot", "chamber")
    store.close()


def test_a_move_cut_short_on_its_way_into_a_station_goes_before_any_other_trial_moves(tmp_path):
    """A station without a sensor cannot say the cut-short move finished; were another trial to move into that
    station first, the two samples would collide (found by the solid-state kill test: trial 4 dosed into a
    dispenser trial 3's crucible already sat in). The cut move is run again first; trials that had not started
    wait for it, and a trial whose sample sits elsewhere is not held back by its own move."""
    from labloop.run.recovery import plan_resumptions
    from labloop.spec import spec_from_text, spec_hash

    text = yaml.safe_dump(campaign(tmp_path))
    spec = spec_from_text(text, "campaign.yaml")
    store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
    c = store.create_campaign(spec.name, text, spec_hash(text))
    cut = store.add_trial(c.id, {}, "random", {}, "ab12", state="running")
    store.locate_sample(c.id, cut.sample_id, "load_lock", cut.id)
    store.start_step(cut.id, 0, "transfer:chamber", "transfer", 1, "robot")  # killed on its way into the chamber
    store.add_trial(c.id, {}, "random", {}, "ab12", state="proposed")  # never started
    measured = store.add_trial(c.id, {}, "random", {}, "ab12", state="running")
    store.locate_sample(c.id, measured.sample_id, "load_lock", measured.id)
    for index, label, kind, actor, to in [
        (0, "transfer:chamber", "transfer", "robot", "chamber"),
        (1, "synthesize:chamber", "synthesize", "chamber", None),
        (2, "transfer:probe", "transfer", "robot", "probe"),
    ]:
        step = store.start_step(measured.id, index, label, kind, 1, actor)
        store.finish_step(step, "done", None, moved=(c.id, measured.sample_id, to, measured.id) if to else None)
    probe_sees = {measured.sample_id: "probe"}  # the probe's sensor; the chamber has none
    plans = plan_resumptions(
        spec, store, c, "load_lock", {"chamber", "probe"}, {"load_lock", "storage"}, probe_sees.get
    )
    by_trial = {r.trial.number: r for r in plans}
    assert (by_trial[1].start_step, by_trial[1].location, by_trial[1].in_gripper) == (0, "load_lock", True)
    assert (by_trial[2].start_step, by_trial[2].in_gripper) == (0, False)  # never started: waits for trial 1's move
    assert (by_trial[3].start_step, by_trial[3].held, by_trial[3].in_gripper) == (3, "probe", False)
    assert [s.state for s in store.steps(cut.id)] == ["interrupted"]
    store.close()


def test_when_the_lab_lost_its_world_resume_asks_an_operator_and_the_next_resume_continues(tmp_path):
    from typer.testing import CliRunner

    from labloop.cli import app

    store, c, first = kill_during_first_deposition(tmp_path)
    (tmp_path / "thinfilm-nb-tio2.world.json").unlink()  # nothing in the lab can tell where the sample is now
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    r = CliRunner().invoke(app, ["resume", "--store", url])
    assert r.exit_code == 2, r.output
    out = " ".join(r.output.split())
    assert (
        f"error: sample {first.sample_id}: the store says 'chamber', the lab cannot tell fix: look for it in "
        f"chamber or load_lock, put it in storage, then run `labloop resume --store {url}`"
    ) in out  # as given
    assert "Traceback" not in r.output
    assert store.campaign(c.id).state == "paused"
    # the operator found the sample, put it in storage, and resumes: the campaign finishes without quarantine
    resume_with_the_cli(tmp_path)
    audit = store.audit_log(c.id)
    assert [a.detail["sample"] for a in audit if a.action == "sample.unlocated"] == [first.sample_id]
    assert [(a.detail["store_said"], a.detail["now"]) for a in audit if a.action == "sample.reconcile"] == [
        ("chamber", "storage")
    ]
    assert not [a for a in audit if a.action == "station.quarantine"]
    assert store.campaign(c.id).state == "finished"
    assert sorted(t.state for t in store.trials(c.id)) == ["done"] * (TRIALS - 1) + ["failed"]
    store.close()
