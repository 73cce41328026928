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
from labloop.data.view import campaign_view
from labloop.errors import LabloopError
from labloop.spec import CampaignSpec
from labloop.store import Store
from labloop.store.schema import Campaign, Trial

#: How many of the best trials get their dock data (spectra, patterns) drawn.
TOP_TRIALS = 3


@dataclass
class TrialDetail:
    """A trial looked at closely: its process points ``signal -> [(t, value)]``, the units its runs declare, and its
    documents (for the dock's asset files)."""

    trial: Trial
    streams: dict[str, list[tuple[float, float]]]
    units: dict[str, str]
    documents: list[tuple[str, dict[str, Any]]]


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


def ranked(spec: CampaignSpec, trials: list[Trial]) -> list[Trial]:
    """Done trials with a value of the first objective, best first (ties: the earlier trial)."""
    o = spec.objectives[0]
    done = [t for t in trials if t.state == "done" and (t.values or {}).get(o.name) is not None]
    sign = -1.0 if o.direction == "maximize" else 1.0
    if o.direction == "band":
        assert o.band is not None
        mid = 0.5 * (o.band[0] + o.band[1])
        return sorted(done, key=lambda t: (abs(float(t.values[o.name]) - mid), t.number))
    return sorted(done, key=lambda t: (sign * float(t.values[o.name]), t.number))


def gather(store: Store, campaign: Campaign, asked: list[int] | tuple[int, ...] = ()) -> ReportData:
    """Everything the report draws. Refuses (before anything is written) a trial number the campaign lacks."""
    spec = campaign_spec(campaign)
    trials = store.trials(campaign.id)
    numbers = {t.number: t for t in trials}
    missing = [n for n in asked if n not in numbers]
    if missing:
        have = (f"it has trials {trials[0].number}-{trials[-1].number}" if trials else "it has no trials yet")
        raise LabloopError(f"campaign '{campaign.name}' (id {campaign.id}) has no trial "
                           f"{', '.join(str(n) for n in missing)}: {have}",
                           "give trial numbers from `labloop status` / `labloop export`, or leave out --trial")
    view = campaign_view(store, campaign)  # the one campaign view: the report names the best that status names
    best = numbers.get(view["best"]["trial"]) if view["best"] else None
    data = ReportData(campaign, spec, trials, best, asked=list(dict.fromkeys(asked)))
    data.top = [t.number for t in ranked(spec, trials)[:TOP_TRIALS]]
    wanted = list(dict.fromkeys(([data.best.number] if data.best else []) + data.asked + data.top))
    for n in wanted:
        data.details[n] = _detail(store, numbers[n])
    return data


def _detail(store: Store, trial: Trial) -> TrialDetail:
    docs = store.documents(trial_id=trial.id)
    streams: dict[str, list[tuple[float, float]]] = {}
    for p in store.process_points(trial.id):  # ordered by time
        streams.setdefault(p.signal, []).append((p.t, p.value))
    units = {k: str(v.get("units")) for n, d in docs if n == "descriptor"
             for k, v in (d.get("data_keys") or {}).items() if isinstance(v, dict) and v.get("units")}
    return TrialDetail(trial, streams, units, docs)
