"""A campaign's status as plain data: what ``labloop status`` prints, locally or from a daemon.

Why data and not print calls: the daemon answers ``status`` over the wire with this dict, and the command line
prints the same dict whether it read the store itself or asked a daemon, so the two can never drift apart.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from labloop.run.liveness import ACTIVE_STATES, liveness
from labloop.spec import CampaignSpec
from labloop.store import Store
from labloop.store.events import last_seq
from labloop.store.schema import Campaign, ProcessPoint
from .export import best_trial, campaign_spec

#: process-stream points per running step sent with a page's snapshot (the live stream adds the rest)
STREAM_POINTS = 400


def pick_campaign(st: Store, ref: str | int | None) -> Any:
    """The campaign a command acts on: the one named, else the running one (the newest of several), else the
    latest."""
    if ref is not None:
        return st.campaign(ref)
    running = [c for c in st.campaigns() if c.state in ACTIVE_STATES]
    return running[-1] if running else st.campaign(None)


def fmt_params(spec: CampaignSpec, params: dict[str, Any]) -> str:
    parts = []
    for name in spec.parameter_names():
        v = params.get(name)
        parts.append(f"{name}={v:.4g}" if isinstance(v, float) else f"{name}={v}")
    return " ".join(parts)


def snapshot(st: Store, ref: str | int | Campaign | None, *, page: bool = False) -> dict[str, Any]:
    """Everything ``status`` shows about one campaign, JSON-ready. ``page``: also what the dashboard's campaign page
    draws (trials, objectives, samples, alerts, each running step's newest process points, the last event's seq),
    so the command line, the daemon and the page read one campaign the same way."""
    c = ref if isinstance(ref, Campaign) else pick_campaign(st, ref)
    spec = campaign_spec(c)
    trials = st.trials(c.id)
    running_steps = [s for s in st.steps(campaign_id=c.id) if s.state == "running"]
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    life = liveness(c)
    by_id = {t.id: t for t in trials}
    steps = []
    for s in running_steps:
        t = by_id.get(s.trial_id)
        steps.append({"trial": t.number if t else None, "sample": t.sample_id if t else None, "label": s.label,
                      "device": s.device, "attempt": s.attempt,
                      "since": s.started_at.strftime("%H:%M:%S") if s.started_at else None})
        if page:
            steps[-1]["stream"] = [{"signal": p.signal, "t": p.t, "value": p.value}
                                   for p in (_latest_points(st, s.trial_id) if t is not None else [])]
    best = best_trial(spec, trials)
    o = spec.objectives[0]
    latest = next((t for t in reversed(trials) if t.source == "model" and (t.info or {}).get("importance")), None)
    out = {
        "campaign": {"id": c.id, "uid": c.uid, "name": c.name, "state": c.state, "note": c.note,
                     "stop_reason": c.stop_reason},
        "liveness": {"state": life.state, "alive": life.alive, "describe": life.describe()},
        "counts": counts, "budget": spec.stopping.max_trials, "running_steps": steps,
        "awaiting": [t.number for t in trials if t.state == "proposed" and spec.scheduling.approval],
        "best": None if best is None else {"trial": best.number, "objective": o.name,
                                           "value": float(best.values[o.name]), "unit": o.unit,
                                           "params": fmt_params(spec, best.params)},
        "model": None if latest is None else {"trial": latest.number, "importance": latest.info["importance"],
                                              "predicted_best": latest.info.get("predicted_best")},
    }
    if page:
        out.update(_page_detail(st, c, spec, trials, by_id))
    return out


def _page_detail(st: Store, c: Campaign, spec: CampaignSpec, trials: list[Any], by_id: dict[int, Any]) -> dict[str, Any]:
    log = st.audit_log(c.id)
    quarantined = sorted({(a.detail or {}).get("device") for a in log if a.action == "station.quarantine"} - {None})
    return {
        "objectives": [{"name": o.name, "direction": o.direction, "target": o.target, "unit": o.unit}
                       for o in spec.objectives],
        "parameters": spec.parameter_names(),
        "approval": bool(spec.scheduling.approval),
        "trials": [{"number": t.number, "state": t.state, "source": t.source, "params": t.params,
                    "values": t.values or {}, "failure": t.failure_reason, "sample": t.sample_id,
                    "started": _iso(t.started_at), "finished": _iso(t.finished_at)} for t in trials],
        "samples": [{"sample": s.sample_id, "location": s.location,
                     "trial": by_id[s.trial_id].number if s.trial_id in by_id else None} for s in st.samples(c.id)],
        "quarantined": quarantined,
        "alerts": [{"at": _iso(a.at), "action": a.action, "detail": a.detail} for a in log
                   if a.action.startswith(("station.", "campaign.alert", "campaign.estop", "campaign.pause"))][-20:],
        "last_seq": last_seq(st, c.id),
    }


def _latest_points(st: Store, trial_id: int) -> list[ProcessPoint]:
    """The newest :data:`STREAM_POINTS` process points of a trial, oldest first (a long deposition has many more;
    reading them all for every page refresh would cost the daemon more than the page needs)."""
    with st.session() as s:
        q = (select(ProcessPoint).where(ProcessPoint.trial_id == trial_id)
             .order_by(ProcessPoint.id.desc()).limit(STREAM_POINTS))
        return sorted(s.scalars(q), key=lambda p: p.t)


def _iso(t: Any) -> str | None:
    return t.isoformat() if t is not None else None
