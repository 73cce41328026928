"""One campaign view: what a campaign *is* right now, read from the store, and how a live event changes it.

Why one module: ``status``, ``watch``, the stream's ``best`` events, the dashboard's page and ``/api``, and the report
each used to derive the campaign's state their own way, from different sources at different times; so the page said
"proposed" while ``/api`` said running, kept a sample where it no longer was, offered pause on a finished campaign
and said "out of service" after the operator brought the station back. Here:

* :func:`campaign_view` reads the view from the store (JSON-ready data; the daemon sends it as it is);
* :func:`apply` changes a view by one stream event, the way a live surface (the stream :class:`Follower`, the page's
  ``static/view.js``, which mirrors it line by line) keeps up between reads. An event that does not carry what the
  view needs (a pause, a crash, a resume, an alert) sets ``view["stale"]``: the surface reads the view again;
* :func:`digest` is what every surface must agree on (trial states, sample locations, best, the actions offered,
  stations out of service): the differential test compares it across surfaces.

"Best" is :mod:`labloop.run.best`'s, never recomputed here. This module imports no optimizer, RunEngine or plotting
code: ``labloop status`` stays light.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from labloop.run import best as _best
from labloop.run.liveness import ACTIVE_STATES, liveness
from labloop.spec import CampaignSpec
from labloop.store import Store
from labloop.store.events import last_seq
from labloop.store.schema import AuditEntry, Campaign, ProcessPoint
from labloop.store.times import utc

from .export import campaign_spec

#: process-stream points per running step sent with a page's view (the live stream adds the rest)
STREAM_POINTS = 400
#: open alerts kept in a view
ALERTS = 20
#: trial states whose sample is still in the lab's hands (shown in "where every sample is")
IN_FLIGHT = ("proposed", "approved", "queued", "running", "measured", "interrupted")
#: the operator actions each campaign state allows (approve/reject also need a trial awaiting approval)
STATE_ACTIONS = {
    "running": ("pause", "stop", "estop"),
    "paused": ("resume", "stop", "estop"),
    "estopped": ("resume", "stop"),
}
#: audit actions that are alerts an operator must see
ALERT_ACTIONS = (
    "station.",
    "campaign.alert",
    "campaign.estop",
    "campaign.pause",
    "trial.internal_error",
    "trial.state_conflict",
    "sample.mismatch",
)
#: stream events whose effect on the view the event does not carry: the surface reads the view again
REREAD = (
    "paused",
    "resumed",
    "alert",
    "stopped",
    "campaign_start",
    "campaign_resume",
    "campaign_end",
    "crash",
    "takeover",
)


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


def allowed_actions(state: str, awaiting: list[int] | tuple[int, ...] = ()) -> list[str]:
    """The operator actions a campaign in ``state`` accepts (a finished campaign: none)."""
    out = list(STATE_ACTIONS.get(state, ()))
    if awaiting and state in ("running", "paused", "estopped"):
        out += ["approve", "reject"]
    return out


def best_entry(spec: CampaignSpec, trials: list[Any]) -> dict[str, Any] | None:
    """The view's ``best``: :func:`labloop.run.best.best_trial` (feasible first) named with its values, and for
    several objectives the feasible Pareto set. The stream's ``best`` event carries exactly this."""
    best = _best.best_trial(spec, trials)
    if best is None:
        return None
    o = spec.objectives[0]
    out = {
        "trial": best.number,
        "objective": o.name,
        "value": float(best.values[o.name]),
        "unit": o.unit,
        "values": {k: best.values[k] for k in [x.name for x in spec.objectives] if k in best.values},
        "params": fmt_params(spec, best.params),
    }
    if len(spec.objectives) > 1:
        out["pareto"] = sorted(t.number for t in _best.pareto_front(spec, trials))
    return out


