"""The run core: the trial state machine, control that never waits on the optimizer, acknowledged operator
requests, runner liveness, safety paths that speak, and an operator's view of a lab run for days."""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
import yaml
from running import in_background, record_stops, start, two_chamber, wait_for
from typer.testing import CliRunner

from labloop.cli import app
from labloop.errors import LabloopError, SpecError
from labloop.run.campaign import CampaignRunner, prepare_text
from labloop.run.liveness import liveness
from labloop.states import IN_FLIGHT, TERMINAL, TRIAL_TRANSITIONS, UNFINISHED, IllegalTransition, TrialState
from labloop.store import Store

REPO = Path(__file__).resolve().parents[1]
S = TrialState


# ------------------------------------------------------------------------------------------- state machine
def test_the_sets_are_defined_once_and_agree():
    assert TERMINAL == {S.DONE, S.FAILED, S.REJECTED, S.CANCELLED}
    assert S.INTERRUPTED in UNFINISHED and S.INTERRUPTED not in IN_FLIGHT
    assert IN_FLIGHT | {S.INTERRUPTED} == UNFINISHED and not (UNFINISHED & TERMINAL)
    assert set(TrialState) == UNFINISHED | TERMINAL


def _trial_in(store: Store, cid: int, state: TrialState):
    """A trial walked to ``state`` through legal moves only."""
    t = store.add_trial(cid, {"x": 1.0}, "test", {}, "abcd")
    path = {
        S.PROPOSED: [],
        S.APPROVED: [S.APPROVED],
        S.RUNNING: [S.RUNNING],
        S.MEASURED: [S.RUNNING, S.MEASURED],
        S.DONE: [S.RUNNING, S.MEASURED, S.DONE],
        S.FAILED: [S.RUNNING, S.FAILED],
        S.REJECTED: [S.REJECTED],
        S.INTERRUPTED: [S.RUNNING, S.INTERRUPTED],
        S.CANCELLED: [S.CANCELLED],
    }[state]
    cur = S.PROPOSED
    for nxt in path:
        t = store.transition(t.id, cur, nxt)
        cur = nxt
    return t


def test_every_illegal_transition_is_refused_by_name_and_changes_nothing(sqlite_url):
    store = Store(sqlite_url)
    c = store.create_campaign("c", "name: c\n", "0" * 64)
    for cur in TrialState:
        for new in TrialState:
            t = _trial_in(store, c.id, cur)
            if new in TRIAL_TRANSITIONS.get(cur, ()):
                assert store.transition(t.id, cur, new).state == new
                continue
            with pytest.raises(IllegalTransition) as e:
                store.transition(t.id, cur, new, failure_reason="should not be written")
            assert f"trial {t.number} is {cur}: it cannot become {new}" in e.value.problem
            again = store.trial(t.id)
            assert again.state == cur and again.failure_reason is None
    store.close()


def test_compare_and_set_lets_only_one_of_two_racing_changes_through(sqlite_url):
    store = Store(sqlite_url)
    c = store.create_campaign("c", "name: c\n", "0" * 64)
    t = store.add_trial(c.id, {"x": 1.0}, "test", {}, "abcd")
    store.transition(t.id, S.PROPOSED, S.APPROVED)  # an operator approved it
    with pytest.raises(IllegalTransition) as e:  # a second process still believes it is proposed
        store.transition(t.id, S.PROPOSED, S.REJECTED)
    assert "is approved, not proposed" in e.value.problem
    assert store.trial(t.id).state == S.APPROVED
    with pytest.raises(ValueError, match="only through Store.transition"):
        store.update_trial(t.id, state="done")
    store.close()


