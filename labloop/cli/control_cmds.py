"""Operator control of a running campaign: resume, pause, stop, estop, approve, reject.

A request is a row in the store (the truth every process shares): the process running the campaign answers it
within a fraction of a second, ``done`` with what it did or ``refused`` with why, and the command prints that
answer. When no runner answers in time, the command says so, with the runner's liveness and what to do. Every
request and every answer is in the audit log with who asked and when. ``resume`` also restarts a campaign whose
process died (crash, reboot, ``kill -9``) in this process.
"""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from labloop.errors import LabloopError
from labloop.run.campaign import ENDED_STATES, CampaignRunner, refuse_second_runner
from labloop.run.liveness import ACTIVE_STATES, liveness
from labloop.spec import spec_from_text
from labloop.store import DEFAULT_URL, Store
from labloop.store.schema import Campaign, OperatorRequest
from .campaign_cmds import LiveView, pick_campaign, require_lease_kept, require_success
from .common import STORE_HELP, console, user_errors

CampaignOpt = Annotated[Optional[str], typer.Option(
    help="Campaign id, uid or name (default: the running campaign, else the latest).")]
StoreOpt = Annotated[Optional[str], typer.Option(help=STORE_HELP)]
UserOpt = Annotated[Optional[str], typer.Option(help="Who asks (recorded in the audit log; default: login name).")]
WaitOpt = Annotated[float, typer.Option(help="Seconds to wait for the runner's answer.")]


def open_store(store: str | None) -> Store:
    return Store(store or DEFAULT_URL, create=False)


def await_answers(st: Store, request_ids: list[int], wait: float) -> dict[int, OperatorRequest]:
    """Poll the requests until every one is answered (done or refused) or ``wait`` seconds pass; returns the
    answered ones by id."""
    deadline = time.monotonic() + wait
    answered: dict[int, OperatorRequest] = {}
    while True:
        for rid in request_ids:
            if rid not in answered:
                r = st.operator_request(rid)
                if r.state != "pending":
                    answered[rid] = r
        if len(answered) == len(request_ids) or time.monotonic() >= deadline:
            return answered
        time.sleep(0.01)


def ask_runner(st: Store, c: Campaign, action: str, args: dict | None, user: str | None, wait: float) -> str:
    """Queue a request for ``c``'s runner and wait for its answer; returns the outcome or raises when refused.
    With no answer in time, explains what the runner's liveness says and exits non-zero."""
    if c.state not in ACTIVE_STATES and not (action in ("stop", "approve", "reject") and c.state == "estopped"):
        raise LabloopError(f"campaign '{c.name}' (id {c.id}) has already ended ({c.state}: {c.stop_reason})",
                           "start a new campaign with `labloop run FILE`")
    rid = st.request(c.id, action, args or {}, user)
    r = await_answers(st, [rid], wait).get(rid)
    if r is not None and r.state == "done":
        return r.outcome or "done"
    if r is not None:
        raise LabloopError(f"campaign '{c.name}': {action} refused: {r.outcome}",
                           "see `labloop status` for the campaign's state")
    life = liveness(st.campaign(c.id))
    if life.alive:
        msg = f"campaign '{c.name}': the runner has not answered the {action} request within {wait:g} s"
        fix = "it is queued and will be carried out; check `labloop status`, or wait longer with --wait"
    else:
        msg = f"campaign '{c.name}': no runner is answering ({life.describe()})"
        fix = ("the request is queued: `labloop resume` restarts the campaign and carries it out"
               + ("; nothing is moving in this lab now" if action == "estop" and life.state == "dead" else ""))
    raise LabloopError(msg, fix)


