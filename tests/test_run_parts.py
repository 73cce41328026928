"""The run core's parts, each driven directly (fakes, or the two-chamber simulated lab without a scheduler): the
shared context's flags and waits, the request server (estop first, its bell), trial walking (retries, the robot
during a pause, resumed gripper moves), the lease keeper, systematic-failure detection, proposals, the engine pool,
the crash hook points, and the concurrency primitives (AskService, WorkerPool, LabResources). Every wait is on an
event with a generous bound; nothing asserts a duration."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from running import record_stops, start, two_chamber, wait_for

from labloop.run import hookpoints
from labloop.run.context import Flag, RunContext
from labloop.run.control_loop import ControlLoop
from labloop.run.failures import SystematicFailure, failure_cause
from labloop.run.lab import station_kinds
from labloop.run.lease import LeaseKeeper
from labloop.run.operator_requests import REQUEST_POLL_S, LocalBell, RequestServer
from labloop.run.proposals import Proposer
from labloop.run.resources import Cancelled, LabResources, NoStationLeft
from labloop.run.walk import TrialWalker
from labloop.run.workers import AskService, WorkerPool
from labloop.spec import StepSpec

BOUND = 30.0  # seconds: generous, only a hung test ever reaches it


def in_thread(fn, *args):
    out: dict = {}

    def target():
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    th = threading.Thread(target=target, daemon=True)
    th.start()
    return th, out


def lab_context(tmp_path, **changes):
    """A RunContext on the two-chamber simulated lab (a real store and campaign, no scheduler)."""
    store, runner = start(two_chamber(**changes), tmp_path)
    lab = runner.p.lab
    ctx = RunContext(
        spec=runner.spec, lab=lab, store=store, campaign=runner.campaign, kinds=station_kinds(runner.spec, lab)
    )
    return store, ctx


class FakeEngines:
    def __init__(self):
        self.interrupted = 0

    def interrupt_all(self):
        self.interrupted += 1


# ------------------------------------------------------------------------------------------- context
def test_a_flag_wakes_a_wait_on_the_shared_condition():
    changed = threading.Condition()
    a, b = Flag(changed), Flag(changed)

    def either():
        with changed:
            return changed.wait_for(lambda: a.is_set() or b.is_set(), BOUND)

    th, out = in_thread(either)
    b.set()
    th.join(BOUND)
    assert out.get("value") is True and b.is_set() and not a.is_set()
    assert b.wait(0) and not a.wait(0)
    b.clear()
    assert not b.is_set()


def test_wait_while_paused_returns_on_resume_and_raises_on_cancel(tmp_path):
    store, ctx = lab_context(tmp_path)
    ctx.paused.set()
    th, out = in_thread(ctx.wait_while_paused)
    th.join(0.05)
    assert th.is_alive(), "returned while paused"
    ctx.paused.clear()
    th.join(BOUND)
    assert not th.is_alive() and "error" not in out

    ctx.paused.set()
    th, out = in_thread(ctx.wait_while_paused)
    ctx.cancel_waits()  # what an emergency stop or a lost lease does
    th.join(BOUND)
    assert isinstance(out.get("error"), Cancelled)
    store.close()


def test_pause_for_operator_keeps_the_first_reason(tmp_path):
    store, ctx = lab_context(tmp_path)
    ctx.pause_for_operator("first")
    ctx.pause_for_operator("second")
    assert ctx.paused.is_set() and ctx.need_operator == "first"
    c = store.campaign(ctx.campaign.id)
    assert (c.state, c.note) == ("paused", "first")
    store.close()


# ------------------------------------------------------------------------------------------- requests
def test_an_estop_is_served_before_the_requests_queued_ahead_of_it(tmp_path):
    store, ctx = lab_context(tmp_path)
    stopped = record_stops(ctx.lab)
    engines, discarded = FakeEngines(), []
    server = RequestServer(ctx, engines, launch=lambda t: None, discard_ask=lambda: discarded.append(1))
    cid = ctx.campaign.id
    pause = store.request(cid, "pause", user="bob")
    estop = store.request(cid, "estop", user="carol")
    server.serve()
    assert ctx.estopped.is_set() and set(stopped) == set(ctx.lab.devices)
    assert engines.interrupted == 1 and discarded == [1]
    assert store.operator_request(estop).state == "done"
    refused = store.operator_request(pause)
    assert refused.state == "refused" and "emergency stop" in refused.outcome
    assert store.campaign(cid).state == "estopped" and not ctx.paused.is_set()
    store.close()


def test_pause_then_resume_releases_a_waiting_worker(tmp_path):
    store, ctx = lab_context(tmp_path)
    server = RequestServer(ctx, FakeEngines(), launch=lambda t: None)
    cid = ctx.campaign.id
    store.request(cid, "pause", user="bob")
    server.serve()
    assert ctx.paused.is_set() and store.campaign(cid).state == "paused"
    th, out = in_thread(ctx.wait_while_paused)
    resume = store.request(cid, "resume", user="bob")
    server.serve()
    th.join(BOUND)
    assert not th.is_alive() and "error" not in out
    assert store.operator_request(resume).state == "done" and store.campaign(cid).state == "running"
    assert ctx.wake.is_set()
    store.close()


def test_a_resume_sent_the_moment_the_store_says_paused_resumes_a_pause_the_lab_called_for(tmp_path):
    """The lab pauses itself (stock out, no station left): a script or the dashboard that sees "paused" in the
    store and sends resume at once must resume it. Before, the store said "paused" before the flag was set; a
    resume answered in between found nothing paused ("it runs"), and the campaign stayed paused for good."""
    store, ctx = lab_context(tmp_path)
    server = RequestServer(ctx, FakeEngines(), launch=lambda t: None)
    cid = ctx.campaign.id
    write = store.update_campaign
    raced: list = []

    def update_campaign(campaign_id, **changes):
        write(campaign_id, **changes)
        if changes.get("state") == "paused" and not raced:  # the operator's resume, the moment it is stored
            raced.append(store.request(cid, "resume", user="ana"))
            th, _ = in_thread(server.serve)
            th.join(1.0)  # gives an unguarded answer its chance to slip in; a guarded one waits for the pause

    store.update_campaign = update_campaign
    th, _ = in_thread(ctx.pause_for_operator, "stock Nb has 0 g left")
    th.join(BOUND)
    wait_for(lambda: store.operator_request(raced[0]).state != "pending", timeout=BOUND)
    assert store.operator_request(raced[0]).outcome.startswith("resumed")
    assert not ctx.paused.is_set() and ctx.need_operator is None
    assert store.campaign(cid).state == "running"
    store.close()


def test_approval_requests_are_refused_when_the_campaign_does_not_wait_for_approval(tmp_path):
    store, ctx = lab_context(tmp_path)
    launched = []
    server = RequestServer(ctx, FakeEngines(), launch=launched.append)
    rid = store.request(ctx.campaign.id, "approve", {"trials": [1]}, user="bob")
    server.serve()
    req = store.operator_request(rid)
    assert req.state == "refused" and "does not wait for approval" in req.outcome and launched == []
    store.close()


class HeldBell:
    """A bell whose wait blocks until rung (whatever the timeout): shows the request thread waits on it alone."""

    def __init__(self):
        self.rung = threading.Event()
        self.timeouts: list[float] = []
        self.entered = threading.Event()

    def wait(self, timeout):
        self.timeouts.append(timeout)
        self.entered.set()
        rung = self.rung.wait(BOUND)
        self.rung.clear()
        return rung

    def set(self):
        self.rung.set()


def test_the_request_thread_waits_between_polls_on_its_bell_only(tmp_path):
    store, ctx = lab_context(tmp_path)
    bell = HeldBell()
    server = RequestServer(ctx, FakeEngines(), launch=lambda t: None, bell=bell)
    server.start()
    try:
        assert bell.entered.wait(BOUND)
        rid = store.request(ctx.campaign.id, "pause", user="bob")
        assert store.operator_request(rid).state == "pending"  # nobody rang: the thread still waits
        bell.set()
        wait_for(lambda: store.operator_request(rid).state != "pending", timeout=BOUND)
        assert store.operator_request(rid).state == "done" and ctx.paused.is_set()
        assert bell.timeouts and set(bell.timeouts) == {REQUEST_POLL_S}
    finally:
        server.stop()  # rings the bell: the thread ends
        server.join(BOUND)
    assert server._thread is not None and not server._thread.is_alive()
    store.close()


def test_the_local_bell_wakes_one_wait_and_times_out_otherwise():
    bell = LocalBell()
    assert bell.wait(0.001) is False
    bell.set()
    assert bell.wait(BOUND) is True
    assert bell.wait(0.001) is False  # the ring was consumed


# ------------------------------------------------------------------------------------------- walking
class FlakyExecutor:
    def __init__(self, fail: int, step):
        self.fail, self.step, self.calls = fail, step, []
        self.during = lambda: None

    def run_step(self, tc, index, device, dest, attempt=1, park=False):
        from labloop.run.executor import StepFailed

        self.calls.append(attempt)
        self.during()
        if len(self.calls) <= self.fail:
            raise StepFailed(self.step, index, "no contact", device)


def test_attempts_retry_then_succeed_and_count_the_station_healthy(tmp_path):
    store, ctx = lab_context(tmp_path)
    walker = TrialWalker(ctx, engines=None, evaluate=lambda t: t)  # type: ignore[arg-type]
    index = next(i for i, s in enumerate(ctx.workflow) if s.kind == "measure")
    ctx.workflow = list(ctx.workflow)
    ctx.workflow[index] = ctx.workflow[index].model_copy(update={"retries": 2, "retry_backoff": 1.0})
    ex = FlakyExecutor(2, ctx.workflow[index])
    ctx.res.quarantine_after = 3  # two failures in a row do not take the probe out of service
    walker.attempts(ex, SimpleNamespace(number=1), index, "probe", None)
    assert ex.calls == [1, 2, 3]
    assert ctx.res.stations["probe"].consecutive_failures == 0
    retries = [a for a in store.audit_log(ctx.campaign.id) if a.action == "step.retry"]
    assert len(retries) == 2
    store.close()


def test_attempts_stop_retrying_at_an_emergency_stop(tmp_path):
    from labloop.run.executor import StepFailed

    store, ctx = lab_context(tmp_path)
    walker = TrialWalker(ctx, engines=None, evaluate=lambda t: t)  # type: ignore[arg-type]
    step = StepSpec(kind="measure", device="probe", retries=5)
    ctx.workflow = [step]
    ex = FlakyExecutor(9, step)
    ex.during = ctx.estopped.set  # the emergency stop comes while the first attempt runs
    with pytest.raises(StepFailed):
        walker.attempts(ex, SimpleNamespace(number=1), 0, "probe", None)
    assert ex.calls == [1] and ctx.res.stations["probe"].consecutive_failures == 0  # not the station's fault
    ctx.estopped.clear()
    ctx.res.cancel()
    with pytest.raises(Cancelled):  # a cancelled campaign starts no attempt at all
        walker.attempts(ex, SimpleNamespace(number=1), 0, "probe", None)
    assert ex.calls == [1]
    store.close()


def test_the_robot_is_not_taken_while_paused(tmp_path):
    store, ctx = lab_context(tmp_path)
    walker = TrialWalker(ctx, engines=None, evaluate=lambda t: t)  # type: ignore[arg-type]
    ctx.paused.set()
    trial = SimpleNamespace(id=7)
    th, out = in_thread(walker._take_robot, trial, 0)
    th.join(0.05)
    assert th.is_alive() and ctx.res._robot_holder is None
    ctx.paused.clear()
    th.join(BOUND)
    assert "error" not in out and ctx.res._robot_holder == 7
    store.close()


def test_resumed_gripper_moves_go_first_and_the_wait_ends_when_they_did(tmp_path):
    store, ctx = lab_context(tmp_path)
    started = []

    class Pool:
        def start(self, key, name, fn, *args):
            started.append(key)

    walker = TrialWalker(ctx, engines=None, evaluate=lambda t: t, workers=Pool())  # type: ignore[arg-type]
    held = SimpleNamespace(trial=SimpleNamespace(id=3, number=1), in_gripper=True, held=None)
    other = SimpleNamespace(trial=SimpleNamespace(id=4, number=2), in_gripper=False, held=None)
    th, out = in_thread(walker.resume_gripper_moves, [held, other])
    wait_for(lambda: started == [3], timeout=BOUND)
    th.join(0.05)
    assert th.is_alive(), "went on before the gripper was emptied"
    walker._release_robot(held.trial)  # the move put the sample down
    th.join(BOUND)
    assert not th.is_alive() and started == [3] and "error" not in out
    store.close()


# ------------------------------------------------------------------------------------------- lease keeper
def test_the_lease_keeper_beats_and_calls_on_lost_once_when_renewal_fails():
    beats, lost = [], threading.Event()
    renewals = iter([True, True, False])
    lease = SimpleNamespace(renew=lambda: next(renewals), ok=lambda: False)
    store = SimpleNamespace(heartbeat=lambda cid, note: beats.append((cid, note)))
    calls = []
    keeper = LeaseKeeper(
        store, 5, lease, lambda: (calls.append(1), lost.set()), lambda: "paused by operator", interval=0.001
    )
    keeper.start()
    assert lost.wait(BOUND)
    keeper._thread.join(BOUND)
    assert calls == [1] and beats == [(5, "paused by operator")] * 2 and keeper.lost()


def test_the_lease_keeper_without_a_lease_beats_until_stopped():
    beat = threading.Event()
    store = SimpleNamespace(heartbeat=lambda cid, note: beat.set())
    keeper = LeaseKeeper(store, 1, None, on_lost=lambda: pytest.fail("no lease to lose"))
    keeper.start()
    assert beat.wait(BOUND)
    keeper.stop()
    keeper._thread.join(BOUND)
    assert not keeper._thread.is_alive() and not keeper.lost()


# ------------------------------------------------------------------------------------------- failures, loop
def _failed(i, reason, minutes):
    return SimpleNamespace(
        id=i,
        number=i,
        state="failed",
        failure_reason=reason,
        finished_at=datetime(2026, 1, 1) + timedelta(minutes=minutes),
    )


def test_a_streak_of_same_cause_failures_pauses_once():
    paused = []
    det = SystematicFailure(3, {"measure:probe"}, lambda tid: [SimpleNamespace(state="failed")], paused.append)
    trials = [_failed(i, f"measure:probe: no contact at {i}.{i} V on 'S{i}'", i) for i in range(1, 4)]
    assert det.check(trials) and len(paused) == 1 and "3 trials in a row (1, 2, 3)" in paused[0]
    assert not det.check(trials) and len(paused) == 1  # the same streak is not paused for twice
    assert failure_cause("a: 12 at 'x'") == failure_cause("a: 7.5 at 'y'")


@pytest.mark.parametrize("case", ["different causes", "qc rejection", "cut short", "one done"])
def test_what_is_not_a_systematic_failure(case):
    paused = []
    steps = [SimpleNamespace(state="interrupted" if case == "cut short" else "failed")]
    det = SystematicFailure(3, {"measure:probe", "synthesize:chamber"}, lambda tid: steps, paused.append)
    reasons = ["measure:probe: no contact"] * 3
    if case == "different causes":
        reasons[1] = "synthesize:chamber: target cracked"
    if case == "qc rejection":
        reasons = ["film too thin"] * 3
    trials = [_failed(i + 1, r, i) for i, r in enumerate(reasons)]
    if case == "one done":
        trials[1].state = "done"
    assert not det.check(trials) and paused == []


def test_the_loop_decision_puts_an_emergency_stop_before_the_rules_and_an_operator_stop_after():
    ctx = SimpleNamespace(estopped=threading.Event(), stop_requested=False, campaign=SimpleNamespace(created_at=0))
    rule = {"value": None}
    loop = ControlLoop(
        ctx,
        proposer=None,
        failures=None,
        workers=None,
        engines=None,  # type: ignore[arg-type]
        stop_rules=lambda trials, started: rule["value"],
    )
    assert loop.decision([]) is None
    ctx.stop_requested = True
    assert loop.decision([]).rule == "operator"
    rule["value"] = SimpleNamespace(rule="budget")
    assert loop.decision([]).rule == "budget"
    ctx.estopped.set()
    assert loop.decision([]).rule == "estop"


def test_a_failed_ask_pauses_for_an_operator_and_launches_nothing(tmp_path):
    store, ctx = lab_context(tmp_path)
    done, launched = threading.Event(), []

    def ask(n, observations, pending):
        raise ValueError("bad bounds")

    asker = AskService(ask, on_done=done.set)
    proposer = Proposer(ctx, asker, launched.append, call_operator=lambda exc: None)
    proposer.propose(store.trials(ctx.campaign.id))
    assert done.wait(BOUND)
    assert proposer.take_answer()
    assert ctx.paused.is_set() and "optimizer failed to propose: ValueError: bad bounds" in ctx.need_operator
    assert launched == [] and store.trials(ctx.campaign.id) == []
    asker.shutdown()
    store.close()


def test_async_slots_count_free_first_stations_plus_lookahead_minus_promised(tmp_path):
    store, ctx = lab_context(tmp_path, scheduling={"lookahead": 1})
    proposer = Proposer(ctx, AskService(lambda *a: []), lambda t: None, call_operator=lambda exc: None)
    assert proposer.slots([]) == 3  # two free chambers + one ahead
    ctx.unplaced.add(99)
    assert proposer.slots([]) == 2
    ctx.res.claim("chamber1", 98)
    assert proposer.slots([]) == 1
    proposer.asker.shutdown()
    store.close()


# ------------------------------------------------------------------------------------------- engines, hooks
def test_the_engine_pool_reuses_idle_executors_and_interrupts_only_active_ones():
    from labloop.run.engines import EnginePool

    made = []

    class Ex:
        def __init__(self):
            self.interrupts = 0

        def interrupt(self):
            self.interrupts += 1

    pool = EnginePool(ctx=None, make=lambda: made.append(Ex()) or made[-1])  # type: ignore[arg-type]
    a, b = pool.take(), pool.take()
    pool.give_back(a)
    assert pool.take() is a and len(made) == 2
    pool.give_back(b)
    pool.interrupt_all()
    assert (a.interrupts, b.interrupts) == (1, 0)


def test_production_registers_no_hook_and_the_crash_plugin_dies_on_the_nth_pass(monkeypatch):
    import crashing as crash

    import labloop.run.executor  # noqa: F401 - importing the step path registers nothing

    assert hookpoints.HOOKS == []
    monkeypatch.delenv("LABLOOP_CRASH_AT", raising=False)
    assert crash.install() is None and hookpoints.HOOKS == []

    died: list[int] = []
    hook = crash.crash_hook("step_end:2", die=died.append)
    hookpoints.add(hook)
    try:
        for point in ("step_start", "step_end", "step_start"):
            hookpoints.reached(point)
        assert died == []
        hookpoints.reached("step_end")
        assert died == [137]
    finally:
        hookpoints.remove(hook)

    labelled: list[int] = []
    hook = crash.crash_hook("step_start:2@measure:balance", die=labelled.append)
    for label in ("measure:balance", "transfer:balance", "transfer:balance", "transfer:furnace"):
        hook("step_start", label)  # other labels do not count
    assert labelled == []
    hook("step_end", "measure:balance")  # nor other points
    hook("step_start", "measure:balance")
    assert labelled == [137]

    mid = threading.Event()
    hook = crash.crash_hook("step_mid:2", delay=0.001, die=lambda code: mid.set())
    hook("step_start")
    assert not mid.is_set()
    hook("step_start")
    assert mid.wait(BOUND)  # a timer, while the device works


# ------------------------------------------------------------------------------------------- primitives
def test_ask_service_returns_the_result_then_the_exception_and_refuses_a_second_ask():
    done, release = threading.Event(), threading.Event()

    def ask(n, observations, pending):
        release.wait(BOUND)
        if n == 2:
            raise RuntimeError("model broke")
        return [f"p{i}" for i in range(n)]

    asker = AskService(ask, on_done=done.set)
    asker.submit(3, [], [])
    assert asker.busy and asker.poll() is None
    with pytest.raises(RuntimeError, match="already running"):
        asker.submit(1, [], [])
    release.set()
    assert done.wait(BOUND)
    result = asker.poll()
    assert result.proposals == ["p0", "p1", "p2"] and result.error is None and not asker.busy
    done.clear()
    asker.submit(2, [], [])
    assert done.wait(BOUND)
    result = asker.poll()
    assert result.proposals is None and isinstance(result.error, RuntimeError)
    asker.shutdown()


def test_ask_service_drops_a_discarded_answer():
    done, release = threading.Event(), threading.Event()
    asker = AskService(lambda n, o, p: release.wait(BOUND) and ["x"], on_done=done.set)
    asker.submit(1, [], [])
    asker.discard()
    assert not asker.busy
    release.set()
    assert done.wait(BOUND)
    assert asker.poll() is None
    asker.shutdown()


def test_worker_pool_counts_live_workers_and_names_the_stragglers():
    pool, release = WorkerPool("t"), threading.Event()
    pool.start(1, "one", release.wait, BOUND)
    pool.start(2, "two", lambda: None)
    wait_for(lambda: pool.alive() == [1], timeout=BOUND)
    assert pool.join(0.01) == ["t-one"]
    release.set()
    assert pool.join(BOUND) == [] and pool.alive() == []


def _resources():
    return LabResources({"deposition": ["c1", "c2"], "probe": ["probe"]}, quarantine_after=2)


def test_the_robot_goes_to_the_move_that_empties_a_station_first():
    res, order = _resources(), []
    res.acquire_robot(1, 1)  # trial 1 holds it

    def take(trial, priority):
        res.acquire_robot(trial, priority)
        order.append(trial)
        res.release_robot(trial)

    t2, _ = in_thread(take, 2, 1)  # a move into a station, asked first
    wait_for(lambda: len(res._robot_queue) == 1, timeout=BOUND)
    t3, _ = in_thread(take, 3, 0)  # a move that empties one, asked second
    wait_for(lambda: len(res._robot_queue) == 2, timeout=BOUND)
    res.release_robot(1)
    t2.join(BOUND)
    t3.join(BOUND)
    assert order == [3, 2]


def test_a_reservation_waits_for_a_release_and_a_cancelled_trial_stops_waiting():
    res = _resources()
    assert {res.reserve("deposition", 1), res.reserve("deposition", 2)} == {"c1", "c2"}
    th, out = in_thread(res.reserve, "deposition", 3)
    wait_for(lambda: res.waiting.get(3) == "deposition", timeout=BOUND)
    res.release("c2", 2)
    th.join(BOUND)
    assert out.get("value") == "c2"
    th, out = in_thread(res.reserve, "deposition", 4)
    wait_for(lambda: 4 in res.waiting, timeout=BOUND)
    res.cancel_trial(4)
    th.join(BOUND)
    assert isinstance(out.get("error"), Cancelled) and 4 not in res.waiting


def test_stations_are_quarantined_after_repeated_failures_and_none_left_says_so():
    quarantined = []
    res = LabResources({"probe": ["probe"]}, quarantine_after=2, on_quarantine=lambda d, r: quarantined.append(d))
    assert res.record("probe", False, "x") is False
    assert res.record("probe", False, "x") is True and quarantined == ["probe"]
    with pytest.raises(NoStationLeft, match="quarantined after 2"):
        res.reserve("probe", 1)
    assert res.restore() == ["probe"] and res.reserve("probe", 1) == "probe"


def test_the_run_engine_console_goes_to_a_logger_not_stdout(caplog, capsys):
    import bluesky.run_engine as run_engine_module

    from labloop.run import executor

    executor.route_run_engine_console()
    executor.route_run_engine_console()  # idempotent
    assert run_engine_module.print is executor._console_to_log
    with caplog.at_level("INFO", logger="bluesky.RE.console"):
        run_engine_module.print("Pausing...")
    assert "Pausing..." not in capsys.readouterr().out
    assert [r.getMessage() for r in caplog.records if r.name == "bluesky.RE.console"] == ["Pausing..."]


def test_the_gil_switch_interval_is_lowered_while_campaigns_run_and_put_back_after_the_last():
    import sys

    from labloop.run.scheduler import SWITCH_INTERVAL_S, fast_gil_handoff

    before = sys.getswitchinterval()
    first, second = fast_gil_handoff(), fast_gil_handoff()
    first.__enter__()
    assert sys.getswitchinterval() == pytest.approx(min(before, SWITCH_INTERVAL_S))
    second.__enter__()  # a second campaign in the same process
    first.__exit__(None, None, None)  # the first ends while the second runs: still lowered
    assert sys.getswitchinterval() == pytest.approx(min(before, SWITCH_INTERVAL_S))
    second.__exit__(None, None, None)
    assert sys.getswitchinterval() == pytest.approx(before)
    with pytest.raises(RuntimeError), fast_gil_handoff():
        raise RuntimeError("a run that fails")
    assert sys.getswitchinterval() == pytest.approx(before)


def test_a_release_waits_for_a_renewal_in_flight_so_the_lease_ends_released():
    """A renewal that lands after the release would hold an ended runner's lease for another ttl."""
    from labloop.run.lease import CampaignLease

    calls, inside, go_on = [], threading.Event(), threading.Event()

    class Store:
        def renew_lease(self, *a):
            inside.set()
            go_on.wait(BOUND)
            calls.append("renew")

        def release_lease(self, *a):
            calls.append("release")

    lease = CampaignLease(Store(), 1, "me", 1, 30.0, started=time.monotonic())
    renewing, out = in_thread(lease.renew)
    assert inside.wait(BOUND)
    releasing, _ = in_thread(lease.release)
    releasing.join(0.05)
    assert releasing.is_alive() and calls == []  # the release waits for the renewal's round trip
    go_on.set()
    renewing.join(BOUND)
    releasing.join(BOUND)
    assert calls == ["renew", "release"] and lease.lost.is_set() and lease.renew() is False
    assert calls == ["renew", "release"]  # no renewal after the release


