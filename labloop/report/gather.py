"""What a campaign report shows, read from the store once: the campaign, its spec, its trials, the best trial, the
process streams and documents of the trials the report looks at closely.

Why one gathering step: the figure modules then only draw from plain data (no store, no SQL), so they are quick to
test and the report reads the store in a handful of queries even for a 1,000-trial campaign (documents and process
points are read only for the few trials shown in detail, never for all of them).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from labloop.data.export import campaign_spec
from labloop.data.view import campaign_view, time_scales
from labloop.errors import LabloopError
from labloop.run.best import ranked as best_ranked
from labloop.spec import CampaignSpec
from labloop.store import Store
from labloop.store.schema import Campaign, Trial

#: How many of the best trials get their dock data (spectra, patterns) drawn.
TOP_TRIALS = 3


@dataclass
class Stream:
    """One monitored signal of one step, on process time: minutes of the lab's clock from the step's start (the
    simulated clock for a simulated lab: wall seconds x time scale), readings from before the step left out (a
    monitor's first value is the device's last reading, often from a previous step)."""

    step: str
    points: list[tuple[float, float]]  # (minutes from the step's start, value)
    end: float | None  # minutes from the step's start to its end (the last value holds until then)
    stale: int = 0  # readings from before the step that were left out


@dataclass
class TrialDetail:
    """A trial looked at closely: its process streams ``signal -> Stream``, the units its runs declare, its
    documents (for the dock's asset files) and its asset files that are not as recorded (``labloop verify``)."""

    trial: Trial
    streams: dict[str, Stream]
    units: dict[str, str]
    documents: list[tuple[str, dict[str, Any]]]
    bad_assets: dict[str, str] = field(default_factory=dict)  # file path -> "missing" / "altered: ..."


@dataclass
class ReportData:
    campaign: Campaign
    spec: CampaignSpec
    trials: list[Trial]
    best: Trial | None
    details: dict[int, TrialDetail] = field(default_factory=dict)  # by trial number
    asked: list[int] = field(default_factory=list)  # trial numbers given with --trial
    top: list[int] = field(default_factory=list)  # the best done trials, best first (dock data)

    @property
    def counts(self) -> dict[str, int]:
        """Trials by state, most frequent first."""
        return dict(Counter(t.state for t in self.trials).most_common())

    @property
    def done(self) -> list[Trial]:
        return [t for t in self.trials if t.state == "done" and self.spec.objectives[0].name in (t.values or {})]


def gather(store: Store, campaign: Campaign, asked: list[int] | tuple[int, ...] = ()) -> ReportData:
    """Everything the report draws. Refuses (before anything is written) a trial number the campaign lacks."""
    spec = campaign_spec(campaign)
    trials = store.trials(campaign.id)
    numbers = {t.number: t for t in trials}
    missing = [n for n in asked if n not in numbers]
    if missing:
        have = f"it has trials {trials[0].number}-{trials[-1].number}" if trials else "it has no trials yet"
        raise LabloopError(
            f"campaign '{campaign.name}' (id {campaign.id}) has no trial {', '.join(str(n) for n in missing)}: {have}",
            "give trial numbers from `labloop status` / `labloop export`, or leave out --trial",
        )
    view = campaign_view(store, campaign)  # the one campaign view: the report names the best that status names
    best = numbers.get(view["best"]["trial"]) if view["best"] else None
    data = ReportData(campaign, spec, trials, best, asked=list(dict.fromkeys(asked)))
    data.top = [t.number for t in best_ranked(spec, trials)[:TOP_TRIALS]]  # feasible only, best first
    wanted = list(dict.fromkeys(([data.best.number] if data.best else []) + data.asked + data.top))
    scales = time_scales(store, campaign.id, spec)
    bad = bad_assets(store, campaign.id) if wanted else {}
    for n in wanted:
        data.details[n] = _detail(store, numbers[n], scales)
        data.details[n].bad_assets = bad.get(numbers[n].id, {})
    return data


def _scale_at(scales: list[tuple[float, float]], t: float) -> float:
    return next((s for at, s in reversed(scales) if at <= t), scales[0][1])


def _detail(store: Store, trial: Trial, scales: list[tuple[float, float]]) -> TrialDetail:
    docs = store.documents(trial_id=trial.id)
    starts = {d.get("uid"): d for n, d in docs if n == "start"}
    stops = {d.get("run_start"): d for n, d in docs if n == "stop"}
    streams: dict[str, Stream] = {}
    for p in store.process_points(trial.id):  # ordered by time
        start = starts.get(p.run_uid)
        t0 = float(start.get("time", p.t)) if start else p.t
        scale = _scale_at(scales, t0)
        step = str(start.get("step") or start.get("plan_name") or "step") if start else "step"
        key = p.signal if p.signal not in streams or streams[p.signal].step == step else f"{p.signal} ({step})"
        if key not in streams:
            stop = stops.get(p.run_uid)
            end = (float(stop["time"]) - t0) * scale / 60.0 if stop and "time" in stop else None
            streams[key] = Stream(step, [], end)
        if p.t < t0:
            streams[key].stale += 1
            continue
        streams[key].points.append(((p.t - t0) * scale / 60.0, p.value))
    units = {
        k: str(v.get("units"))
        for n, d in docs
        if n == "descriptor"
        for k, v in (d.get("data_keys") or {}).items()
        if isinstance(v, dict) and v.get("units")
    }
    return TrialDetail(trial, streams, units, docs)


def bad_assets(store: Store, campaign_id: int) -> dict[int, dict[str, str]]:
    """Trial id -> {asset file: what ``labloop verify`` says of it} for the files that are missing or altered."""
    from labloop.store.assets import verify

    out: dict[int, dict[str, str]] = {}
    for p in verify(store, campaign_id)[1]:
        if p.trial_id is not None:
            out.setdefault(p.trial_id, {})[p.path] = f"{p.kind} ({p.detail})"
    return out