def register(app: typer.Typer) -> None:
    @app.command()
    @user_errors
    def resume(store: StoreOpt = None, campaign: CampaignOpt = None, user: UserOpt = None,
               time_scale: Annotated[Optional[float], typer.Option(help="Override the stored time scale.")] = None,
               wait: WaitOpt = 5.0) -> None:
        """Continue a campaign: un-pause a running one, or restart one whose process died, in this process.

        After a crash nothing measured is lost, no trial is run twice, and an interrupted synthesis is recorded as
        failed instead of being repeated on a consumed sample."""
        st = open_store(store)
        try:
            c = pick_campaign(st, campaign)
            if c.state in ENDED_STATES:
                raise LabloopError(f"campaign '{c.name}' (id {c.id}) has already ended ({c.stop_reason})",
                                   "start a new campaign with `labloop run FILE`")
            life = liveness(c)
            if life.alive:
                outcome = ask_runner(st, c, "resume", None, user, wait)
                console.print(f"campaign '{c.name}': {outcome}", soft_wrap=True)
                return
            if life.present:
                raise LabloopError(f"campaign '{c.name}': its runner {life.host}:{life.pid} still exists but has not "
                                   f"answered for {life.heartbeat_age or 0:.0f} s",
                                   f"if it is hung, stop it (kill {life.pid}), then run `labloop resume` again")
            refuse_second_runner(spec_from_text(c.spec_text, f"<stored campaign {c.name}>"), st,
                                 f"campaign '{c.name}'", except_id=c.id)
            runner, resumptions = CampaignRunner.resume(st, c, time_scale, None)
            runner.observer = LiveView(runner.spec)
            console.print(f"restarting campaign '{c.name}' in this process: "
                          f"{len(resumptions)} unfinished trial(s) pick up where they stopped", soft_wrap=True)
            require_lease_kept(runner.run(resumptions))
            require_success(st, c.id)
        finally:
            st.close()

    @app.command()
    @user_errors
    def pause(store: StoreOpt = None, campaign: CampaignOpt = None, user: UserOpt = None,
              wait: WaitOpt = 5.0) -> None:
        """Finish the steps that are running, start nothing new, until `labloop resume`."""
        _simple(store, campaign, "pause", user, wait)

    @app.command()
    @user_errors
    def stop(store: StoreOpt = None, campaign: CampaignOpt = None, user: UserOpt = None,
             wait: WaitOpt = 5.0) -> None:
        """End the campaign gracefully: trials in flight finish, no new ones start."""
        _simple(store, campaign, "stop", user, wait)

    @app.command()
    @user_errors
    def estop(store: StoreOpt = None, campaign: CampaignOpt = None, user: UserOpt = None,
              wait: WaitOpt = 5.0) -> None:
        """Emergency stop: halt every device now. Without --campaign: every running campaign of the store.
        Interrupted trials are settled by `labloop resume`."""
        st = open_store(store)
        try:
            targets = ([st.campaign(campaign)] if campaign is not None
                       else [c for c in st.campaigns() if c.state in ACTIVE_STATES])
            if not targets:
                raise LabloopError("no campaign of this store is running: nothing to stop",
                                   "pass --store with the store of the running campaign")
            ids = {c.id: st.request(c.id, "estop", {}, user) for c in targets if c.state in ACTIVE_STATES}
            if not ids:
                raise LabloopError(f"campaign '{targets[0].name}' has already ended ({targets[0].state})",
                                   "nothing of it is moving")
            answered = await_answers(st, list(ids.values()), wait)
            problems = []
            for c in targets:
                r = answered.get(ids.get(c.id, -1))
                if r is not None:
                    console.print(f"EMERGENCY STOP campaign '{c.name}' (id {c.id}): {r.state}: {r.outcome}",
                                  soft_wrap=True)
                else:
                    problems.append(f"campaign '{c.name}' (id {c.id}): {liveness(st.campaign(c.id)).describe()}")
            if problems:
                raise LabloopError("no answer to the emergency stop from " + "; ".join(problems),
                                   "if a runner is alive but silent, cut the power to its devices; a dead runner "
                                   "moves nothing, and `labloop resume` settles its trials")
        finally:
            st.close()

    @app.command()
    @user_errors
    def approve(trials: Annotated[list[int], typer.Argument(help="Trial numbers to approve.")],
                store: StoreOpt = None, campaign: CampaignOpt = None, user: UserOpt = None,
                wait: WaitOpt = 5.0) -> None:
        """Approve proposed trials (campaigns with scheduling.approval: true); they start when a station is free."""
        _simple(store, campaign, "approve", user, wait, {"trials": trials})

    @app.command()
    @user_errors
    def reject(trials: Annotated[list[int], typer.Argument(help="Trial numbers to reject.")],
               reason: Annotated[str, typer.Option(help="Why (recorded with the trial and in the audit log).")],
               store: StoreOpt = None, campaign: CampaignOpt = None, user: UserOpt = None,
               wait: WaitOpt = 5.0) -> None:
        """Reject proposed trials; the strategy treats them as infeasible and never proposes them again."""
        _simple(store, campaign, "reject", user, wait, {"trials": trials, "reason": reason})


def _simple(store: str | None, campaign: str | None, action: str, user: str | None, wait: float,
            args: dict | None = None) -> None:
    st = open_store(store)
    try:
        c = pick_campaign(st, campaign)
        outcome = ask_runner(st, c, action, args, user, wait)
        console.print(f"campaign '{c.name}' (id {c.id}): {outcome}", soft_wrap=True)
    finally:
        st.close()