def _trial_spans(store, cid):
    """Each trial's span (first step's start, last step's end), in time order."""
    spans: dict[int, list[float]] = {}
    for s in store.steps(campaign_id=cid):
        if s.finished_at is None:
            continue
        a, b = s.started_at.timestamp(), s.finished_at.timestamp()
        lo, hi = spans.get(s.trial_id, [a, b])
        spans[s.trial_id] = [min(lo, a), max(hi, b)]
    return sorted(spans.values())


@pytest.mark.parametrize("cap", [None, 1])
def test_max_in_flight_caps_the_trials_unfinished_at_once(tmp_path, cap):
    """Two chambers run two trials at once; ``scheduling.max_in_flight: 1`` makes it one (a cap that trades
    throughput for proposals that learn from results: each trial here is proposed after the last one ended)."""
    data = two_chamber(max_trials=4)
    data["scheduling"] = {"mode": "async", "max_in_flight": cap}
    store, runner = start(data, tmp_path)
    runner.run()
    spans = _trial_spans(store, runner.campaign.id)
    assert len(spans) == 4
    overlaps = sum(1 for (_, end), (begin, _) in zip(spans, spans[1:]) if begin < end)
    assert (overlaps == 0) if cap == 1 else (overlaps > 0), spans


def test_a_resume_asks_a_station_once_per_firing_and_names_each_firing_once() -> None:
    """Every member of a four-crucible firing asks the furnace about the same program: one round trip to the
    controller, not four; and the operator reads one line per firing naming its trials, not one per member."""
    from labloop.run.recovery import Resumption, asked_once, reattach_lines

    calls: list[tuple[str, list[str]]] = []

    def program_of(station: str, samples: list[str]) -> str | None:
        calls.append((station, samples))
        return "running" if station == "furnace2" else None

    ask = asked_once(program_of)
    firing = ["S-0001", "S-0002", "S-0003"]
    assert [ask("furnace2", firing) for _ in firing] == ["running"] * 3
    assert ask("furnace1", ["S-0004"]) is None and ask("furnace1", ["S-0004"]) is None
    assert calls == [("furnace2", firing), ("furnace1", ["S-0004"])]

    def resumed(number: int, where: str, members: list[str] | None) -> Resumption:
        return Resumption(SimpleNamespace(number=number), 5, where, where, reattach=members)  # type: ignore[arg-type]

    lines = reattach_lines(
        [resumed(3, "furnace2", firing), resumed(1, "furnace2", firing), resumed(4, "furnace1", None)]
        + [resumed(2, "furnace2", firing), resumed(7, "furnace3", ["S-0007"])]
    )
    assert len(lines) == 2
    assert lines[0].startswith("trials 1, 2, 3: furnace2 still runs") and "S-0001, S-0002, S-0003" in lines[0]
    assert lines[1].startswith("trial 7: furnace3 still runs") and "S-0007" in lines[1]
