"""A trial that failed on the lab (a device fault, a crash, the campaign's end) says nothing about its recipe: the
strategy is not taught "do not go there" by it, while a measurement an objective plugin refused still is
(labloop/run/failures.py ``failed_on_the_lab``; labloop/strategy/base.py ``observations_from``)."""

from __future__ import annotations

from types import SimpleNamespace

from running import start, two_chamber

from labloop.errors import LabloopError
from labloop.run.failures import failed_on_the_lab
from labloop.run.objectives import SheetResistance
from labloop.states import TrialState
from labloop.strategy.base import observations_from

S = TrialState
LABELS = {"transfer:deposition", "synthesize:deposition", "measure:probe"}


def _trial(state, reason=None, x=0.0):
    return SimpleNamespace(state=state, params={"x": x}, values={}, failure_reason=reason)


def test_which_failures_are_the_labs():
    assert failed_on_the_lab("synthesize:deposition: chamber1: RF generator reports no forward power", LABELS)
    assert failed_on_the_lab("measure:probe: interrupted while running; the measure consumed sample S-1", LABELS)
    assert failed_on_the_lab("the campaign ended before the trial finished (budget)", LABELS)
    assert not failed_on_the_lab("objective 'sheet_resistance' (plugin 'p'): the film is not conductive", LABELS)
    assert not failed_on_the_lab("outcome constraint 'impurity' (plugin 'q') raised ValueError: x", LABELS)
    assert not failed_on_the_lab(None, LABELS)


def test_observations_leave_out_only_the_failures_it_is_told_are_not_data():
    trials = [
        _trial(S.DONE, x=0.1),
        _trial(S.FAILED, "synthesize:deposition: timeout: the chamber did not finish in time", x=0.2),
        _trial(S.FAILED, "objective 'sheet_resistance' (plugin 'p'): no film", x=0.3),
        _trial(S.REJECTED, "rejected by ann: too hot", x=0.4),
        _trial(S.RUNNING, x=0.5),
    ]
    every = observations_from(trials)
    assert [o.params["x"] for o in every] == [0.1, 0.2, 0.3, 0.4]  # without a rule: every failure is data
    kept = observations_from(trials, lambda t: failed_on_the_lab(t.failure_reason, LABELS))
    assert [(o.params["x"], o.failed) for o in kept] == [(0.1, False), (0.3, True), (0.4, True)]


def test_a_dead_chamber_does_not_teach_the_strategy_to_avoid_its_recipes(tmp_path):
    # sequential: each ask comes after the trial before it ended, so asks after the first fault exist whatever the
    # machine's load (async, a loaded machine can propose all six before the first fault is recorded, and a
    # lookahead re-ask keeps its trial's proposed_at); the observations are built by the same code in every mode
    data = two_chamber(
        max_trials=6, options={"dead_after": 1}, scheduling={"mode": "sequential", "quarantine_after": 2}
    )
    data["strategy"] = {"name": "recording_strategy:RecordingStrategy", "initial_design": 1}
    store, runner = start(data, tmp_path)
    runner.run()
    trials = store.trials(runner.campaign.id)
    failed = [t for t in trials if t.state == S.FAILED]
    assert len(failed) == 2 and all("RF generator" in t.failure_reason for t in failed)
    first_fault = min(t.finished_at for t in failed)
    later = [t for t in trials if t.proposed_at > first_fault]
    assert later, "no proposal was made after a chamber fault: the test would prove nothing"
    assert all(t.info["failed_seen"] == 0 for t in trials)  # the faults never reached the strategy as failures
    assert max(t.info["seen"] for t in later) >= 1  # while the measured results did
    store.close()


class PickySheetResistance(SheetResistance):
    """The demo's objective, refusing every film deposited above 0.6 Pa of oxygen (a measurement's QC)."""

    def __call__(self, data):
        if float(data.params["o2_pressure"]) > 0.6:
            raise LabloopError("the film is too resistive for the probe's range", "measure it on the four-point rig")
        return super().__call__(data)


def test_a_refused_measurement_is_still_learned_as_a_failure(tmp_path):
    data = two_chamber(max_trials=8, scheduling={"mode": "sequential"})  # sequential: see the test above
    data["strategy"] = {"name": "recording_strategy:RecordingStrategy", "initial_design": 1}
    data["objectives"][0]["plugin"] = "test_lab_faults_not_learned:PickySheetResistance"
    store, runner = start(data, tmp_path)
    runner.run()
    trials = store.trials(runner.campaign.id)
    refused = [t for t in trials if t.state == S.FAILED]
    assert refused and all(t.failure_reason.startswith("objective 'sheet_resistance'") for t in refused)
    first = min(t.finished_at for t in refused)
    after = [t for t in trials if t.proposed_at > first]
    assert after and max(t.info["failed_seen"] for t in after) >= 1
    store.close()
