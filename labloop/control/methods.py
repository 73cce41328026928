"""What each control method does, for a verified user. Run on the daemon's worker threads: a method may wait (for
a runner's acknowledgement, for a child to validate a campaign) without holding up the control socket.

Every method returns JSON-ready data or raises :class:`~labloop.errors.LabloopError` (an error reply with the
problem and the fix). The operator commands reuse exactly what the command line does on the store
(:mod:`labloop.control.requests`), so a request through the daemon and one on the store behave alike.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labloop.data import sharing
from labloop.data.status import pick_campaign, snapshot
from labloop.errors import LabloopError
from labloop.run.liveness import liveness
from labloop.spec import spec_from_text, spec_hash
from labloop.store import Store
from labloop.store.events import as_message, events_after, last_seq

from . import protocol as p
from .requests import ask_runner, estop
from .supervisor import Supervisor


@dataclass
class Call:
    """One request being served: who asks (verified), and what the daemon has to offer."""

    user: str
    role: str
    store: Store
    supervisor: Supervisor
    #: the audit row of this command while not yet written (``Store.audit`` arguments): a method that queues a
    #: runner request writes it in the request's transaction (:meth:`command`); else the daemon writes it when the
    #: method ends, with its real outcome (:meth:`settle`): accepted, refused or failed, and why.
    accepted: dict[str, Any] | None = field(default=None)

    def command(self) -> dict[str, Any] | None:
        """The pending audit row, handed over to be written with a request (at most once)."""
        row, self.accepted = self.accepted, None
        return row

    def settle(self, outcome: str, reason: str | None = None) -> None:
        """Write the command's row if no request took it: ``outcome`` accepted | refused | failed, with why."""
        row = self.command()
        if row is not None:
            self.store.audit(**settled(row, outcome, reason))


def settled(row: dict[str, Any], outcome: str, reason: str | None = None) -> dict[str, Any]:
    """A command's audit row (``Store.audit`` arguments) with its real outcome and the reason."""
    detail = dict(row.get("detail") or {})
    if reason is not None:
        detail["reason"] = reason[:2000]
    return {**row, "outcome": outcome, "detail": detail}


def status(c: Call, params: p.StatusParams) -> Any:
    return snapshot(c.store, params.campaign)


def list_(c: Call, params: p.ListParams) -> Any:
    here = c.supervisor.running()
    return [
        {
            "id": x.id,
            "uid": x.uid,
            "name": x.name,
            "state": x.state,
            "stop_reason": x.stop_reason,
            "pid": here[x.id].pid if x.id in here else None,
        }
        for x in c.store.campaigns()
    ]


def _ask(c: Call, action: str, params: Any, args: dict[str, Any] | None = None) -> Any:
    camp = pick_campaign(c.store, params.campaign)
    outcome = ask_runner(c.store, camp, action, args, c.user, params.wait, c.command())
    return {"campaign": camp.name, "campaign_id": camp.id, "outcome": outcome}


def pause(c: Call, params: p.ControlParams) -> Any:
    return _ask(c, "pause", params)


def stop(c: Call, params: p.ControlParams) -> Any:
    return _ask(c, "stop", params)


def resume(c: Call, params: p.ControlParams) -> Any:
    """Un-pause a running campaign, or restart in a new child one whose process died."""
    camp = pick_campaign(c.store, params.campaign)
    if camp.state in ("finished", "stopped"):
        raise LabloopError(
            f"campaign '{camp.name}' (id {camp.id}) has already ended ({camp.stop_reason})",
            "submit a new campaign with `labloop submit FILE`",
        )
    life = liveness(camp)
    if life.alive or camp.id in c.supervisor.running():
        return _ask(c, "resume", params)
    if life.present:
        raise LabloopError(
            f"campaign '{camp.name}': its runner {life.host}:{life.pid} still exists but has not "
            f"answered for {life.heartbeat_age or 0:.0f} s",
            f"if it is hung, stop it (kill {life.pid}), then resume again",
        )
    report = c.supervisor.spawn(c.user, resume=camp.id)
    return {
        "campaign": camp.name,
        "campaign_id": camp.id,
        "outcome": f"restarted in a new process (pid {report['pid']}) on the daemon's host",
    }


def estop_(c: Call, params: p.EstopParams) -> Any:
    return {"lines": estop(c.store, params.campaign, c.user, params.wait, c.command())}


def approve(c: Call, params: p.ApproveParams) -> Any:
    return _ask(c, "approve", params, {"trials": params.trials})


def reject(c: Call, params: p.RejectParams) -> Any:
    return _ask(c, "reject", params, {"trials": params.trials, "reason": params.reason})


def export(c: Call, params: p.ExportParams) -> Any:
    """The exported bytes (base64: parquet is binary) and the manifest to write beside them."""
    data, man = sharing.export_data(
        c.store,
        params.format,
        params.campaign,
        params.sharing_class,
        Path(params.output_name) if params.output_name else None,
        user=c.user,
    )
    return {"data": base64.b64encode(data).decode("ascii"), "manifest": man}


def submit(c: Call, params: p.SubmitParams) -> Any:
    """Validate the campaign file, start it in its own process; answers once it is stored and running."""
    spec_from_text(params.text, params.source)  # the cheap checks first, before a process is started
    report = c.supervisor.spawn(c.user, text=params.text, source=params.source, time_scale=params.time_scale)
    if c.accepted is not None:
        c.accepted["campaign_id"] = report["campaign_id"]
    return {
        "campaign": report["name"],
        "campaign_id": report["campaign_id"],
        "uid": report["uid"],
        "pid": report["pid"],
    }


def missed(c: Call, params: p.MissedParams) -> Any:
    """Stream events of one campaign after ``after_seq``, in order, as the stream carried them."""
    camp = c.store.campaign(params.campaign)
    rows = events_after(c.store, camp.id, params.after_seq, params.limit)
    return {
        "campaign": camp.name,
        "campaign_id": camp.id,
        "last_seq": last_seq(c.store, camp.id),
        "events": [as_message(e) for e in rows],
    }


HANDLERS: dict[str, Callable[[Call, Any], Any]] = {
    "status": status,
    "list": list_,
    "pause": pause,
    "resume": resume,
    "stop": stop,
    "estop": estop_,
    "approve": approve,
    "reject": reject,
    "export": export,
    "submit": submit,
    "missed": missed,
}
assert set(HANDLERS) == set(p.METHODS)

#: Reads are audited when refused only: a dashboard polling status each second would bury the commands.
READS = frozenset({"status", "list", "missed"})
#: Commands whose "accepted" row is written with the runner request they queue (``Call.accepted``); the others'
#: row is written before the method runs.
WITH_REQUEST = frozenset({"pause", "resume", "stop", "estop", "approve", "reject"})


def audit_args(method: str, params: Any) -> dict[str, Any]:
    """What the audit log keeps of a request's arguments (a submitted campaign file by its hash, not in full)."""
    data = params.model_dump(mode="json")
    if method == "submit":
        data["text"] = f"sha256:{spec_hash(params.text)}"
    return data
