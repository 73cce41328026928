"""Trials as table rows, for ``labloop export`` (csv | json) and ``labloop status``.

One row per trial: ``trial``, ``state``, each parameter by name, each objective by name, ``failure_reason``,
``started``, ``finished``. Values are exactly what the store holds.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any

from labloop.run import best as _best
from labloop.spec import CampaignSpec, spec_from_text
from labloop.store import Store
from labloop.store.schema import Campaign, Trial
from labloop.store.times import utc


def _iso(d: datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite hands back naive datetimes; they were stored as UTC)."""
    if d is None:
        return None
    return utc(d).isoformat()


def campaign_spec(campaign: Campaign) -> CampaignSpec:
    return spec_from_text(campaign.spec_text, f"<stored campaign {campaign.name}>")


def _calibrated(spec: CampaignSpec) -> bool:
    return spec.lab is not None and bool(spec.lab.calibration)


def columns(spec: CampaignSpec) -> list[str]:
    names = [o.name for o in spec.objectives] + [o.name for o in spec.outcome_constraints]
    # campaigns with a maximum calibration age say which trials had a reading beyond it
    flag = ["calibration_expired"] if _calibrated(spec) else []
    return ["trial", "state", *spec.parameter_names(), *names, "failure_reason", "started", "finished", *flag]


def expired_trials(store: Store, campaign_id: int) -> set[int]:
    """Trials (ids) with a run flagged ``calibration_expired`` in its start document."""
    from sqlalchemy import select

    from labloop.store.schema import Document

    with store.session() as s:
        q = select(Document.trial_id, Document.doc).where(Document.campaign_id == campaign_id, Document.name == "start")
        return {tid for tid, doc in s.execute(q) if tid is not None and (doc or {}).get("calibration_expired")}


def rows(spec: CampaignSpec, trials: list[Trial], expired: set[int] | None = None) -> list[dict[str, Any]]:
    out = []
    objectives = [o.name for o in spec.objectives] + [o.name for o in spec.outcome_constraints]
    for t in trials:
        row: dict[str, Any] = {"trial": t.number, "state": t.state}
        for p in spec.parameter_names():
            row[p] = t.params.get(p)
        for o in objectives:
            row[o] = (t.values or {}).get(o)
        row["failure_reason"] = t.failure_reason
        row["started"] = _iso(t.started_at)
        row["finished"] = _iso(t.finished_at)
        if _calibrated(spec):
            row["calibration_expired"] = t.id in (expired or set())
        out.append(row)
    return out


def export(store: Store, fmt: str, campaign_ref: str | None = None) -> str:
    campaign = store.campaign(campaign_ref)
    spec = campaign_spec(campaign)
    data = rows(spec, store.trials(campaign.id), expired_trials(store, campaign.id) if _calibrated(spec) else None)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(spec), lineterminator="\n")
    writer.writeheader()
    for row in data:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def best_trial(spec: CampaignSpec, trials: list[Trial]) -> Trial | None:
    """The campaign's best trial by the one definition (:mod:`labloop.run.best`: feasible first)."""
    return _best.best_trial(spec, trials)
