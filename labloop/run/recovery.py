"""Resume after a crash (even ``kill -9``) or an emergency stop, from what the store holds and what the lab sees.

The store says, for every unfinished trial, which steps ended and which one was running. Each step kind declares
what resume does with a step that was cut short (``StepSpec.resume_policy``): a measurement or a transfer is run
again; a synthesis consumed its sample, so the trial fails with that reason instead of processing the sample twice.
A trial that was measured but not yet evaluated is evaluated from its stored documents; a trial that never started
starts. Nothing finished is run again, and no trial number is created twice (numbers come from the store).

The physical lab outlives the orchestrator, and it has the last word on where a sample is: before anything is
planned, every unfinished sample (failed ones that may still block a station included) is looked up in the lab
(``Lab.locate``: devices that track samples, station and gripper sensors). Each disagreement with the store is
recorded in the audit log (``sample.reconcile``: sample, what the store said, what the lab says) and the trial
continues from where the sample really is. Only when the store puts a sample in a station and the lab cannot tell
does resume stop for an operator (``sample.unlocated``), saying which sample to look for where and where to put it;
the operator's next ``labloop resume`` confirms it is there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from labloop.errors import LabloopError
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
    #: its move goes before any other trial's: the lab says a robot holds its sample, or the move was cut short and
    #: may have finished (a station without a sensor cannot say it holds the sample; were another trial to move
    #: into that station first, it would collide with this sample)
    in_gripper: bool = False
    #: the samples of a program the station still runs (or ran) for this trial's cut-short step: the step is
    #: followed to its end, never started again (:func:`plan_resumptions`)
    reattach: list[str] | None = None


RECONCILE = "sample.reconcile"
UNLOCATED = "sample.unlocated"
MOVES = ("transfer", "buffer", "cleanup")
SETTLED = TERMINAL - {TrialState.FAILED}  # nothing physical is owed for these


def plan_resumptions(
    spec: CampaignSpec,
    store: Store,
    campaign: Campaign,
    entry: str,
    stations: set[str],
    places: AbstractSet[str] = frozenset(),
    locate: Callable[[str], str | None] | None = None,
    program_of: Callable[[str, list[str]], str | None] | None = None,
) -> list[Resumption]:
    """Settle every unfinished trial: reconcile its sample's location with the lab (``locate``), mark cut-short
    steps, fail what must not repeat, and say where the others pick up. ``stations`` are the devices a sample can
    sit in (the trial reserves it again before moving); ``places`` the other positions (racks, storage).

    Raises :class:`~labloop.errors.LabloopError` (after recording the campaign as paused) when the store puts a
    sample in a station and the lab cannot tell whether it is there.

    ``program_of(station, samples)``: whether the station still runs (or ran to its end) the program started for
    exactly the samples in it. A synthesis cut short there is then reattached (the trial follows that program to its
    end, :attr:`Resumption.reattach`) instead of failed: a furnace fires on while its orchestrator is down, and a
    day's firing is not thrown away for a restart. Anything short of that evidence fails the trial as before."""
    kinds = _kinds(spec, stations)
    if program_of is not None:
        program_of = asked_once(program_of)
    trials = store.trials(campaign.id)
    locations = {s.sample_id: s.location for s in store.samples(campaign.id)}
    in_gripper: set[str] = set()
    if locate is not None:
        locations, in_gripper = reconcile(spec, store, campaign, trials, locations, entry, stations, places, locate)
    out: list[Resumption] = []
    cut_moves: set[int] = set()  # trials whose cut-short move is run again
    for t in trials:
        if t.state in SETTLED:
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
        members: list[str] | None = None  # reattached: the samples of the program the station runs on
        if steps:
            last = steps[-1]
            step = spec.workflow[last.index] if last.index < len(spec.workflow) else None
            if step is None:  # a failed sample's cleanup move: the trial had failed already
                start = len(spec.workflow)
            elif last.state in ("running", "interrupted") or (
                last.state == "failed" and t.state == S.INTERRUPTED and not _retry_owed(last, step)
            ):
                if last.state == "running":
                    store.finish_step(last.id, "interrupted", last.run_uid, "cut short by a crash")
                members = _reattachable(t, step, trials, locations, stations, program_of)
                if members is not None:
                    start = last.index
                    store.audit(
                        campaign.id,
                        "trial.reattach",
                        {"trial": t.number, "step": step.label, "station": locations[t.sample_id], "samples": members},
                        user="labloop",
                    )
                elif step.resume_policy == "fail":
                    store.transition(
                        t.id,
                        t.state,
                        S.FAILED,
                        finished_at=utcnow(),
                        failure_reason=f"{step.label}: interrupted while running; the {step.kind} "
                        f"consumed sample {t.sample_id}, so it is not repeated",
                    )
                    out.extend(_cleanup(t, locations.get(t.sample_id, entry), stations))
                    continue
                start = last.index
                if last.kind in MOVES:
                    cut_moves.add(t.id)
            elif last.state == "done":
                # parked: the transfer is still to do; calibrated: the step the calibration came before is still to do
                start = last.index if last.kind in ("buffer", "calibrate") else last.index + 1
            elif _retry_owed(last, step):
                start = last.index  # killed during the retry backoff: the remaining attempts are still owed
            else:  # the step failed for good and the crash came before the trial was marked failed
                store.transition(
                    t.id, t.state, S.FAILED, finished_at=utcnow(), failure_reason=f"{step.label}: {last.error}"
                )
                out.extend(_cleanup(t, locations.get(t.sample_id, entry), stations))
                continue
        location = locations.get(t.sample_id, entry)
        start = _reachable_start(spec, start, location, kinds)
        held = location if location in stations else None
        if start >= len(spec.workflow):
            t = store.transition(t.id, t.state, S.MEASURED, failure_reason=None)  # it failed nothing in the end
            out.append(Resumption(t, start, location, held, evaluate_only=True))
        else:
            out.append(Resumption(t, start, location, held, reattach=members))
        store.audit(
            campaign.id, "trial.resume", {"trial": t.number, "from_step": start, "location": location}, user="labloop"
        )
    for r in out:  # a robot holding a sample can do nothing else until that sample is put down
        cut = r.trial.id in cut_moves and not r.cleanup_only
        r.in_gripper = (r.trial.sample_id in in_gripper or cut) and not r.evaluate_only
    return out