def trial_row(spec: CampaignSpec, t: Any) -> dict[str, Any]:
    """A trial as the view holds it; ``feasible`` by :func:`labloop.run.best.feasible` (the page's best-so-far line
    counts only those)."""
    return {
        "number": t.number,
        "state": str(t.state),
        "source": t.source,
        "params": t.params or {},
        "values": t.values or {},
        "failure": t.failure_reason,
        "sample": t.sample_id,
        "feasible": _best.feasible(spec, t.values),
    }


def time_scales(store: Store, campaign_id: int, spec: CampaignSpec) -> list[tuple[float, float]]:
    """(from wall time, time scale) of each run of the campaign (``labloop run/resume --time-scale`` is audited as
    ``campaign.lab``); the campaign file's scale when none was recorded, 1 for a real lab."""
    out = []
    for a in store.audit_log(campaign_id):
        if a.action == "campaign.lab" and isinstance((a.detail or {}).get("time_scale"), (int, float)):
            out.append((utc(a.at).timestamp(), float(a.detail["time_scale"])))
    if not out:
        out.append((0.0, float(spec.lab.time_scale) if spec.lab is not None else 1.0))
    return sorted(out)


def campaign_view(st: Store, ref: str | int | Campaign | None, *, points: bool = False) -> dict[str, Any]:
    """What the campaign is now. ``points``: also each running step's newest process points (the page's charts)."""
    c = ref if isinstance(ref, Campaign) else pick_campaign(st, ref)
    seq = last_seq(st, c.id)  # first: events after it are applied on top, never lost between the reads
    spec = campaign_spec(c)
    trials = st.trials(c.id)
    by_id = {t.id: t for t in trials}
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    life = liveness(c)
    steps: list[dict[str, Any]] = []
    for s in (s for s in st.steps(campaign_id=c.id) if s.state == "running"):
        trial = by_id.get(s.trial_id)
        steps.append(
            {
                "trial": trial.number if trial else None,
                "sample": trial.sample_id if trial else None,
                "label": s.label,
                "device": s.device,
                "attempt": s.attempt,
                "since": s.started_at.strftime("%H:%M:%S") if s.started_at else None,
                "started": utc(s.started_at).timestamp() if s.started_at else None,
            }
        )
        if points:
            steps[-1]["stream"] = [
                {"signal": p.signal, "t": p.t, "value": p.value}
                for p in (_latest_points(st, s.trial_id) if trial is not None else [])
            ]
    awaiting = [t.number for t in trials if t.state == "proposed" and spec.scheduling.approval]
    latest = next((t for t in reversed(trials) if t.source == "model" and (t.info or {}).get("importance")), None)
    quarantined, alerts = _stations_and_alerts(st, c.id)
    return {
        "campaign": {
            "id": c.id,
            "uid": c.uid,
            "name": c.name,
            "state": c.state,
            "note": c.note,
            "stop_reason": c.stop_reason,
        },
        "liveness": {"state": life.state, "alive": life.alive, "describe": life.describe()},
        "counts": counts,
        "budget": spec.stopping.max_trials,
        "running_steps": steps,
        "awaiting": awaiting,
        # lab seconds per wall second now: the page draws process streams in the lab's minutes, as the report does
        "time_scale": time_scales(st, c.id, spec)[-1][1],
        "best": best_entry(spec, trials),
        "model": None
        if latest is None
        else {
            "trial": latest.number,
            "importance": latest.info["importance"],
            "predicted_best": latest.info.get("predicted_best"),
        },
        "objectives": [
            {"name": o.name, "direction": o.direction, "target": o.target, "unit": o.unit} for o in spec.objectives
        ],
        "parameters": spec.parameter_names(),
        "approval": bool(spec.scheduling.approval),
        "trials": [trial_row(spec, t) for t in trials],
        "samples": sorted(
            (
                {
                    "sample": s.sample_id,
                    "location": s.location,
                    "trial": by_id[s.trial_id].number if s.trial_id in by_id else None,
                }
                for s in st.samples(c.id)
            ),
            key=lambda s: s["sample"],
        ),
        "quarantined": quarantined,
        "alerts": alerts,
        # consumables (labloop/store/inventory.py): level, reserved by proposed trials, left, low
        "inventory": st.stock_levels(c.id),
        "actions": allowed_actions(c.state, awaiting),
        "last_seq": seq,
    }


