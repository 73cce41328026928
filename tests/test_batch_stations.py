"""Batch stations (issue 24 item 3): the spec fields, and the rule that groups trials into one run of a station that
takes several samples or fires a part-full one rather than wait (labloop/run/batching.py). The rule runs on a fake
clock (lab seconds); the threaded tests count the station's runs, which is what grouping saves. Every wait is on
an event with a generous bound; nothing asserts a duration."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import yaml

from labloop.errors import SpecError
from labloop.run.batching import FULL, NO_COMPANY, WAITED, BatchFailed, BatchFormer, Prospect
from labloop.run.resources import Cancelled
from labloop.spec import BatchSpec, parse_spec

BOUND = 30.0  # seconds: generous, only a hung test ever reaches it

BASE = {
    "name": "t",
    "parameters": [
        {"name": "peak_c", "type": "discrete", "values": [800, 900]},
        {"name": "ratio", "type": "continuous", "lower": 0.0, "upper": 1.0},
    ],
    "objectives": [{"name": "y", "direction": "maximize", "plugin": "reading", "options": {"field": "y"}}],
    "lab": {"simulator": "thinfilm", "stations": {"furnace": ["f1", "f2"]}},
    "workflow": [
        {"kind": "transfer", "to": "furnace"},
        {"kind": "synthesize", "device": "furnace"},
        {"kind": "transfer", "to": "storage"},
    ],
}


class Clock:
    """Lab seconds, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def former(capacity: int = 3, max_wait_s: float = 600.0, prospects: list[Prospect] | None = None) -> BatchFormer:
    spec = BatchSpec(capacity=capacity, batch_key=["peak_c"], max_wait_s=max_wait_s)
    waiting = prospects if prospects is not None else []
    return BatchFormer("furnace", spec, Clock(), lambda: list(waiting))


# ------------------------------------------------------------------ spec
def _spec(batching: dict[str, Any]) -> Any:
    d = yaml.safe_load(yaml.safe_dump(BASE))
    d["lab"]["batching"] = batching
    return parse_spec(d)


def test_spec_declares_a_batch_station_and_defaults_to_one_sample():
    spec = _spec({"furnace": {"capacity": 4, "batch_key": ["peak_c"], "max_wait_s": 3600}})
    assert spec.lab is not None
    b = spec.lab.batching["furnace"]
    assert (b.capacity, b.batch_key, b.max_wait_s) == (4, ["peak_c"], 3600)
    assert BatchSpec().capacity == 1 and BatchSpec().max_wait_s == 0
    assert _spec({}).lab.batching == {}


@pytest.mark.parametrize(
    "batching, words",
    [
        ({"furnace": {"capacity": 2, "batch_key": ["dwell_h"]}}, "unknown parameters ['dwell_h']"),
        ({"furnace": {"capacity": 0}}, "capacity"),
        ({"furnace": {"batch_key": ["peak_c", "peak_c"]}}, "more than once"),
        ({"furnace": {"max_wait_s": -1}}, "max_wait_s"),
        ({"oven": {"capacity": 2}}, "no synthesize or measure step runs on 'oven'"),
    ],
)
def test_spec_rejects_a_wrong_batch_station(batching, words):
    with pytest.raises((SpecError, ValueError)) as err:
        _spec(batching)
    assert words in str(err.value)


# ------------------------------------------------------------------ the rule, on a fake clock
def test_equal_keys_share_one_batch_that_fires_when_full():
    f = former(capacity=3)
    batches = [f.join(t, f"s{t}", {"peak_c": 900, "ratio": t / 10}) for t in (1, 2, 3)]
    assert batches[0] is batches[1] is batches[2]
    assert [b.id for b in f.poll()] == [batches[0].id]
    assert batches[0].reason == FULL and batches[0].samples == ["s1", "s2", "s3"]
    assert f.recipe(batches[0]) == {"peak_c": 900, "samples": ["s1", "s2", "s3"], "batch": batches[0].id}


def test_different_keys_do_not_share():
    f = former(capacity=3, prospects=[Prospect(9, (800,)), Prospect(10, (900,))])
    a = f.join(1, "s1", {"peak_c": 800})
    b = f.join(2, "s2", {"peak_c": 900})
    assert a is not b and a.samples == ["s1"] and b.samples == ["s2"]
    assert f.poll() == []  # each has a prospect of its own key: both wait