def asked_once(program_of: Callable[[str, list[str]], str | None]) -> Callable[[str, list[str]], str | None]:
    """``program_of``, asked once per station and samples: every member of a firing asks about the same program,
    and each question is a round trip to the station's controller."""
    answers: dict[tuple[str, tuple[str, ...]], str | None] = {}

    def ask(station: str, samples: list[str]) -> str | None:
        key = (station, tuple(samples))
        if key not in answers:
            answers[key] = program_of(station, samples)
        return answers[key]

    return ask


def reattach_lines(resumptions: list[Resumption]) -> list[str]:
    """One line per program followed to its end (its trials named together), for the operator who restarted."""
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for r in resumptions:
        if r.reattach:
            groups.setdefault((r.location, tuple(r.reattach)), []).append(r.trial.number)
    return [
        f"trial{'s' if len(numbers) > 1 else ''} {', '.join(map(str, sorted(numbers)))}: {where} still runs (or "
        f"finished) the program started before the restart for {', '.join(samples)}; following it to its end, "
        "nothing is started again"
        for (where, samples), numbers in groups.items()
    ]


def _reattachable(
    t: Trial,
    step: Any,
    trials: list[Trial],
    locations: dict[str, str],
    stations: set[str],
    program_of: Callable[[str, list[str]], str | None] | None,
) -> list[str] | None:
    """The samples of the program the station still runs (or ran) for ``t``'s cut-short synthesis, when it says so
    for exactly the unfinished samples in it (a furnace fires every crucible inside: all of them or none)."""
    where = locations.get(t.sample_id)
    if program_of is None or step.kind != "synthesize" or where not in stations:
        return None
    inside = sorted(x.sample_id for x in trials if x.state not in SETTLED and locations.get(x.sample_id) == where)
    return inside if program_of(where, inside) is not None else None


def _retry_owed(last: Any, step: Any) -> bool:
    """A rerunnable step that failed with attempts left: the crash came during its retry backoff."""
    return last.state == "failed" and step.resume_policy == "rerun" and last.attempt <= step.retries


