"""What a campaign page shows, read from the store as one JSON-ready dict.

The page renders this snapshot, then applies the live events pushed to it; on events that change the structure
(a trial proposed or finished, a pause) it asks for a fresh snapshot. The store is the truth, so the snapshot is
always right even when the page missed something; the events only make it live.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from labloop.data.export import best_trial, campaign_spec
from labloop.errors import LabloopError
from labloop.run.liveness import liveness
from labloop.store import Store
from labloop.store.events import last_seq
from labloop.store.schema import Campaign, ProcessPoint

#: process-stream points per running step sent with a snapshot (the live stream adds the rest)
STREAM_POINTS = 400


def find_campaign(store: Store, name: str) -> Campaign | None:
    """The campaign called ``name`` (newest first), or with that id; None if there is none."""
    try:
        return store.campaign(name)
    except LabloopError:
        return None


def campaign_list(store: Store) -> list[dict[str, Any]]:
    rows = []
    for c in store.campaigns():
        rows.append({"id": c.id, "name": c.name, "state": c.state, "stop_reason": c.stop_reason,
                     "created": _iso(c.created_at), "liveness": liveness(c).state})
    return rows


def campaign_snapshot(store: Store, c: Campaign) -> dict[str, Any]:
    spec = campaign_spec(c)
    trials = store.trials(c.id)
    steps = store.steps(campaign_id=c.id)
    by_id = {t.id: t for t in trials}
    objectives = [{"name": o.name, "direction": o.direction, "target": o.target, "unit": o.unit}
                  for o in spec.objectives]
    rows = []
    for t in trials:
        rows.append({"number": t.number, "state": t.state, "source": t.source, "params": t.params,
                     "values": t.values or {}, "failure": t.failure_reason, "sample": t.sample_id,
                     "started": _iso(t.started_at), "finished": _iso(t.finished_at)})
    running = []
    for s in steps:
        if s.state != "running":
            continue
        t = by_id.get(s.trial_id)
        points = _latest_points(store, s.trial_id) if t is not None else []
        running.append({"trial": t.number if t else None, "sample": t.sample_id if t else None, "step": s.label,
                        "kind": s.kind, "device": s.device, "attempt": s.attempt, "since": _iso(s.started_at),
                        "run_uid": s.run_uid,
                        "stream": [{"signal": p.signal, "t": p.t, "value": p.value} for p in points]})
    life = liveness(c)
    log = store.audit_log(c.id)
    quarantined = sorted({(a.detail or {}).get("device") for a in log if a.action == "station.quarantine"} - {None})
    alerts = [{"at": _iso(a.at), "action": a.action, "detail": a.detail} for a in log
              if a.action.startswith(("station.", "campaign.alert", "campaign.estop", "campaign.pause"))][-20:]
    best = best_trial(spec, trials)
    return {
        "id": c.id, "name": c.name, "state": c.state, "stop_reason": c.stop_reason, "note": c.note,
        "liveness": {"state": life.state, "text": life.describe()},
        "objectives": objectives,
        "parameters": spec.parameter_names(),
        "budget": spec.stopping.max_trials,
        "approval": bool(spec.scheduling.approval),
        "awaiting": [t.number for t in trials if t.state == "proposed" and spec.scheduling.approval],
        "trials": rows,
        "best": None if best is None else {"number": best.number, "values": best.values, "params": best.params},
        "running": running,
        "samples": [{"sample": s.sample_id, "location": s.location, "trial": by_id[s.trial_id].number
                     if s.trial_id in by_id else None} for s in store.samples(c.id)],
        "quarantined": quarantined,
        "alerts": alerts,
        "last_seq": last_seq(store, c.id),
    }



def _latest_points(store: Store, trial_id: int) -> list[ProcessPoint]:
    """The newest :data:`STREAM_POINTS` process points of a trial, oldest first (a long deposition has many more;
    reading them all for every page refresh would cost the daemon more than the page needs)."""
    with store.session() as s:
        q = (select(ProcessPoint).where(ProcessPoint.trial_id == trial_id)
             .order_by(ProcessPoint.id.desc()).limit(STREAM_POINTS))
        return sorted(s.scalars(q), key=lambda p: p.t)


def _iso(t: Any) -> str | None:
    return t.isoformat() if t is not None else None
