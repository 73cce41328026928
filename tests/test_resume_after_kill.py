"""Crash the campaign process without any cleanup (``os._exit``, what ``kill -9`` does) at every step boundary
and in the middle of every step kind, then resume: no measured result is lost, no trial appears twice, no sample
is deposited twice, and the interrupted step is handled by its kind's resume policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from labloop.run.campaign import CampaignRunner
from labloop.run.objectives import SheetResistance, TrialData
from labloop.store import Store

from campaign_files import thinfilm

TRIALS = 3
# Sequential mode makes the n-th step executed the (n-1)-th workflow step of trial 1: 1..5 are
# transfer -> synthesize -> transfer -> measure -> transfer.
KINDS = {1: "transfer", 2: "synthesize", 3: "transfer", 4: "measure", 5: "transfer"}


def campaign(tmp_path) -> dict:
    data = thinfilm(stopping={"max_trials": TRIALS, "target_reached": False})
    data["strategy"] = {"name": "random", "initial_design": 1}
    data["scheduling"] = {"mode": "sequential"}
    data["lab"] = {"simulator": "thinfilm", "time_scale": 3600.0,
                   "options": {"chamber_minutes": 18, "probe_minutes": 6, "robot_minutes": 6,
                               "state_file": str(tmp_path / "world.json")}}
    return data


def crash_run(tmp_path, point: str, n: int) -> subprocess.CompletedProcess:
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(campaign(tmp_path)))
    env = {**os.environ, "LABLOOP_CRASH_AT": f"{point}:{n}", "LABLOOP_CRASH_DELAY": "0.05"}
    return subprocess.run([sys.executable, "-m", "labloop", "run", str(path), "--store",
                           f"sqlite:///{tmp_path / 'labloop.db'}"], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("point, n", [("step_end", k) for k in range(1, 6)]
                         + [("step_mid", 1), ("step_mid", 2), ("step_mid", 4)])
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
                sheet(TrialData(t.params, store.documents(trial_id=t.id))))
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
    proc = subprocess.Popen([sys.executable, "-m", "labloop", "run", str(path), "--store", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
    assert [(a.action, a.user) for a in store.audit_log(c.id) if a.action.startswith("request.")
            and a.user == "olga"] == [("request.pause", "olga"), ("request.resume", "olga"), ("request.stop", "olga")]
    answers = [a.detail["action"] for a in store.audit_log(c.id) if a.action == "request.done"]
    assert answers == ["pause", "resume", "stop"]
    assert len(store.trials(c.id)) < 50
    store.close()
