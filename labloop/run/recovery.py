"""Resume after a crash (even ``kill -9``) or an emergency stop, from what the store holds.

The store says, for every unfinished trial, which steps ended and which one was running. Each step kind declares
what resume does with a step that was cut short (``StepSpec.resume_policy``): a measurement or a transfer is run
again; a synthesis consumed its sample, so the trial fails with that reason instead of processing the sample twice.
A trial that was measured but not yet evaluated is evaluated from its stored documents; a trial that never started
starts. Nothing finished is run again, and no trial number is created twice (numbers come from the store).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labloop.spec import CampaignSpec
from labloop.states import TERMINAL, TrialState
from labloop.store import Store
from labloop.store.schema import Campaign, Trial, utcnow

S = TrialState


@dataclass
class Resumption:
    """Where a trial interrupted by a crash or an emergency stop picks up."""

    trial: Trial
    start_step: int
    location: str
    held: str | None  # the station the sample sits in (reserved again before anything moves)
    evaluate_only: bool = False
    cleanup_only: bool = False  # a failed trial whose sample must leave the station it blocks


def plan_resumptions(spec: CampaignSpec, store: Store, campaign: Campaign, entry: str,
                     stations: set[str], places: set[str] = frozenset(),
                     locate: Callable[[str], str | None] | None = None) -> list[Resumption]:
    """Settle every unfinished trial: mark cut-short steps, fail what must not repeat, and say where the others
    pick up. ``stations`` are the devices a sample can sit in (the trial reserves it again before moving)."""
    locations = {s.sample_id: s.location for s in store.samples(campaign.id)}
    out: list[Resumption] = []
    for t in store.trials(campaign.id):
        if t.state in TERMINAL and t.state != S.FAILED:
            continue
        if t.state == S.FAILED:  # a failed sample may still block a station (crash before or during its cleanup)
            for st in store.steps(t.id):
                if st.state == "running":
                    store.finish_step(st.id, "interrupted", st.run_uid, "cut short by a crash")
            out.extend(_cleanup(t, locations.get(t.sample_id, entry), stations))
            continue
        if t.state == S.PROPOSED and spec.scheduling.approval:
            continue  # still waits for an operator; the scheduler launches it once approved
        if t.state == S.MEASURED:  # every step ended; only the evaluation is owed
            out.append(Resumption(t, len(spec.workflow), locations.get(t.sample_id, entry), None, evaluate_only=True))
            continue
        if t.state == S.RUNNING:  # its process died: say so in the store before deciding what comes next
            t = store.transition(t.id, S.RUNNING, S.INTERRUPTED, failure_reason="cut short by a crash")
        steps = store.steps(t.id)
        start = 0
        if steps:
            last = steps[-1]
            step = spec.workflow[last.index] if last.index < len(spec.workflow) else None
            if step is None:  # a failed sample's cleanup move: the trial had failed already
                start = len(spec.workflow)
            elif last.state in ("running", "interrupted") or (last.state == "failed" and t.state == S.INTERRUPTED
                                                              and not _retry_owed(last, step)):
                if last.state == "running":
                    store.finish_step(last.id, "interrupted", last.run_uid, "cut short by a crash")
                if step.resume_policy == "fail":
                    store.transition(t.id, t.state, S.FAILED, finished_at=utcnow(),
                                     failure_reason=f"{step.label}: interrupted while running; the {step.kind} "
                                                    f"consumed sample {t.sample_id}, so it is not repeated")
                    out.extend(_cleanup(t, locations.get(t.sample_id, entry), stations))
                    continue
                start = last.index
            elif last.state == "done":
                start = last.index if last.kind == "buffer" else last.index + 1  # parked: the transfer is to do
            elif _retry_owed(last, step):
                start = last.index  # killed during the retry backoff: the remaining attempts are still owed
            else:  # the step failed for good and the crash came before the trial was marked failed
                store.transition(t.id, t.state, S.FAILED, finished_at=utcnow(),
                                 failure_reason=f"{step.label}: {last.error}")
                out.extend(_cleanup(t, locations.get(t.sample_id, entry), stations))
                continue
        location = locations.get(t.sample_id, entry)
        if steps and steps[-1].kind in ("transfer", "buffer") and steps[-1].state != "done":
            # a move was cut short: the sample is at its source, its destination or in the gripper; ask the lab
            seen = locate(t.sample_id) if locate else None
            if seen in places or seen in stations:
                location = seen
        held = location if location in stations else None
        if start >= len(spec.workflow):
            t = store.transition(t.id, t.state, S.MEASURED)
            out.append(Resumption(t, start, location, held, evaluate_only=True))
        else:
            out.append(Resumption(t, start, location, held))
        store.audit(campaign.id, "trial.resume", {"trial": t.number, "from_step": start, "location": location},
                    user="labloop")
    return out


def _retry_owed(last: Any, step: Any) -> bool:
    """A rerunnable step that failed with attempts left: the crash came during its retry backoff."""
    return last.state == "failed" and step.resume_policy == "rerun" and last.attempt <= step.retries


def _cleanup(trial: Trial, location: str, stations: set[str]) -> list[Resumption]:
    """A failed trial whose sample still sits in a station: take it out, or that station stays blocked."""
    if location not in stations:
        return []
    return [Resumption(trial, 0, location, location, cleanup_only=True)]