def test_a_part_full_batch_waits_for_a_matching_prospect_until_max_wait_then_fires():
    f = former(capacity=3, max_wait_s=600, prospects=[Prospect(7, (900,))])
    b = f.join(1, "s1", {"peak_c": 900})
    f.clock.now = 599.0  # type: ignore[attr-defined]  # the test's Clock
    assert f.poll() == [] and f.next_deadline() == pytest.approx(1.0)
    f.clock.now = 600.0  # type: ignore[attr-defined]
    assert f.poll() == [b] and b.reason == WAITED and b.samples == ["s1"]


def test_a_part_full_batch_fires_at_once_when_nothing_else_could_join():
    # the only prospect has another key, one arrives too late for the wait, one is already loaded
    prospects = [Prospect(5, (800,)), Prospect(6, (900,), eta_s=601.0), Prospect(1, (900,))]
    f = former(capacity=3, max_wait_s=600, prospects=prospects)
    b = f.join(1, "s1", {"peak_c": 900})
    assert f.poll() == [b] and b.reason == NO_COMPANY


def test_a_prospect_that_arrives_in_time_is_waited_for_and_joins():
    prospects = [Prospect(2, (900,), eta_s=100.0)]
    f = former(capacity=2, max_wait_s=600, prospects=prospects)
    b = f.join(1, "s1", {"peak_c": 900})
    assert f.poll() == []
    f.clock.now = 100.0  # type: ignore[attr-defined]
    prospects.clear()  # it arrived
    assert f.join(2, "s2", {"peak_c": 900}) is b
    assert f.poll() == [b] and b.reason == FULL


def test_a_fired_batch_takes_no_more_members():
    f = former(capacity=3, max_wait_s=0)
    first = f.join(1, "s1", {"peak_c": 900})
    assert f.poll() == [first]
    assert f.join(2, "s2", {"peak_c": 900}) is not first


def test_capacity_one_fires_every_trial_at_once_even_with_company_waiting():
    f = former(capacity=1, max_wait_s=3600, prospects=[Prospect(9, (900,))])
    a, b = f.join(1, "s1", {"peak_c": 900}), f.join(2, "s2", {"peak_c": 900})
    assert a is not b
    assert f.poll() == [a, b] and {a.reason, b.reason} == {FULL}


def test_stats_measure_the_rule():
    f = former(capacity=2, max_wait_s=10)
    f.join(1, "s1", {"peak_c": 900})
    f.join(2, "s2", {"peak_c": 900})
    f.join(3, "s3", {"peak_c": 800})
    f.poll()
    assert f.stats() == {
        "batches": 2,
        "samples": 3,
        "mean_fill": 0.75,
        "by_reason": {FULL: 1, NO_COMPANY: 1, WAITED: 0},
        "max_wait_s": 0.0,
    }


def test_a_trial_without_a_key_value_is_refused():
    with pytest.raises(KeyError, match="batch_key"):
        former().join(1, "s1", {"ratio": 0.5})


