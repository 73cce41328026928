"""The scheduler on a simulated lab with two deposition chambers, a probe and one robot: stations work in parallel,
the robot does one move at a time, failures are retried and bad stations quarantined, and operators stay in
control (pause, resume, stop, emergency stop, approval, suspenders)."""

from __future__ import annotations

import time
from datetime import UTC

import pytest
import yaml
from campaign_files import thinfilm
from running import TS, in_background, intervals, start, two_chamber, wait_for

from labloop.errors import SpecError
from labloop.run.campaign import CampaignRunner, prepare_text


def test_two_chambers_deposit_in_parallel_and_the_robot_moves_one_sample_at_a_time(tmp_path):
    data = two_chamber(max_trials=6)
    data["lab"]["time_scale"] = 3600.0  # one-second depositions: overlap does not hinge on a busy CI machine
    store, runner = start(data, tmp_path)
    decision = runner.run()
    cid = runner.campaign.id
    assert decision.rule == "budget"
    trials = store.trials(cid)
    assert [t.state for t in trials] == ["done"] * 6
    deps = intervals(store, cid, "synthesize")
    assert {s.device for _, _, s in deps} == {"chamber1", "chamber2"}
    one = [(a, b) for a, b, s in deps if s.device == "chamber1"]
    two = [(a, b) for a, b, s in deps if s.device == "chamber2"]
    overlapping = [(a, b) for a, b in two if any(a < d and c < b for c, d in one)]
    assert len(overlapping) >= 2, "the two chambers should deposit at the same time"
    moves = intervals(store, cid, "transfer")
    assert len(moves) == 6 * 3
    for (_a0, a1, _), (b0, _b1, _) in zip(moves, moves[1:]):
        assert b0 >= a1 - 1e-3, "two robot moves overlapped"
    assert {s.location for s in store.samples(cid)} == {"storage"}
    # each run is tagged with campaign, trial and sample ids
    starts = [d for n, d in store.documents(trial_id=trials[0].id) if n == "start"]
    assert len(starts) == 5 and all(d["sample_id"] == trials[0].sample_id and d["trial"] == 1 for d in starts)
    store.close()


def test_batch_mode_waits_for_the_whole_batch(tmp_path):
    data = two_chamber(max_trials=4, scheduling={"mode": "batch"})
    data["strategy"]["batch_size"] = 2
    store, runner = start(data, tmp_path)
    runner.run()
    trials = store.trials(runner.campaign.id)
    assert [t.state for t in trials] == ["done"] * 4
    first_batch_end = max(t.finished_at for t in trials[:2])
    assert all(t.proposed_at >= first_batch_end for t in trials[2:])
    store.close()


def test_failed_measurements_are_retried_with_backoff(tmp_path):
    data = two_chamber(max_trials=6, options={"probe_fault_rate": 0.5})
    data["workflow"][3]["retries"] = 2
    data["workflow"][3]["retry_backoff"] = 30
    data["scheduling"] = {"quarantine_after": 4}
    store, runner = start(data, tmp_path)
    runner.run()
    cid = runner.campaign.id
    measures = [s for s in store.steps(campaign_id=cid) if s.kind == "measure"]
    assert any(s.attempt > 1 for s in measures), "seeded faults at 50 % must cause a retry"
    retried = [s for s in measures if s.state == "failed"]
    assert retried and all(s.error for s in retried)
    assert any(a.action == "step.retry" for a in store.audit_log(cid))
    for t in store.trials(cid):
        ok = [s for s in store.steps(t.id) if s.kind == "measure" and s.state == "done"]
        assert (t.state == "done") == bool(ok)
        if t.state == "failed":
            assert t.failure_reason.startswith("measure:probe:")
    store.close()


def test_a_dead_chamber_is_quarantined_and_the_campaign_goes_on(tmp_path):
    data = two_chamber(max_trials=6, options={"dead_after": 1}, scheduling={"quarantine_after": 2})
    alerts = []
    store, runner = start(data, tmp_path, lambda kind, d: alerts.append(d) if kind == "alert" else None)
    decision = runner.run()
    cid = runner.campaign.id
    assert decision.rule == "budget"
    trials = store.trials(cid)
    failed = [t for t in trials if t.state == "failed"]
    assert len(failed) == 2 and all("RF generator reports no forward power" in t.failure_reason for t in failed)
    assert sum(t.state == "done" for t in trials) == 4
    deps = intervals(store, cid, "synthesize")
    assert [s.device for _, _, s in deps if s.state == "failed"] == ["chamber1", "chamber1"]
    # after its second failure the dead chamber gets nothing more (chamber2 may already have done the rest: its
    # depositions are short at this time scale, so "the last one is on chamber2" would depend on timing)
    quarantined_at = max(end for _, end, s in deps if s.state == "failed")
    assert all(s.device == "chamber2" for start, _, s in deps if start >= quarantined_at)
    assert any(
        "chamber1 taken out of service: quarantined after 2 consecutive failures" in a["message"] for a in alerts
    )
    assert [a.detail["device"] for a in store.audit_log(cid) if a.action == "station.quarantine"] == ["chamber1"]
    # the failed samples were taken out of the dead chamber, so it does not hold a sample hostage
    assert {s.location for s in store.samples(cid)} == {"storage"}
    store.close()


