"""Batch stations in the trial walk (issue 24 item 3): trials that share a furnace profile are fired together in one
run of the thin-film lab's anneal furnace (``lab.options.furnace_slots``), others apart, and a part-full furnace
fires when no trial in flight could join it. Also the pieces under it: a batch station held by several trials of
one batch (LabResources), and moves that keep a slotted station's ``samples`` list.

Every assertion is on what the store and the simulated devices recorded (runs, step rows, the run's start
document), never on a duration. The campaign's keys are fixed by a strategy plugin below, so which trials can share
a firing is known in advance."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from running import TS, two_chamber

from labloop.run.campaign import CampaignRunner, prepare_text
from labloop.run.resources import Cancelled, LabResources
from labloop.store import Store
from labloop.strategy import Proposal, RandomStrategy

BOUND = 30.0  # seconds: only a hung test reaches it


# ------------------------------------------------------------------ resources
def _res(capacity: int = 2) -> LabResources:
    return LabResources({"furnace": ["f1", "f2"]}, quarantine_after=3, capacity={"furnace": capacity})


def test_a_batch_station_is_held_by_the_members_of_one_batch_up_to_its_capacity():
    res = _res(2)
    assert res.reserve("furnace", 1, batch="A") == "f1"
    assert res.reserve("furnace", 2, batch="A") == "f1"  # the batch's own station, not the empty f2
    assert res.reserve("furnace", 3, batch="B") == "f2"  # another batch never shares a firing
    assert res.free("furnace") == []
    assert res.stations["f1"].holders == {1, 2} and res.stations["f1"].batch == "A"
    res.release("f1", 1)
    assert res.free("furnace") == []  # trial 2's sample is still in it
    res.release("f1", 2)
    assert res.free("furnace") == ["f1"] and res.stations["f1"].batch is None


def test_a_full_batch_station_and_one_of_another_batch_make_a_trial_wait():
    res = _res(2)
    res.reserve("furnace", 1, batch="A")
    res.reserve("furnace", 2, batch="A")
    res.reserve("furnace", 3, batch="B")
    got: list[Any] = []
    th = threading.Thread(target=lambda: got.append(res.reserve("furnace", 4, batch="C")), daemon=True)
    th.start()
    th.join(0.2)  # not a timing assertion: it must still be waiting, whatever the delay
    assert got == []
    res.release("f2", 3)
    th.join(BOUND)
    assert got == ["f2"]
    with pytest.raises(Cancelled):
        res.cancel_trial(5)
        res.reserve("furnace", 5, batch="A")  # f1 is full (2 of 2): waits, and is cancelled


def test_a_station_of_capacity_one_keeps_one_holder_even_when_asked_with_a_batch():
    res = LabResources({"furnace": ["f1"]}, quarantine_after=3)
    res.reserve("furnace", 1, batch="A")
    res.cancel_trial(2)
    with pytest.raises(Cancelled):
        res.reserve("furnace", 2, batch="A")
    assert res.stations["f1"].holder == 1 and res.stations["f1"].holders == set()


def test_claims_on_resume_put_the_samples_of_a_batch_back_together():
    res = _res(2)
    res.claim("f1", 1)
    res.claim("f1", 2)
    assert res.stations["f1"].holders == {1, 2}
    with pytest.raises(RuntimeError, match="capacity"):
        res.claim("f1", 3)


# ------------------------------------------------------------------ a campaign
class AnnealSequence:
    """Random recipes, except anneal_c: the n-th proposal gets ANNEAL[n] (so which trials may share a firing is
    fixed by the test)."""

    ANNEAL = [400, 400, 300, 300]

    def __init__(self, spec: Any, candidates: Any = None, **kw: Any):
        self.inner = RandomStrategy(spec, candidates)
        self.given = 0

    def ask(self, n: int, observations: list, pending: list) -> list:
        out = []
        for p in self.inner.ask(n, observations, pending):
            out.append(Proposal({**p.params, "anneal_c": self.ANNEAL[self.given % len(self.ANNEAL)]}, p.source))
            self.given += 1
        return out


def furnace_campaign(slots: int = 2, capacity: int = 2, trials: int = 3) -> dict:
    data = two_chamber(max_trials=trials, options={"furnace_slots": slots, "furnace_minutes": 60})
    data["strategy"] = {"name": "test_batch_walk:AnnealSequence", "initial_design": 1}
    data["parameters"].append(
        {"name": "anneal_c", "type": "discrete", "values": [300, 400], "setpoint": "furnace.anneal_c"}
    )
    data["workflow"] = [
        {"kind": "transfer", "to": "deposition"},
        {"kind": "synthesize", "device": "deposition"},
        {"kind": "transfer", "to": "furnace"},
        {"kind": "synthesize", "device": "furnace"},
        {"kind": "transfer", "to": "probe"},
        {"kind": "measure", "device": "probe"},
        {"kind": "transfer", "to": "storage"},
    ]
    # 1000 lab days: a batch never fires by waiting in these tests, only when full or when nobody could join
    data["lab"]["batching"] = {"furnace": {"capacity": capacity, "batch_key": ["anneal_c"], "max_wait_s": 8.64e7}}
    return data


def run_campaign(data: dict, tmp_path) -> tuple[Store, Any, CampaignRunner]:
    import yaml

    store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
    runner = CampaignRunner.start(prepare_text(yaml.safe_dump(data), "test.yaml"), store)
    done: dict[str, Any] = {}
    th = threading.Thread(target=lambda: done.setdefault("decision", runner.run()), daemon=True)
    th.start()
    th.join(120)
    assert "decision" in done, "the campaign did not end"
    return store, store.campaign(), runner


def furnace_rows(store: Store, cid: int) -> dict[int, Any]:
    """trial number -> its synthesize step row on the furnace"""
    number = {t.id: t.number for t in store.trials(cid)}
    rows = [s for s in store.steps(campaign_id=cid) if s.kind == "synthesize" and s.device == "furnace"]
    assert len(rows) == len({s.trial_id for s in rows}), "one furnace row per trial"
    return {number[s.trial_id]: s for s in rows}


def start_md(store: Store, run_uid: str) -> dict[str, Any]:
    [start] = [doc for name, doc in store.documents(run_uid=run_uid) if name == "start"]
    return start


def test_compatible_trials_fire_together_and_an_incompatible_one_fires_alone_part_full(tmp_path):
    store, c, runner = run_campaign(furnace_campaign(), tmp_path)
    trials = {t.number: t for t in store.trials(c.id)}
    assert {n: t.state for n, t in trials.items()} == {1: "done", 2: "done", 3: "done"}
    assert {n: t.params["anneal_c"] for n, t in trials.items()} == {1: 400, 2: 400, 3: 300}

    rows = furnace_rows(store, c.id)
    assert all(r.state == "done" and r.run_uid for r in rows.values())
    # trials 1 and 2 (one profile) point to ONE run of the furnace; without the batch walk each has its own
    assert rows[1].run_uid == rows[2].run_uid != rows[3].run_uid
    shared = start_md(store, rows[1].run_uid)
    assert shared["recipe"]["anneal_c"] == 400
    assert sorted(shared["recipe"]["samples"]) == sorted([trials[1].sample_id, trials[2].sample_id])
    assert shared["batch"]["batch"] == shared["recipe"]["batch"]
    assert sorted(shared["batch"]["trials"]) == sorted([trials[1].id, trials[2].id])
    assert shared["batch"]["fired_because"] == "full"
    alone = start_md(store, rows[3].run_uid)
    assert alone["recipe"]["samples"] == [trials[3].sample_id] and alone["recipe"]["anneal_c"] == 300
    # part-full (1 of 2): no trial in flight had its profile, so it did not wait for company
    assert alone["batch"]["fired_because"] == "no_company"

    furnace = runner.p.lab.devices["furnace"]
    assert [sorted(f["samples"]) for f in furnace.firings] == [
        sorted([trials[1].sample_id, trials[2].sample_id]),
        [trials[3].sample_id],
    ]
    store.close()


def test_a_furnace_of_capacity_one_fires_every_trial_alone(tmp_path):
    """The same campaign with capacity 1: the walk of a plain station, one firing per trial."""
    store, c, runner = run_campaign(furnace_campaign(capacity=1), tmp_path)
    rows = furnace_rows(store, c.id)
    assert len({r.run_uid for r in rows.values()}) == 3
    assert [len(f["samples"]) for f in runner.p.lab.devices["furnace"].firings] == [1, 1, 1]
    store.close()


def test_a_batch_station_that_holds_one_sample_or_takes_unshared_fields_is_refused_at_validation(tmp_path):
    from campaign_files import write
    from typer.testing import CliRunner

    from labloop.cli import app

    data = two_chamber()
    data["lab"]["batching"] = {"deposition": {"capacity": 2}}
    r = CliRunner().invoke(app, ["validate", str(write(tmp_path, data))], catch_exceptions=False)
    assert r.exit_code == 2, r.output
    assert "lab.batching.deposition: capacity 2" in r.output and "no `samples` signal" in r.output
    r = CliRunner().invoke(app, ["validate", str(write(tmp_path, furnace_campaign()))], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    data = furnace_campaign()
    data["lab"]["batching"]["furnace"]["batch_key"] = []  # anneal_c goes to the furnace, yet members may differ
    r = CliRunner().invoke(app, ["validate", str(write(tmp_path, data))], catch_exceptions=False)
    assert r.exit_code == 2 and "parameters ['anneal_c'] are sent to 'furnace' but are not in its batch_key" in r.output


assert TS > 0  # the lab runs 36000x faster than real time (tests/running.py): an hour's firing is 0.1 s


# ------------------------------------------------------------------ a crash mid-firing
def test_killed_while_the_furnace_fires_a_batch_resume_fails_every_member(tmp_path):
    """kill -9 while the furnace fires trials 1 and 2 together: both members' step rows were committed running
    before the firing, so resume applies synthesize's resume_policy (fail: the samples are consumed) to each; their
    samples are taken out, unannealed, and the campaign goes on (trial 3, cut short in its own deposition, fails by
    the same policy; trial 4 finishes)."""
    import json
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from running import wait_for
    from typer.testing import CliRunner

    from labloop.cli import app

    data = furnace_campaign(trials=4)
    data["lab"]["options"]["furnace_minutes"] = 600  # a long firing (1 s real): the kill lands inside it
    data["lab"]["options"]["state_file"] = str(tmp_path / "world.json")
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data))
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "labloop", "run", str(path), "--store", url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = Store(url)
    try:

        def firing() -> bool:
            assert proc.poll() is None, "the campaign ended before the furnace fired"
            c = store.campaign() if store.campaigns() else None
            rows = [] if c is None else list(furnace_rows(store, c.id).values())
            return len(rows) == 2 and all(r.state == "running" for r in rows)

        wait_for(firing, timeout=120, step=0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(BOUND)
    finally:
        if proc.poll() is None:
            proc.kill()
    c = store.campaign()
    r = CliRunner().invoke(app, ["resume", "--store", url])
    assert r.exit_code == 0, r.output
    trials = {t.number: t for t in store.trials(c.id)}
    assert trials[1].state == trials[2].state == "failed" and trials[4].state == "done"
    for n in (1, 2):
        assert "synthesize:furnace" in trials[n].failure_reason and "consumed sample" in trials[n].failure_reason
    rows = furnace_rows(store, c.id)
    assert rows[1].state == rows[2].state == "interrupted" and rows[4].state == "done"
    assert rows[1].run_uid is None or rows[1].run_uid != rows[4].run_uid
    world = {rec["id"]: rec for rec in json.loads((tmp_path / "world.json").read_text())}
    assert all(world[t.sample_id]["location"] == "storage" for t in trials.values())
    annealed = {n: world[t.sample_id]["properties"].get("anneal_c") for n, t in trials.items()}
    assert annealed[1] is None and annealed[2] is None  # cut short, never fired again after the crash
    assert annealed[4] == 300
    store.close()


# ------------------------------------------------------------------ the walk's batch step, with fakes
class FakeStore:
    """Records the step rows a member commits."""

    def __init__(self) -> None:
        self.rows: dict[int, list[Any]] = {}
        self.lock = threading.Lock()

    def start_step(self, trial_id, index, label, kind, attempt=1, device=None) -> int:
        with self.lock:
            row = len(self.rows) + 1
            self.rows[row] = [trial_id, index, label, "running", None]
            return row

    def finish_step(self, step_id, state, run_uid=None, error=None, **_: Any) -> None:
        with self.lock:
            self.rows[step_id][3:] = [state, run_uid]


def batch_context(capacity: int = 2):
    from types import SimpleNamespace

    from labloop.spec import parse_spec

    spec = parse_spec(furnace_campaign(capacity=capacity))
    return SimpleNamespace(
        spec=spec,
        kinds={"furnace": ["furnace"]},
        lab=SimpleNamespace(time_scale=lambda device, scale: scale),
        time_scale=TS,
        workflow=spec.workflow,
        store=FakeStore(),
        observer=lambda kind, data: None,
        announce_step=lambda *step: None,
        res=SimpleNamespace(mark_busy=lambda device, busy: None),
        cancelled=lambda: False,
    )


def _tc(trial: int, anneal: int):
    from labloop.run.executor import TrialContext

    return TrialContext(1, "uid", "c", trial, trial, f"s{trial}", {"anneal_c": anneal}, "furnace")


def test_the_leader_runs_the_station_once_and_every_follower_row_ends_with_its_run():
    from types import SimpleNamespace

    from labloop.run.batch_steps import BatchSteps

    ctx = batch_context()
    steps = BatchSteps(ctx)  # type: ignore[arg-type]  # a fake context: what BatchSteps reads
    runs: list[dict[str, Any]] = []

    def attempts(ex, tc, index, device, dest, batch):
        runs.append(batch)
        return f"run-of-{tc.trial_id}"

    for t in (1, 2):
        steps.track(t, 2, {"anneal_c": 400})
        assert steps.join("furnace", t, f"s{t}", {"anneal_c": 400})
    index = steps.step_of["furnace"]
    ex = SimpleNamespace(guard=lambda: None)
    got: dict[int, Any] = {}
    threads = [
        threading.Thread(
            target=lambda t=t: got.setdefault(t, steps.run_step(ex, _tc(t, 400), index, "furnace", attempts))
        )
        for t in (1, 2)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(BOUND)
    assert len(runs) == 1 and sorted(runs[0]["samples"]) == ["s1", "s2"] and runs[0]["fired_because"] == "full"
    assert got == {1: "run-of-1", 2: "run-of-1"}
    # the follower's own row (the leader's is the executor's): committed, then ended with the leader's run
    assert list(ctx.store.rows.values()) == [[2, index, "synthesize:furnace", "done", "run-of-1"]]


def test_prospects_are_walking_trials_before_the_batch_step_and_queued_proposals_with_their_key():
    from types import SimpleNamespace

    from labloop.run.batch_steps import BatchSteps

    steps = BatchSteps(batch_context())  # type: ignore[arg-type]
    steps.track(1, 0, {"anneal_c": 400})
    steps.track(2, 3, {"anneal_c": 400})  # at the furnace step itself: no longer a prospect
    steps.track(3, 1, {"anneal_c": 300})
    prospects = steps.formers["furnace"].prospects()
    assert sorted((p.trial, p.key) for p in prospects) == [(1, (400,)), (3, (300,))]
    steps.forget(1)
    assert [p.trial for p in steps.formers["furnace"].prospects()] == [3]
    # a proposal queued unlaunched (async lookahead) may still come: a prospect with its key
    steps.queued = lambda: [SimpleNamespace(id=8, params={"anneal_c": 400}), SimpleNamespace(id=3, params={})]
    assert sorted((p.trial, p.key) for p in steps.formers["furnace"].prospects()) == [(3, (300,)), (8, (400,))]


def test_a_trial_resumed_in_the_station_fires_alone_not_with_an_open_batch():
    from types import SimpleNamespace

    from labloop.run.batch_steps import BatchSteps

    steps = BatchSteps(batch_context())  # type: ignore[arg-type]
    steps.track(9, 2, {"anneal_c": 400})  # keeps the open batch below waiting: a prospect of its key
    open_batch = steps.formers["furnace"].join(1, "s1", {"anneal_c": 400})
    runs: list[dict[str, Any]] = []
    uid = steps.run_step(
        SimpleNamespace(guard=lambda: None),
        _tc(5, 400),  # no batch joined: its process died after the sample went in
        steps.step_of["furnace"],
        "furnace",
        lambda ex, tc, index, device, dest, batch: runs.append(batch) or "run-5",
    )
    assert uid == "run-5" and runs[0]["samples"] == ["s5"] and runs[0]["fired_because"] == "resumed"
    assert open_batch.samples == ["s1"] and not open_batch.fired


# ------------------------------------------------------------------ the slotted furnace of the thin-film lab
def test_the_sim_furnace_takes_samples_up_to_its_slots_and_fires_exactly_the_ones_inside():
    from labloop_simulators.thinfilm.lab import build_lab

    from labloop.contract import Move
    from labloop.errors import DeviceError

    lab = build_lab({"furnace_slots": 2, "furnace_minutes": 1, "robot_minutes": 0.1}, time_scale=1e5)
    robot, furnace = lab["robot"], lab["furnace"]
    for s in ("a", "b"):
        robot.set(Move(s, "load_lock", "furnace")).wait(BOUND)
    assert furnace.samples.get() == ["a", "b"]
    with pytest.raises(DeviceError, match="full"):
        robot.set(Move("c", "load_lock", "furnace"))
    with pytest.raises(DeviceError, match="recipe fires"):
        furnace.set({"anneal_c": 400, "samples": ["a"]})  # would heat b too, unasked
    furnace.set({"anneal_c": 400, "samples": ["b", "a"], "batch": "X"}).wait(BOUND)
    assert [r.properties.get("firing") for r in map(furnace.registry.get, ("a", "b"))] == ["X", "X"]
    robot.set(Move("a", "furnace", "storage")).wait(BOUND)
    assert furnace.samples.get() == ["b"]


def test_the_lab_locates_a_sample_in_the_samples_list_of_a_station_with_slots():
    from types import SimpleNamespace

    from labloop.run.lab import Lab

    slots = SimpleNamespace(get=lambda: ["s1", "s2"])
    lab = Lab({"kiln": SimpleNamespace(samples=slots)})
    assert lab.locate("s2") == "kiln" and lab.locate("s3") is None
