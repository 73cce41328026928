"""Acknowledged operator requests, asked of a campaign's runner through the store and awaited.

Shared by the command line (on the store directly) and the daemon (for a client): both queue a row, and the
campaign's runner answers it ``done`` or ``refused`` within a fraction of a second. Nothing here waits on the
campaign for longer than ``wait``; a silent runner is explained through its liveness.
"""

from __future__ import annotations

import time
from typing import Any

from labloop.errors import LabloopError
from labloop.run.liveness import ACTIVE_STATES, liveness
from labloop.store import Store
from labloop.store.bell import Waiter
from labloop.store.schema import Campaign, OperatorRequest

#: How often a waiting caller reads its request's state (one primary-key read; only while it waits) when bells are
#: off (``LABLOOP_WAKEUPS=0``); with them, the runner's answer rings the caller awake and this is the fallback's.
ANSWER_POLL_S = 0.005


def await_answers(
    st: Store, request_ids: list[int], wait: float, waiter: Waiter | None = None
) -> dict[int, OperatorRequest]:
    """Read the requests until every one is answered (done or refused) or ``wait`` seconds pass; returns the
    answered ones by id. Between reads it waits for their campaigns' ``answers`` bell, reading again at least every
    fallback interval. It listens after the requests are written (nothing delays them), and reads once more after it
    starts listening to a campaign, so an answer rung before is not missed; ``waiter``: one already listening."""
    deadline = time.monotonic() + wait
    answered: dict[int, OperatorRequest] = {}
    own = waiter is None
    w = st.bells.waiter() if waiter is None else waiter
    try:
        while True:
            fresh = False
            for rid in request_ids:
                if rid not in answered:
                    r = st.operator_request(rid)
                    if r.state != "pending":
                        answered[rid] = r
                    elif w.listen(("answers", r.campaign_id)):
                        fresh = True  # listening only now: an answer may have rung before, read again first
            if len(answered) == len(request_ids) or time.monotonic() >= deadline:
                return answered
            if not fresh:
                w.wait(ANSWER_POLL_S, deadline - time.monotonic())
    finally:
        if own:
            w.close()


def ask_runner(
    st: Store,
    c: Campaign,
    action: str,
    args: dict | None,
    user: str | None,
    wait: float,
    command: dict[str, Any] | None = None,
) -> str:
    """Queue a request for ``c``'s runner and wait for its answer; returns the outcome or raises when refused.
    With no answer in time, explains what the runner's liveness says. ``command``: an audit row to write in the
    request's transaction (:meth:`Store.request`)."""
    if c.state not in ACTIVE_STATES and not (action in ("stop", "approve", "reject") and c.state == "estopped"):
        raise refuse(
            st,
            c.id,
            action,
            args,
            user,
            command,
            f"campaign '{c.name}' (id {c.id}) has already ended ({c.state}: {c.stop_reason}): there is "
            f"nothing to {action}",
            f"nothing to do: a campaign that ended stays ended; `labloop status --campaign {c.id}` says why",
        )
    rid = st.request(c.id, action, args or {}, user, command)  # first: the runner acts while the caller listens
    r = await_answers(st, [rid], wait).get(rid)
    if r is not None and r.state == "done":
        return r.outcome or "done"
    if r is not None:
        raise LabloopError(
            f"campaign '{c.name}': {action} refused: {r.outcome}", "see `labloop status` for the campaign's state"
        )
    life = liveness(st.campaign(c.id))
    if life.alive:
        msg = f"campaign '{c.name}': the runner has not answered the {action} request within {wait:g} s"
        fix = "it is queued and will be carried out; check `labloop status`, or wait longer with --wait"
    else:
        msg = f"campaign '{c.name}': no runner is answering ({life.describe()})"
        fix = "the request is queued: `labloop resume` restarts the campaign and carries it out" + (
            "; nothing is moving in this lab now" if action == "estop" and life.state == "dead" else ""
        )
    raise LabloopError(msg, fix)


def refuse(
    st: Store,
    campaign_id: int | None,
    action: str,
    args: dict | None,
    user: str | None,
    command: dict[str, Any] | None,
    problem: str,
    fix: str,
) -> LabloopError:
    """Audit a request refused before it reached a runner (the daemon's command row when it has one, else a row of
    the store-side command) and return the error to raise: no refusal goes unrecorded."""
    if command is not None:
        row = {
            **command,
            "campaign_id": campaign_id,
            "outcome": "refused",
            "detail": {**(command.get("detail") or {}), "reason": problem},
        }
    else:
        row = {
            "campaign_id": campaign_id,
            "action": f"request.{action}",
            "user": user,
            "outcome": "refused",
            "detail": {**(args or {}), "reason": problem},
        }
    st.audit(**row)
    return LabloopError(problem, fix)


def estop(
    st: Store, campaign: str | int | None, user: str | None, wait: float, command: dict[str, Any] | None = None
) -> list[str]:
    """Emergency stop of one campaign, or of every running campaign of the store at once (all requests are
    queued before any answer is awaited). Returns one line per answer; raises when a runner did not answer.
    ``command``: an audit row written with the first request (:meth:`Store.request`)."""
    targets = (
        [st.campaign(campaign)] if campaign is not None else [c for c in st.campaigns() if c.state in ACTIVE_STATES]
    )
    if not targets:
        raise refuse(
            st,
            None,
            "estop",
            {},
            user,
            command,
            "no campaign of this store is running: nothing to stop",
            "if a campaign is running elsewhere, name its store (--store) or its daemon (--server)",
        )
    ids = {}
    for c in targets:  # every request written before listening for the answers: nothing delays a stop
        if c.state in ACTIVE_STATES:
            ids[c.id] = st.request(c.id, "estop", {}, user, command)
            command = None
    if not ids:
        raise refuse(
            st,
            targets[0].id,
            "estop",
            {},
            user,
            command,
            f"campaign '{targets[0].name}' has already ended ({targets[0].state})",
            "nothing of it is moving",
        )
    answered = await_answers(st, list(ids.values()), wait)
    lines, problems = [], []
    for c in targets:
        r = answered.get(ids.get(c.id, -1))
        if r is not None:
            lines.append(f"EMERGENCY STOP campaign '{c.name}' (id {c.id}): {r.state}: {r.outcome}")
        else:
            problems.append(f"campaign '{c.name}' (id {c.id}): {liveness(st.campaign(c.id)).describe()}")
    if problems:
        raise LabloopError(
            "no answer to the emergency stop from " + "; ".join(problems),
            "if a runner is alive but silent, cut the power to its devices; a dead runner "
            "moves nothing, and `labloop resume` settles its trials",
        )
    return lines