@pytest.mark.parametrize("max_trials", [6, 2])  # 2: the queued proposal spends the budget; it must pause too
def test_no_station_left_pauses_with_a_clear_message_and_stop_ends_it(tmp_path, max_trials):
    data = two_chamber(
        max_trials=max_trials, options={"dead_after": 0, "chambers": 1}, scheduling={"quarantine_after": 1}
    )
    data["lab"]["stations"] = {"deposition": ["chamber"]}
    store, runner = start(data, tmp_path)
    th, result = in_background(runner)
    cid = runner.campaign.id
    wait_for(lambda: store.campaign(cid).state == "paused")
    c = store.campaign(cid)
    assert "no 'deposition' station left in service" in c.note and "labloop resume" in c.note
    store.request(cid, "stop", user="alice")
    th.join(20)
    assert not th.is_alive()
    assert result["decision"].rule == "operator"
    c = store.campaign(cid)
    assert c.state == "stopped"
    states = [t.state for t in store.trials(cid)]
    # one trial reached the dead chamber and failed; the queued one was cancelled: nothing is left in flight
    assert sorted(states) == ["cancelled", "failed"], states
    store.close()


def test_pause_starts_nothing_new_and_resume_continues(tmp_path):
    store, runner = start(two_chamber(max_trials=6), tmp_path)
    th, result = in_background(runner)
    cid = runner.campaign.id
    wait_for(lambda: len(store.trials(cid)) >= 2)
    store.request(cid, "pause", user="bob")
    wait_for(lambda: store.campaign(cid).state == "paused")
    paused_at = time.time()
    # finish the steps in flight, start nothing new
    wait_for(lambda: all(t.state in ("done", "failed", "running", "proposed") for t in store.trials(cid)))
    n_before = len(store.trials(cid))
    time.sleep(0.5)
    assert len(store.trials(cid)) == n_before
    running = [
        s for s in store.steps(campaign_id=cid) if s.started_at.replace(tzinfo=UTC).timestamp() > paused_at + 0.1
    ]
    assert running == [], "a step started while paused"
    store.request(cid, "resume", user="bob")
    th.join(30)
    assert result["decision"].rule == "budget"
    assert [t.state for t in store.trials(cid)] == ["done"] * 6
    actions = [
        (a.action, a.user, a.detail.get("action")) for a in store.audit_log(cid) if a.action.startswith("request.")
    ]
    assert actions == [
        ("request.pause", "bob", None),
        ("request.done", "labloop", "pause"),
        ("request.resume", "bob", None),
        ("request.done", "labloop", "resume"),
    ]
    store.close()


def test_emergency_stop_halts_devices_and_resume_settles_the_interrupted_trials(tmp_path):
    # the simulated world persists in a file, as a real lab's samples stay where they are when software stops
    data = two_chamber(max_trials=4, options={"state_file": str(tmp_path / "world.json")})
    data["lab"]["time_scale"] = 3600.0  # a deposition takes one second: estop lands mid-deposition
    store, runner = start(data, tmp_path)
    th, result = in_background(runner)
    cid = runner.campaign.id
    wait_for(lambda: any(s.kind == "synthesize" and s.state == "running" for s in store.steps(campaign_id=cid)))
    store.request(cid, "estop", user="carol")
    th.join(60)
    assert not th.is_alive(), "the emergency stop did not end the campaign"
    assert result["decision"].rule == "estop"
    assert store.campaign(cid).state == "estopped"
    interrupted = [t for t in store.trials(cid) if t.state == "interrupted"]
    assert interrupted
    # resume: an interrupted deposition consumed its sample -> failed, never deposited again
    runner2, resumptions = CampaignRunner.resume(store, store.campaign(cid), time_scale=TS)
    decision = runner2.run(resumptions)
    assert decision.rule == "budget"
    trials = store.trials(cid)
    assert all(t.state in ("done", "failed") for t in trials) and len(trials) == 4
    for t in trials:
        synth = [s for s in store.steps(t.id) if s.kind == "synthesize"]
        assert len(synth) <= 1
        if synth and synth[0].state != "done":
            assert t.state == "failed" and "consumed sample" in t.failure_reason
    store.close()


