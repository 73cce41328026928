"""A campaign's status as plain data: what ``labloop status`` prints, locally or from a daemon.

Why data and not print calls: the daemon answers ``status`` over the wire with this dict, and the command line
prints the same dict whether it read the store itself or asked a daemon, so the two can never drift apart.
"""

from __future__ import annotations

from typing import Any

from labloop.run.liveness import ACTIVE_STATES, liveness
from labloop.spec import CampaignSpec
from labloop.store import Store
from .export import best_trial, campaign_spec


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


def snapshot(st: Store, ref: str | int | None) -> dict[str, Any]:
    """Everything ``status`` shows about one campaign, JSON-ready."""
    c = pick_campaign(st, ref)
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
    best = best_trial(spec, trials)
    o = spec.objectives[0]
    latest = next((t for t in reversed(trials) if t.source == "model" and (t.info or {}).get("importance")), None)
    return {
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