def _stations_and_alerts(st: Store, campaign_id: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Stations out of service now, and the open alerts (low stocks last, open until refilled). A station is back in service when the operator's resume
    brought it back (``station.restore``) or a new runner process took over the campaign (``campaign.resume``:
    it starts with every station in service); alerts raised before the latest bring-back are closed."""
    with st.session() as s:
        rows = list(
            s.scalars(
                select(AuditEntry)
                .where(AuditEntry.campaign_id == campaign_id)
                .where(
                    (AuditEntry.action.like("station.%"))
                    | (AuditEntry.action.like("campaign.%"))
                    | (AuditEntry.action.like("trial.%"))
                    | (AuditEntry.action.like("inventory.%"))
                    | (AuditEntry.action == "sample.mismatch")
                )
                .order_by(AuditEntry.id)
            )
        )
    out: dict[str, None] = {}
    alerts: list[dict[str, Any]] = []
    low: dict[str, dict[str, Any]] = {}  # stock -> its open low-stock alert: only a refill closes it
    for a in rows:
        d = a.detail or {}
        if a.action.startswith("inventory."):
            if a.action == "inventory.low":
                low[str(d.get("stock"))] = {"at": _iso(a.at), "action": a.action, "message": str(d.get("message"))}
            elif a.action == "inventory.refill":
                low.pop(str(d.get("stock")), None)
            continue
        if a.action == "station.quarantine" and d.get("device"):
            out[d["device"]] = None
        elif a.action == "station.restore":
            for dev in d.get("devices") or []:
                out.pop(dev, None)
            alerts = []
            continue
        elif a.action == "campaign.resume":
            out.clear()
            alerts = []
            continue
        if a.action.startswith(ALERT_ACTIONS):
            alerts.append(
                {
                    "at": _iso(a.at),
                    "action": a.action,
                    "message": str(d.get("message") or d.get("reason") or d.get("device") or ""),
                }
            )
    return sorted(out), alerts[-ALERTS:] + list(low.values())


def _latest_points(st: Store, trial_id: int) -> list[ProcessPoint]:
    """The newest :data:`STREAM_POINTS` process points of a trial, oldest first (a long deposition has many more;
    reading them all for every page refresh would cost the daemon more than the page needs)."""
    with st.session() as s:
        q = (
            select(ProcessPoint)
            .where(ProcessPoint.trial_id == trial_id)
            .order_by(ProcessPoint.id.desc())
            .limit(STREAM_POINTS)
        )
        return sorted(s.scalars(q), key=lambda p: p.t)


def _iso(t: Any) -> str | None:
    return t.isoformat() if t is not None else None


# ---------------------------------------------------------------------------------------------- live updates
TRIAL_EVENTS = ("proposal", "approval", "trial_start", "measurement", "failure")
#: trial events that change a campaign's stocks (labloop/store/inventory.py): a view with stocks reads them again
STOCK_EVENTS = ("proposal", "trial_start", "failure")


def apply(view: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """Change ``view`` (in place; returned) by one stream event ``{"seq", "kind", "body"}``. Events at or before
    the view's ``last_seq`` are already in it and change nothing. ``static/view.js`` is this function in
    JavaScript: change both together."""
    seq, kind, body = event.get("seq"), event.get("kind"), event.get("body") or {}
    if seq is not None:
        if seq <= view.get("last_seq", 0):
            return view
        view["last_seq"] = seq
    if kind in TRIAL_EVENTS and isinstance(body.get("trial"), dict):
        _upsert_trial(view, body["trial"], kind == "proposal" and bool(body.get("approval")))
        if kind in STOCK_EVENTS and view.get("inventory"):
            view["stale"] = True  # a proposal reserves, a start draws, a failure may release: levels changed
    elif kind in ("step_start", "step_end"):
        _step(view, kind, body)
    elif kind == "best":
        view["best"] = body if body.get("trial") is not None else None
    elif kind in REREAD:
        if kind == "campaign_end":
            view["campaign"]["state"] = body.get("state", view["campaign"]["state"])
            view["campaign"]["stop_reason"] = body.get("stop_reason")
        elif kind == "paused":
            view["campaign"]["state"] = "paused"
        elif kind == "resumed":
            view["campaign"]["state"] = "running"
            view["quarantined"] = [d for d in view["quarantined"] if d not in (body.get("restored") or [])]
        view["stale"] = True
    view["actions"] = allowed_actions(view["campaign"]["state"], view["awaiting"])
    return view


def _upsert_trial(view: dict[str, Any], t: dict[str, Any], awaiting: bool) -> None:
    row = {
        "number": t["number"],
        "state": t["state"],
        "source": t.get("source"),
        "params": t.get("params") or {},
        "values": t.get("values") or {},
        "failure": t.get("failure_reason"),
        "sample": t.get("sample_id"),
        "feasible": bool(t.get("feasible")),
    }
    trials = view["trials"]
    old = next((x for x in trials if x["number"] == row["number"]), None)
    if old is None:
        trials.append(row)
        trials.sort(key=lambda x: x["number"])
    else:
        view["counts"][old["state"]] = view["counts"].get(old["state"], 1) - 1
        if not view["counts"][old["state"]]:
            del view["counts"][old["state"]]
        old.update(row)
    view["counts"][row["state"]] = view["counts"].get(row["state"], 0) + 1
    view["awaiting"] = [n for n in view["awaiting"] if n != row["number"]]
    if awaiting and row["state"] == "proposed":
        view["awaiting"] = sorted(view["awaiting"] + [row["number"]])
    if t.get("location") and row["sample"]:
        _locate(view, row["sample"], t["location"], row["number"])


def _locate(view: dict[str, Any], sample: str, location: str, trial: int | None) -> None:
    have = next((s for s in view["samples"] if s["sample"] == sample), None)
    if have is None:
        view["samples"].append({"sample": sample, "location": location, "trial": trial})
        view["samples"].sort(key=lambda s: s["sample"])
    else:
        have["location"] = location


def _step(view: dict[str, Any], kind: str, b: dict[str, Any]) -> None:
    """What each station does, from the step events: a trial is on one step at a time."""
    steps = view["running_steps"]
    old = next((r for r in steps if r["trial"] == b.get("trial")), None)
    rest = [r for r in steps if r["trial"] != b.get("trial")]
    if kind == "step_start":
        sample = (
            old["sample"] if old else next((t["sample"] for t in view["trials"] if t["number"] == b.get("trial")), None)
        )
        rest.append(
            {
                "trial": b.get("trial"),
                "sample": sample,
                "label": b.get("step"),
                "device": b.get("device"),
                "attempt": b.get("attempt") or 1,
                "since": b.get("since"),
                **({"stream": old.get("stream", [])} if old and "stream" in old else {}),
            }
        )
    elif old is not None and old["label"] != b.get("step"):
        rest.append(old)  # the end of an earlier step, arriving after the next one began
    view["running_steps"] = rest
    if kind == "step_end" and b.get("sample") and b.get("location"):
        _locate(view, b["sample"], b["location"], b.get("trial"))


def digest(view: dict[str, Any]) -> dict[str, Any]:
    """What every surface must agree on: the campaign's state, each trial's state, where every sample of a trial
    in flight is, the best (trial and Pareto set), the actions offered and the stations out of service."""
    states = {str(t["number"]): t["state"] for t in view["trials"]}
    flying = {t["sample"] for t in view["trials"] if t["state"] in IN_FLIGHT}
    best = view.get("best")
    return {
        "state": view["campaign"]["state"],
        "trials": states,
        "samples": {s["sample"]: s["location"] for s in view["samples"] if s["sample"] in flying},
        "best": None if best is None else [best["trial"], list(best.get("pareto") or ())],
        "actions": sorted(view["actions"]),
        "quarantined": sorted(view["quarantined"]),
    }