def test_approval_mode_waits_for_operators_and_records_who_decided(tmp_path):
    data = two_chamber(max_trials=3, scheduling={"approval": True})
    store, runner = start(data, tmp_path)
    th, result = in_background(runner)
    cid = runner.campaign.id
    wait_for(lambda: len(store.trials(cid)) >= 2)
    time.sleep(0.3)
    assert all(t.state == "proposed" for t in store.trials(cid)), "nothing runs before approval"
    assert store.steps(campaign_id=cid) == []
    first, second = store.trials(cid)[:2]
    from typer.testing import CliRunner

    from labloop.cli import app

    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    cli = CliRunner()
    r = cli.invoke(
        app, ["reject", str(second.number), "--reason", "too hot for this substrate", "--store", url, "--user", "dana"]
    )
    assert r.exit_code == 0, r.output
    r = cli.invoke(app, ["approve", str(first.number), "--store", url, "--user", "erin"])
    assert r.exit_code == 0, r.output
    r = cli.invoke(app, ["approve", str(first.number), "--store", url])
    assert r.exit_code == 2 and "not waiting for approval" in r.output

    def approve_rest():
        waiting = [t.number for t in store.trials(cid) if t.state == "proposed"]
        if waiting and not store.pending_requests(cid):
            store.request(cid, "approve", {"trials": waiting}, user="erin")
        return result.get("decision") is not None

    wait_for(approve_rest, timeout=30)
    th.join(10)
    trials = store.trials(cid)
    assert trials[1].state == "rejected" and trials[1].failure_reason == "rejected by dana: too hot for this substrate"
    assert trials[0].state == "done"
    log = [(a.action, a.user, a.detail.get("trial")) for a in store.audit_log(cid) if a.action.startswith("trial.")]
    assert ("trial.reject", "dana", second.number) in log and ("trial.approve", "erin", first.number) in log
    store.close()


def test_a_suspender_pauses_a_run_while_its_signal_is_out_of_band(tmp_path):
    data = two_chamber(max_trials=2)
    data["scheduling"] = {"mode": "sequential"}
    data["lab"]["suspenders"] = [{"signal": "probe.voltage", "high": 5.0, "resume_after": 0}]
    store, runner = start(data, tmp_path)
    probe = runner.p.lab.devices["probe"]
    probe.voltage.put(50.0)  # an interlock reading out of band before the campaign starts
    th, result = in_background(runner)
    cid = runner.campaign.id
    wait_for(lambda: len(store.steps(campaign_id=cid)) >= 1)
    time.sleep(0.6)
    steps = store.steps(campaign_id=cid)
    assert len(steps) == 1 and steps[0].state == "running", "the first run must be suspended"
    released = time.time()
    probe.voltage.put(0.0)
    th.join(30)
    assert result["decision"].rule == "budget"
    first = store.steps(campaign_id=cid)[0]
    assert first.state == "done"
    assert first.finished_at.replace(tzinfo=UTC).timestamp() >= released - 0.05
    store.close()


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"workflow": [{"kind": "transfer", "to": "deposition"}, {"kind": "synthesize", "device": "furnace"}]},
            "workflow[1].device: the lab has no device or station kind 'furnace'",
        ),
        (
            {
                "workflow": [
                    {"kind": "transfer", "to": "deposition"},
                    {"kind": "synthesize", "device": "deposition"},
                    {"kind": "transfer", "to": "probe"},
                    {"kind": "measure", "device": "probe"},
                    {"kind": "transfer", "to": "deposition"},
                    {"kind": "synthesize", "device": "deposition"},
                ]
            },
            "workflow[4].to: the workflow returns to 'deposition' (already used at step 0): a cycle can deadlock",
        ),
        ({"workflow": [{"kind": "transfer", "to": "attic"}]}, "workflow[0].to: robot 'robot' cannot reach 'attic'"),
        (
            {
                "scheduling": {"quarantine_after": 3},
                "workflow": [
                    {"kind": "transfer", "to": "deposition"},
                    {"kind": "synthesize", "device": "deposition"},
                    {"kind": "transfer", "to": "probe"},
                    {"kind": "measure", "device": "probe", "retries": 2},
                ],
            },
            "workflow[3].retries (2) + 1 attempt must stay below scheduling.quarantine_after (3)",
        ),
        (
            {"workflow": [{"kind": "synthesize", "device": "deposition", "retries": 1}]},
            "a synthesize that failed has consumed its sample: retries would process it again",
        ),
        (
            {"lab": {"simulator": "thinfilm", "suspenders": [{"signal": "probe.volts", "high": 1}]}},
            "lab.suspenders[0].signal: device 'probe' has no signal 'volts'",
        ),
        (
            {"workflow": [{"kind": "synthesize", "device": "deposition", "on_resume": "rerun"}]},
            "on_resume 'rerun' would process it twice",
        ),
    ],
)
def test_bad_workflows_are_rejected_at_validation(change, message):
    data = two_chamber()
    data.update(change)
    with pytest.raises(SpecError) as e:
        prepare_text(yaml.safe_dump(data), "lab.yaml")
    assert message in str(e.value)
    assert "lab.yaml" in str(e.value)