# ------------------------------------------------------------------------------------------- architecture
def _imports(path: Path, module: str) -> set[str]:
    """Every labloop module a module imports, at top level or inside functions."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("labloop")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("labloop"):
                continue
            out.add(target)
            for a in node.names:  # `from pkg import module`
                out.add(f"{target}.{a.name}")
    return out


def test_no_import_cycles_in_labloop_including_imports_inside_functions():
    root = REPO / "labloop"
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        edges = set()
        for target in _imports(path, mod):
            # importing a.b.c also runs a and a.b: count those, except the importer's own ancestors
            pieces = target.split(".")
            for i in range(1, len(pieces) + 1):
                name = ".".join(pieces[:i])
                if name in modules and name != mod and not mod.startswith(name + "."):
                    edges.add(name)
        graph[mod] = edges
    assert len(graph) > 30
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n) :] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


# ------------------------------------------------------------------------------------------- estop, optimizer
def test_an_estop_reaches_every_device_while_the_optimizer_thinks_for_ten_seconds(tmp_path):
    data = two_chamber(max_trials=40)
    data["strategy"] = {"name": "slow_strategy:SlowStrategy", "initial_design": 1}
    data["scheduling"] = {"lookahead": 0}
    store, runner = start(data, tmp_path)
    stopped_at = record_stops(runner.p.lab)
    thinking = runner.p.strategy.thinking
    th, result = in_background(runner)
    cid = runner.campaign.id
    wait_for(thinking.is_set, timeout=60)  # trials are running and the optimizer is busy
    assert any(t.state == "running" for t in store.trials(cid))
    stopped_at.clear()  # only the stops the estop makes count (a robot may have been stopped before, in its work)
    rid = store.request(cid, "estop", {}, user="carol")
    th.join(5)
    assert not th.is_alive(), "the campaign waited for the optimizer"
    assert thinking.is_set(), "the ask ended before the estop was tested"
    assert set(stopped_at) == set(runner.p.lab.devices)
    # every device was stopped after the request, while the optimizer still thought (the latency, ~0.1 s, is
    # measured in benchmarks/estop_latency.py, not asserted here)
    assert result["decision"].rule == "estop"
    req = store.operator_request(rid)
    assert req.state == "done" and "every device halted" in req.outcome
    assert store.campaign(cid).state == "estopped"
    for t in store.trials(cid):  # no bluesky console help in the data
        assert "RE.resume" not in (t.failure_reason or "") and "\n" not in (t.failure_reason or "")
    store.close()


def test_a_device_that_refuses_to_stop_raises_an_alert_and_an_audit_entry(tmp_path, capfd):
    store, runner = start(two_chamber(max_trials=6), tmp_path)
    alerts = []
    runner.observer = lambda kind, data: alerts.append(data["message"]) if kind == "alert" else None

    def broken_stop(*a, **k):
        raise RuntimeError("interlock controller offline")

    runner.p.lab.devices["chamber2"].stop = broken_stop
    th, result = in_background(runner)
    cid = runner.campaign.id
    wait_for(lambda: any(s.kind == "synthesize" and s.state == "running" for s in store.steps(campaign_id=cid)))
    rid = store.request(cid, "estop", {}, user="carol")
    th.join(20)
    assert result["decision"].rule == "estop"
    entries = [a for a in store.audit_log(cid) if a.action == "estop.device_failed"]
    assert len(entries) == 1 and entries[0].detail["device"] == "chamber2"
    assert "interlock controller offline" in entries[0].detail["error"]
    assert any("chamber2" in m and "did not accept stop()" in m for m in alerts)
    outcome = store.operator_request(rid).outcome
    assert "1 refused" in outcome and "chamber2" in outcome
    for t in store.trials(cid):  # one line of reason, no bluesky console help
        assert "\n" not in (t.failure_reason or "") and "RE.resume" not in (t.failure_reason or "")
    out, err = capfd.readouterr()  # bluesky's interactive "Pausing..." / "Halting..." lines stay off the terminal
    assert "Pausing" not in out + err and "Halting" not in out + err
    store.close()


# ------------------------------------------------------------------------------------------- requests, liveness
def test_an_illegal_operator_request_is_refused_with_the_trial_state_and_changes_nothing(tmp_path):
    data = two_chamber(max_trials=4)
    data["scheduling"] = {"approval": True}
    store, runner = start(data, tmp_path)
    th, result = in_background(runner)
    cid = runner.campaign.id
    wait_for(lambda: any(t.state == "proposed" for t in store.trials(cid)))
    first = next(t for t in store.trials(cid) if t.state == "proposed")
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    cli = CliRunner()
    r = cli.invoke(app, ["status", "--store", url])
    assert f"awaiting approval: trials {first.number}" in r.output, r.output
    r = cli.invoke(app, ["approve", str(first.number), "--store", url, "--user", "erin"])
    assert r.exit_code == 0 and f"approved: trial {first.number}" in r.output, r.output
    wait_for(lambda: store.trial(first.id).state in ("running", "done"))
    before = store.trial(first.id).state
    r = cli.invoke(app, ["reject", str(first.number), "--reason", "late", "--store", url])
    assert r.exit_code == 2 and f"trial {first.number} is {before}" in r.output
    assert "not waiting for approval" in r.output and "\nTraceback" not in r.output
    assert store.trial(first.id).failure_reason is None
    r = cli.invoke(app, ["approve", "99", "--store", url])
    assert r.exit_code == 2 and "has no trial 99" in r.output
    store.request(cid, "stop", {}, user="erin")
    th.join(30)
    r = cli.invoke(app, ["resume", "--store", url])  # a finished campaign cannot be resumed
    assert r.exit_code == 2 and "has already ended" in r.output
    store.close()


def _fake_runner(
    store: Store,
    state: str = "running",
    pid: int | None = None,
    started: float | None = None,
    beat_age: float = 0.0,
    host: str | None = None,
):
    c = store.create_campaign("lab-a", (REPO / "experiments" / "thinfilm.yaml").read_text(), "0" * 64)
    store.update_campaign(
        c.id,
        state=state,
        runner=f"{host or socket.gethostname()}:{pid or os.getpid()}",
        runner_started=started,
        heartbeat_at=datetime.now(UTC) - timedelta(seconds=beat_age),
    )
    return store.campaign(c.id)


def test_liveness_needs_pid_start_time_and_a_recent_heartbeat(sqlite_url):
    store = Store(sqlite_url)
    me = psutil.Process().create_time()
    assert liveness(_fake_runner(store, started=me)).state == "alive"
    # the same pid, but another process started it (the OS reused the pid): the runner is gone
    assert liveness(_fake_runner(store, started=me - 3600)).state == "dead"
    # our process, but silent for a minute: hung, and nobody may start a second runner beside it
    hung = liveness(_fake_runner(store, started=me, beat_age=60))
    assert hung.state == "hung" and hung.present and "kill" in hung.describe()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert liveness(_fake_runner(store, pid=child.pid, started=me)).state == "dead"
    # another host: only the heartbeat can tell
    assert liveness(_fake_runner(store, host="elsewhere", beat_age=1)).state == "alive"
    assert liveness(_fake_runner(store, host="elsewhere", beat_age=60)).state == "dead"
    assert liveness(_fake_runner(store, state="finished", started=me)).state == "ended"
    store.close()


def test_a_request_nobody_answers_says_so_and_what_to_do(sqlite_url):
    store = Store(sqlite_url)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    c = _fake_runner(store, pid=dead.pid, started=time.time() - 5, beat_age=20)
    r = CliRunner().invoke(app, ["pause", "--store", sqlite_url, "--wait", "0.3"])
    assert r.exit_code == 2
    assert "no runner is answering" in r.output and "labloop resume" in r.output
    pending = store.pending_requests(c.id)
    assert [p.action for p in pending] == ["pause"]  # queued for whoever resumes it
    r = CliRunner().invoke(app, ["status", "--store", sqlite_url])
    assert "no runner" in r.output and "run `labloop resume`" in r.output
    store.close()


# ------------------------------------------------------------------------------------------- days-long operation
def test_repeated_failures_with_the_same_cause_pause_the_campaign_with_the_cause(tmp_path):
    data = two_chamber(
        max_trials=12,
        options={"dead_after": 0, "chambers": 1},
        scheduling={"quarantine_after": 12, "pause_after_same_failures": 3},
    )
    data["lab"]["stations"] = {"deposition": ["chamber"]}
    store, runner = start(data, tmp_path)
    th, result = in_background(runner)
    cid = runner.campaign.id
    wait_for(lambda: store.campaign(cid).state == "paused", timeout=60)
    note = store.campaign(cid).note
    assert "3 trials in a row" in note and "RF generator reports no forward power" in note
    assert "labloop resume" in note
    time.sleep(0.3)
    n = len(store.trials(cid))
    assert n < 12, "the budget was spent on a systematic fault"
    store.request(cid, "stop", {}, user="olga")
    th.join(30)
    assert result["decision"].rule == "operator"
    store.close()


def test_a_campaign_with_no_successful_trial_exits_non_zero(tmp_path):
    data = two_chamber(
        max_trials=2,
        options={"dead_after": 0, "chambers": 1},
        scheduling={"quarantine_after": 5, "pause_after_same_failures": 0},
    )
    data["lab"]["stations"] = {"deposition": ["chamber"]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    r = CliRunner().invoke(app, ["run", str(path), "--store", f"sqlite:///{tmp_path / 'labloop.db'}"])
    assert r.exit_code == 2, r.output
    assert "ended with no successful trial (2 failed)" in r.output and "RF generator" in r.output


def test_one_runner_per_lab_and_estop_halts_every_running_campaign(tmp_path):
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    store, first = start(two_chamber(max_trials=30), tmp_path)
    th1, r1 = in_background(first)
    wait_for(lambda: len(store.trials(first.campaign.id)) > 0)
    with pytest.raises(LabloopError) as e:  # the same lab: refused, naming the running campaign, host and pid
        CampaignRunner.start(prepare_text(yaml.safe_dump(two_chamber(max_trials=3)), "second.yaml"), store)
    assert f"campaign '{first.campaign.name}' (id {first.campaign.id}) already runs this lab" in e.value.problem
    assert f"{socket.gethostname()}:{os.getpid()}" in e.value.problem
    second_file = tmp_path / "second.yaml"
    second_file.write_text(yaml.safe_dump(two_chamber(max_trials=3)))
    r = CliRunner().invoke(app, ["run", str(second_file), "--store", url])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "already runs this lab" in r.output, r.output
    # another lab (another simulated world) in the same store may run beside it
    other = two_chamber(max_trials=30, options={"noise": 0.05})
    second = CampaignRunner.start(prepare_text(yaml.safe_dump(other), "other.yaml"), store)
    th2, r2 = in_background(second)
    wait_for(lambda: len(store.trials(second.campaign.id)) > 0)
    r = CliRunner().invoke(app, ["estop", "--store", url, "--user", "carol"])
    assert r.exit_code == 0, r.output
    assert r.output.count("EMERGENCY STOP campaign") == 2
    th1.join(20)
    th2.join(20)
    assert r1["decision"].rule == r2["decision"].rule == "estop"
    store.close()


def test_a_workflow_that_measures_what_it_never_made_is_refused():
    data = two_chamber()
    data["workflow"] = [
        {"kind": "transfer", "to": "probe"},
        {"kind": "measure", "device": "probe"},
        {"kind": "transfer", "to": "storage"},
    ]
    with pytest.raises(SpecError) as e:
        prepare_text(yaml.safe_dump(data), "nosynth.yaml")
    assert "nosynth.yaml" in e.value.problem and "measures before anything is synthesized" in e.value.problem


def test_the_strategy_captures_its_own_warnings_without_touching_other_threads():
    import threading
    import warnings

    from labloop.strategy import quiet

    inside, seen_by_other = threading.Event(), []
    release = threading.Event()

    def strategy_thread(out):
        with quiet.captured() as caught:
            warnings.warn("jitter added to the Cholesky", RuntimeWarning)
            inside.set()
            release.wait(5)
        out.extend(str(w.message) for w in caught)

    mine: list[str] = []
    th = threading.Thread(target=strategy_thread, args=(mine,))
    th.start()
    inside.wait(5)
    with warnings.catch_warnings(record=True) as rec:  # a RunEngine thread's warning while the strategy captures
        warnings.simplefilter("always")
        warnings.warn("chamber pressure reading is stale", UserWarning)
        seen_by_other.extend(str(w.message) for w in rec)
    release.set()
    th.join(5)
    assert mine == ["jitter added to the Cholesky"]
    assert seen_by_other == ["chamber pressure reading is stale"]


def test_a_device_whose_stop_hangs_delays_no_other_device():
    import threading

    from labloop.run.lab import Lab

    called: dict[str, bool] = {}  # name -> was the stuck device's stop() still hanging when this one was called
    release = threading.Event()
    stuck_returned = threading.Event()

    class Dev:
        def __init__(self, name, hang=False):
            self.name, self.hang = name, hang

        def stop(self):
            called[self.name] = not stuck_returned.is_set()
            if self.hang:
                release.wait(5)
                stuck_returned.set()

    # the stuck device comes first: a stop_all that called one device after another would reach the others only
    # after the stuck one returned
    lab = Lab({"stuck": Dev("stuck", hang=True), "chamber": Dev("chamber"), "robot": Dev("robot")})
    failures = lab.stop_all(timeout=0.3)
    release.set()
    assert set(called) == {"stuck", "chamber", "robot"}
    assert all(called.values()), "a device's stop() waited for the stuck one"
    assert failures == [("stuck", "stop() did not return within 0.3 s")]
