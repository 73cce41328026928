"""Times of real devices are real seconds: only simulated devices' timeouts and retry backoffs are divided by the
simulator's ``time_scale`` (a remote instrument's 10 s backoff must stay 10 s, so a retry can wait for its agent)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from labloop.run.executor import StepFailed
from labloop.run.lab import build_lab
from labloop.run.walk import TrialWalker
from labloop.spec import LabSpec, StepSpec

TS = 3600.0


def lab_spec() -> LabSpec:
    return LabSpec(
        simulator="thinfilm",
        time_scale=TS,
        options={"chambers": 1},
        devices={"plate": {"driver": "hotplate", "config": {"host": "127.0.0.1", "port": 9}}},
    )


def test_the_lab_knows_which_devices_are_real():
    lab = build_lab(lab_spec())
    assert lab.real == {"plate"} and "probe" in lab.devices
    assert lab.time_scale("plate", TS) == 1.0 and lab.time_scale("probe", TS) == TS


@pytest.mark.parametrize("device, expected", [("plate", [10.0, 20.0]), ("probe", [10.0 / TS, 20.0 / TS])])
def test_retry_backoff_is_real_seconds_for_a_real_device_scaled_for_a_simulated_one(device, expected):
    step = StepSpec(kind="measure", device=device, retries=2, retry_backoff=10.0)
    waits: list[float] = []

    class Run:
        def run_step(self, *a):
            raise StepFailed(step, 0, "the agent does not answer", device)

    estopped = SimpleNamespace(is_set=lambda: False, wait=lambda d: waits.append(d) or False)
    ctx = SimpleNamespace(
        workflow=[step],
        cancelled=lambda: False,
        observer=lambda *a: None,
        announce_step=lambda *a: None,
        time_scale=TS,
        spec=SimpleNamespace(stopping=SimpleNamespace(max_trials=5)),
        lab=build_lab(lab_spec()),
        res=SimpleNamespace(record=lambda *a: False),
        store=SimpleNamespace(audit=lambda *a, **k: None),
        campaign=SimpleNamespace(id=1),
        estopped=estopped,
    )
    walker = TrialWalker(ctx, engines=None, evaluate=lambda t: t)  # type: ignore[arg-type]  # only attempts runs
    with pytest.raises(StepFailed):
        walker.attempts(Run(), SimpleNamespace(number=1), 0, device, None)
    assert waits == pytest.approx(expected)