# ------------------------------------------------------------------ members on threads: one run of the station
class FurnaceStation:
    """A multi-slot station: counts its runs and the samples each held."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.fail = False

    def set(self, recipe: dict[str, Any]) -> None:
        with self.lock:
            self.runs.append(recipe)
        if self.fail:
            raise RuntimeError("furnace tripped")


def _walk_members(f: BatchFormer, station: FurnaceStation, keys: dict[int, int]) -> dict[int, Any]:
    """Each trial on its own worker thread shares the batch step, as walk.py would call it; every trial is a
    prospect of the former until it joins (the scheduler's view: in flight, not yet at the station)."""
    out: dict[int, Any] = {}
    f.prospects = lambda: [Prospect(t, (k,)) for t, k in keys.items()]

    def member(trial: int) -> None:
        try:
            out[trial] = f.share(trial, f"s{trial}", {"peak_c": keys[trial]}, station.set, poll_s=0.01)
        except Exception as exc:  # noqa: BLE001 - the test asserts what each member got
            out[trial] = exc

    threads = [threading.Thread(target=member, args=(t,)) for t in keys]
    for th in threads:
        th.start()
    for th in threads:
        th.join(BOUND)
    assert not any(th.is_alive() for th in threads)
    return out


@pytest.mark.parametrize("n", [2, 3])
def test_members_with_equal_keys_share_one_run_of_the_station(n):
    station = FurnaceStation()
    keys = dict.fromkeys(range(1, n + 1), 900)
    out = _walk_members(former(capacity=n, max_wait_s=1e9), station, keys)
    assert len(station.runs) == 1  # without the grouping every member would run the station: n runs
    assert sorted(station.runs[0]["samples"]) == [f"s{t}" for t in keys]
    assert len({b.id for b in out.values()}) == 1


def test_without_grouping_capacity_one_runs_the_station_per_trial():
    station = FurnaceStation()
    _walk_members(former(capacity=1), station, {1: 900, 2: 900, 3: 900})
    assert len(station.runs) == 3 and all(len(r["samples"]) == 1 for r in station.runs)


def test_members_with_different_keys_run_separately():
    station = FurnaceStation()
    _walk_members(former(capacity=2, max_wait_s=1e9), station, {1: 900, 2: 800})
    assert sorted(r["peak_c"] for r in station.runs) == [800, 900]


def test_a_failed_run_fails_every_member():
    station = FurnaceStation()
    station.fail = True
    out = _walk_members(former(capacity=2, max_wait_s=1e9), station, {1: 900, 2: 900})
    assert len(station.runs) == 1
    assert sorted(type(e).__name__ for e in out.values()) == ["BatchFailed", "RuntimeError"]
    failed = next(e for e in out.values() if isinstance(e, BatchFailed))
    assert "furnace tripped" in failed.reason


def test_a_waiting_member_leaves_its_batch_when_the_campaign_stops():
    f = former(capacity=3, max_wait_s=1e9, prospects=[Prospect(9, (900,))])
    stop = threading.Event()
    got: list[BaseException] = []

    def member() -> None:
        try:
            f.share(1, "s1", {"peak_c": 900}, lambda r: None, stop.is_set, poll_s=0.01)
        except Cancelled as exc:
            got.append(exc)

    th = threading.Thread(target=member)
    th.start()
    with f.cond:
        assert f.cond.wait_for(lambda: bool(f.open), BOUND)
    stop.set()
    th.join(BOUND)
    assert got and f.open == [] and f.fired == []


def test_joined_at_reservation_the_leader_runs_only_once_every_sample_is_in():
    """Joined when reserving (so the samples go into the batch's station), the batch closes by the rule, but the
    station runs only when the last member's sample is in: a member still on the robot is not fired without."""
    f = former(capacity=2, max_wait_s=1e9)
    batch = f.join(1, "s1", {"peak_c": 900})
    assert f.join(2, "s2", {"peak_c": 900}) is batch
    station = FurnaceStation()
    leader_done = threading.Event()

    def leader() -> None:
        f.run_member(batch, 1, station.set, poll_s=0.01)
        leader_done.set()

    th = threading.Thread(target=leader)
    th.start()
    with f.cond:
        assert f.cond.wait_for(lambda: batch.fired and batch.arrived == {1}, BOUND)
    assert not leader_done.is_set() and station.runs == []  # fired (full), but s2 is not in yet
    assert f.run_member(batch, 2, station.set, poll_s=0.01) is batch
    th.join(BOUND)
    assert leader_done.is_set() and len(station.runs) == 1 and station.runs[0]["samples"] == ["s1", "s2"]


def test_a_leader_cancelled_before_the_run_fails_the_other_members():
    f = former(capacity=2, max_wait_s=1e9)
    batch = f.join(1, "s1", {"peak_c": 900})
    f.join(2, "s2", {"peak_c": 900})
    stop = threading.Event()
    got: dict[int, BaseException] = {}

    def member(trial: int, cancelled: Any) -> None:
        try:
            f.run_member(batch, trial, lambda r: None, cancelled, poll_s=0.01)
        except (Cancelled, BatchFailed) as exc:
            got[trial] = exc

    leader = threading.Thread(target=member, args=(1, stop.is_set))
    leader.start()
    with f.cond:
        assert f.cond.wait_for(lambda: batch.arrived == {1} and batch.fired, BOUND)  # waits for s2 to be in
    stop.set()
    leader.join(BOUND)
    assert not leader.is_alive() and isinstance(got[1], Cancelled)
    give_up = time.monotonic() + BOUND  # only a hung member reaches it (then it ends Cancelled and the test fails)
    member(2, lambda: time.monotonic() > give_up)  # not cancelled itself: must not wait for a run that will not come
    assert isinstance(got[2], BatchFailed) and "cancelled" in got[2].reason