def reconcile(
    spec: CampaignSpec,
    store: Store,
    campaign: Campaign,
    trials: Iterable[Trial],
    locations: dict[str, str],
    entry: str,
    stations: set[str],
    places: AbstractSet[str],
    locate: Callable[[str], str | None],
) -> tuple[dict[str, str], set[str]]:
    """Ask the lab where every unfinished sample is; record each disagreement with the store and move the store's
    record to what the lab says. Returns the locations to continue from, and the samples a robot holds.

    The lab's answer wins when it names a station or a place. A sample in a robot's gripper stays recorded at the
    move's source (the move is run again and finishes from the gripper). When the lab cannot tell, the store's word
    stands for a sample in a place; a sample the store puts in a station must be found by an operator: the campaign
    is paused and :class:`LabloopError` says which sample to look for where. When an operator was asked before, this
    resume is the confirmation that the sample is where they were asked to put it."""
    out = dict(locations)
    gripped: set[str] = set()
    asked: dict[str | None, dict] | None = None  # sample (None: an entry without one) -> the request's detail
    lost: list[tuple[Trial, str, str | None]] = []
    for t in trials:
        stored = locations.get(t.sample_id)
        if t.state in SETTLED or stored is None:
            continue  # nothing physical to find (a trial that never started has no sample yet)
        seen = locate(t.sample_id)
        if seen == stored:
            continue
        if seen is None:
            if stored not in stations:
                continue  # the lab cannot tell, and the sample blocks nothing: the store's word stands
            if asked is None:
                asked = _open_requests(store, campaign)
            request = asked.get(t.sample_id)
            if request is not None and request.get("store_said") == stored:
                place = request.get("put_in") or _safe_place(spec, stations, places, entry)
                _record(
                    store,
                    campaign,
                    t,
                    stored,
                    None,
                    place,
                    f"the lab cannot tell; an operator put it in {place} when asked",
                )
                out[t.sample_id] = place
                continue
            lost.append((t, stored, None))
        elif seen in stations or seen in places:
            _record(store, campaign, t, stored, seen, seen, "the lab's word wins")
            out[t.sample_id] = seen
        elif t.state == "failed" and stored not in stations:
            lost.append((t, stored, seen))  # held by a robot, and no cleanup move starts from a station
        else:
            _record(
                store,
                campaign,
                t,
                stored,
                seen,
                None,
                f"in '{seen}' (a gripper): the cut-short move is run again from '{stored}'",
            )
            gripped.add(t.sample_id)
    if lost:
        _ask_operator(spec, store, campaign, lost, entry, stations, places)
    return out, gripped


def _open_requests(store: Store, campaign: Campaign) -> dict[str | None, dict]:
    """The operator requests (``sample.unlocated``) not yet answered: a request is answered by the first
    ``sample.reconcile`` of its sample after it. Why only open ones: a sample asked about once, put back, and cut
    short again in the same station must not have the old answer taken for a new one (it is still in the station;
    taking it as put away moves the trial on while the sample blocks the station)."""
    out: dict[str | None, dict] = {}
    for a in store.audit_log(campaign.id):
        if a.action == UNLOCATED:
            out[a.detail.get("sample")] = a.detail
        elif a.action == RECONCILE:
            out.pop(a.detail.get("sample"), None)
    return out


def unlocated_message(
    sample: str, stored: str, look_in: list[str], put_in: str, seen: str | None = None
) -> tuple[str, str]:
    """The operator's one line, as (problem, fix): which sample, what the store says, where to look, what to do."""
    if seen is None:
        problem = f"sample {sample}: the store says '{stored}', the lab cannot tell"
        where = ", ".join(look_in[:-1]) + f" or {look_in[-1]}" if len(look_in) > 1 else look_in[0]
        fix = f"look for it in {where}, put it in {put_in}, then run `labloop resume`"
    else:
        problem = f"sample {sample}: the store says '{stored}', the lab says it is in '{seen}'"
        fix = f"take it out of {seen}, put it in {put_in}, then run `labloop resume`"
    return problem, fix