def test_stations_naming_unknown_devices_are_rejected():
    data = two_chamber()
    data["lab"]["stations"]["deposition"].append("chamber9")
    with pytest.raises(SpecError, match="lab.stations.deposition: the lab has no device 'chamber9'"):
        prepare_text(yaml.safe_dump(data), "lab.yaml")


def test_the_docs_lab_example_validates():
    """The parallel-lab campaign fragment of docs/operate/long-runs.md (once README's) is a working campaign section,
    not prose."""
    from campaign_files import REPO

    text = (REPO / "docs" / "operate" / "long-runs.md").read_text()
    block = text.split("A campaign declares which devices are interchangeable")[1].split("```yaml")[1].split("```")[0]
    fragment = yaml.safe_load(block)
    data = thinfilm()
    data.update(fragment)
    data["lab"]["options"].pop("state_file")
    p = prepare_text(yaml.safe_dump(data), "long-runs.md")
    assert p.spec.lab.stations == {"deposition": ["chamber1", "chamber2"]}
    assert p.spec.workflow[3].retries == 2 and p.spec.scheduling.mode == "async"


def test_a_stopping_rule_ends_a_paused_campaign(tmp_path):
    """Paused past its time limit, the campaign still ends: in-flight trials finish, queued ones are cancelled."""
    data = two_chamber(max_trials=20)
    data["stopping"]["max_wall_time"] = 2.0
    store, runner = start(data, tmp_path)
    th, result = in_background(runner)
    cid = runner.campaign.id
    wait_for(lambda: any(t.state == "running" for t in store.trials(cid)))
    store.request(cid, "pause", user="bob")
    th.join(30)
    assert not th.is_alive()
    assert result["decision"].rule == "time"
    assert {t.state for t in store.trials(cid)} <= {"done", "failed", "cancelled"}
    store.close()


def test_emergency_stop_ends_a_run_held_by_a_suspender(tmp_path):
    data = two_chamber(max_trials=2, scheduling={"mode": "sequential"})
    data["lab"]["suspenders"] = [{"signal": "probe.voltage", "high": 5.0, "resume_after": 0}]
    store, runner = start(data, tmp_path)
    runner.p.lab.devices["probe"].voltage.put(50.0)
    th, result = in_background(runner)
    cid = runner.campaign.id
    wait_for(lambda: len(store.steps(campaign_id=cid)) >= 1)
    time.sleep(0.3)
    store.request(cid, "estop", user="carol")
    th.join(10)
    assert not th.is_alive()
    assert result["decision"].rule == "estop"
    assert [t.state for t in store.trials(cid)] == ["interrupted"]
    store.close()


def test_requests_are_answered_while_the_control_thread_is_busy(tmp_path, monkeypatch):
    """The runner's request thread answers a pause and an emergency stop while the control thread is stuck in
    its own work (here: a stopping rule that does not return until the test lets it)."""
    import threading

    from labloop.run import scheduler as sched

    busy, release = threading.Event(), threading.Event()
    real_check = sched.check

    def slow_check(spec, trials, started):
        if len(trials) >= 2 and not release.is_set():
            busy.set()
            release.wait(60)
        return real_check(spec, trials, started)

    monkeypatch.setattr(sched, "check", slow_check)
    store, runner = start(two_chamber(max_trials=50), tmp_path)
    th, result = in_background(runner)
    cid = runner.campaign.id
    try:
        assert busy.wait(60)
        pause = store.request(cid, "pause", user="bob")
        wait_for(lambda: store.operator_request(pause).state != "pending")
        assert busy.is_set() and not release.is_set()  # answered while the control thread was still held
        assert (store.operator_request(pause).state, store.campaign(cid).state) == ("done", "paused")
        estop = store.request(cid, "estop", user="carol")
        wait_for(lambda: store.operator_request(estop).state != "pending")
        assert store.operator_request(estop).state == "done"
        assert store.campaign(cid).state == "estopped"
    finally:
        release.set()
        th.join(30)
    assert result["decision"].rule == "estop"
    store.close()