def _ask_operator(
    spec: CampaignSpec,
    store: Store,
    campaign: Campaign,
    lost: list[tuple[Trial, str, str | None]],
    entry: str,
    stations: set[str],
    places: AbstractSet[str],
) -> None:
    """Record the campaign as paused for an operator (``labloop resume`` restarts it) and raise with what to do."""
    put_in = _safe_place(spec, stations, places, entry)
    lines = []
    for t, stored, seen in lost:
        look_in = _where_to_look(spec, store, t, stored, entry, _kinds(spec, stations))
        problem, fix = unlocated_message(t.sample_id, stored, look_in, put_in, seen)
        lines.append((problem, fix))
        store.audit(
            campaign.id,
            UNLOCATED,
            {
                "sample": t.sample_id,
                "trial": t.number,
                "store_said": stored,
                "lab_says": seen,
                "look_in": look_in,
                "put_in": put_in,
            },
            user="labloop",
        )
    note = "; ".join(f"{p}; {f}" for p, f in lines)
    store.update_campaign(campaign.id, state="paused", control="pause", note=note)
    store.audit(campaign.id, "campaign.pause", {"reason": note}, user="labloop")
    if len(lines) == 1:
        raise LabloopError(*lines[0])
    raise LabloopError(
        "; ".join(p for p, _ in lines), "; ".join(f"{t.sample_id}: {f}" for (t, _, _), (_, f) in zip(lost, lines))
    )


def _record(
    store: Store, campaign: Campaign, trial: Trial, stored: str, seen: str | None, now: str | None, note: str
) -> None:
    """One ``sample.reconcile`` audit entry; ``now`` (if any) becomes the store's record of the location."""
    if now is not None:
        store.locate_sample(campaign.id, trial.sample_id, now, trial.id)
    store.audit(
        campaign.id,
        RECONCILE,
        {
            "sample": trial.sample_id,
            "trial": trial.number,
            "store_said": stored,
            "lab_says": seen,
            "now": now or stored,
            "note": note,
        },
        user="labloop",
    )


def _kinds(spec: CampaignSpec, stations: set[str]) -> dict[str, list[str]]:
    kinds = {s: [s] for s in stations}
    if spec.lab is not None:
        kinds.update({k: list(v) for k, v in spec.lab.stations.items()})
    return kinds


def _reachable_start(spec: CampaignSpec, start: int, location: str, kinds: dict[str, list[str]]) -> int:
    """A processing step needs the sample in a device of its kind: when the lab says it is elsewhere, go back to
    the transfer that brings it there (transfers are safe to run again)."""
    if start >= len(spec.workflow):
        return start
    step = spec.workflow[start]
    if step.kind == "transfer" or location in kinds.get(step.device or "", [step.device]):
        return start
    for j in range(start - 1, -1, -1):
        if spec.workflow[j].kind == "transfer":
            return j if spec.workflow[j].to == step.device else start
    return start


def _safe_place(spec: CampaignSpec, stations: set[str], places: AbstractSet[str], entry: str) -> str:
    """Where a sample taken out by hand goes: the workflow's last place (as for a failed sample), else storage."""
    kinds = _kinds(spec, stations)
    ends = [s.to for s in spec.workflow if s.kind == "transfer" and s.to and s.to not in kinds]
    if ends:
        return ends[-1]
    return "storage" if "storage" in places or not places else sorted(places)[0]


def _where_to_look(
    spec: CampaignSpec, store: Store, trial: Trial, stored: str, entry: str, kinds: dict[str, list[str]]
) -> list[str]:
    """Where the sample may be: where the store says, where it came from, and the far end of a cut-short move."""

    def name(position: str) -> str:
        devices = kinds.get(position, [position])
        return position if devices == [position] else "/".join(devices)

    look = [stored]
    path = [entry] + [s.to for s in spec.workflow if s.kind == "transfer" and s.to]
    here = next((i for i, p in enumerate(path) if stored == p or stored in kinds.get(p, [])), None)
    steps = store.steps(trial.id)
    last = steps[-1] if steps else None
    if last is not None and last.kind in MOVES and last.state != "done":
        dest = spec.workflow[last.index].to if last.kind == "transfer" else last.label.partition(":")[2]
        if dest:
            look.append(name(dest))
        if last.device:
            look.append(f"the gripper of {last.device}")
    if here:
        look.append(name(path[here - 1]))
    return list(dict.fromkeys(look))


def _cleanup(trial: Trial, location: str, stations: set[str]) -> list[Resumption]:
    """A failed trial whose sample still sits in a station: take it out, or that station stays blocked."""
    if location not in stations:
        return []
    return [Resumption(trial, 0, location, location, cleanup_only=True)]
