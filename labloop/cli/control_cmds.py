"""Operator control of a running campaign: resume, pause, stop, estop, approve, reject.

Requests go through the store (the truth every process shares): the process running the campaign reads them
within a fraction of a second, and every request is in the audit log with who made it and when. ``resume`` also
restarts a campaign whose process died (crash, reboot, ``kill -9``) in this process.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from typing import Annotated, Optional

import typer

from labloop.run.campaign import CampaignRunner
from labloop.errors import LabloopError
from labloop.store import DEFAULT_URL, Store
from labloop.store.schema import Campaign
from .campaign_cmds import LiveView
from .common import STORE_HELP, console, err_console, user_errors

ALIVE_SECONDS = 5.0
CampaignOpt = Annotated[Optional[str], typer.Option(help="Campaign id, uid or name (default: the latest).")]
StoreOpt = Annotated[Optional[str], typer.Option(help=STORE_HELP)]
UserOpt = Annotated[Optional[str], typer.Option(help="Who asks (recorded in the audit log; default: login name).")]


def heartbeat_age(c: Campaign) -> float | None:
    if c.heartbeat_at is None:
        return None
    beat = c.heartbeat_at if c.heartbeat_at.tzinfo else c.heartbeat_at.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - beat).total_seconds()


def is_alive(c: Campaign) -> bool:
    """Whether a process still runs the campaign: on this host, its pid must exist; elsewhere, its heartbeat must
    be recent (a killed process stops beating)."""
    if c.state not in ("running", "paused"):
        return False
    host, _, pid = (c.runner or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    age = heartbeat_age(c)
    return age is not None and age < ALIVE_SECONDS


def _open(store: str | None, campaign: str | None) -> tuple[Store, Campaign]:
    st = Store(store or DEFAULT_URL, create=False)
    try:
        return st, st.campaign(campaign)
    except LabloopError:
        st.close()
        raise


def _request(store: str | None, campaign: str | None, control: str, user: str | None, what: str) -> None:
    st, c = _open(store, campaign)
    try:
        if c.state in ("finished", "stopped"):
            raise LabloopError(f"campaign '{c.name}' has already ended ({c.stop_reason})",
                               "start a new campaign with `labloop run FILE`")
        st.set_control(c.id, control, user)
        console.print(f"{what}: campaign '{c.name}' (id {c.id})")
        if not is_alive(c):
            err_console.print("note: no process is running this campaign now; the request takes effect when "
                              "`labloop resume` restarts it")
    finally:
        st.close()


def register(app: typer.Typer) -> None:
    @app.command()
    @user_errors
    def resume(store: StoreOpt = None, campaign: CampaignOpt = None, user: UserOpt = None,
               time_scale: Annotated[Optional[float], typer.Option(help="Override the stored time scale.")] = None
               ) -> None:
        """Continue a campaign: un-pause a running one, or restart one whose process died, in this process.

        After a crash nothing measured is lost, no trial is run twice, and an interrupted synthesis is recorded as
        failed instead of being repeated on a consumed sample."""
        st, c = _open(store, campaign)
        try:
            if c.state in ("finished", "stopped"):
                raise LabloopError(f"campaign '{c.name}' has already ended ({c.stop_reason})",
                                   "start a new campaign with `labloop run FILE`")
            if is_alive(c):
                st.set_control(c.id, "run", user)
                console.print(f"resumed: campaign '{c.name}' continues in its running process"
                              + (f" (it was waiting: {c.note})" if c.note else ""), soft_wrap=True)
                return
            runner, resumptions = CampaignRunner.resume(st, c, time_scale, None)
            runner.observer = LiveView(runner.spec)
            console.print(f"restarting campaign '{c.name}' in this process: "
                          f"{len(resumptions)} unfinished trial(s) pick up where they stopped", soft_wrap=True)
            runner.run(resumptions)
        finally:
            st.close()

    @app.command()
    @user_errors
    def pause(store: StoreOpt = None, campaign: CampaignOpt = None, user: UserOpt = None) -> None:
        """Finish the steps that are running, start nothing new, until `labloop resume`."""
        _request(store, campaign, "pause", user, "pause requested")

    @app.command()
    @user_errors
    def stop(store: StoreOpt = None, campaign: CampaignOpt = None, user: UserOpt = None) -> None:
        """End the campaign gracefully: trials in flight finish, no new ones start."""
        _request(store, campaign, "stop", user, "stop requested")

    @app.command()
    @user_errors
    def estop(store: StoreOpt = None, campaign: CampaignOpt = None, user: UserOpt = None) -> None:
        """Emergency stop: halt every device now; interrupted trials are settled by `labloop resume`."""
        _request(store, campaign, "estop", user, "EMERGENCY STOP requested")

    @app.command()
    @user_errors
    def approve(trials: Annotated[list[int], typer.Argument(help="Trial numbers to approve.")],
                store: StoreOpt = None, campaign: CampaignOpt = None, user: UserOpt = None) -> None:
        """Approve proposed trials (campaigns with scheduling.approval: true); they start when a station is free."""
        _decide(store, campaign, trials, "approved", None, user)

    @app.command()
    @user_errors
    def reject(trials: Annotated[list[int], typer.Argument(help="Trial numbers to reject.")],
               reason: Annotated[str, typer.Option(help="Why (recorded with the trial and in the audit log).")],
               store: StoreOpt = None, campaign: CampaignOpt = None, user: UserOpt = None) -> None:
        """Reject proposed trials; the strategy treats them as infeasible and never proposes them again."""
        _decide(store, campaign, trials, "rejected", reason, user)


def _decide(store: str | None, campaign: str | None, numbers: list[int], state: str, reason: str | None,
            user: str | None) -> None:
    from labloop.store.schema import utcnow

    from labloop.data.export import campaign_spec

    st, c = _open(store, campaign)
    try:
        if not campaign_spec(c).scheduling.approval:
            raise LabloopError(f"campaign '{c.name}' does not wait for approval (scheduling.approval is false)",
                               "set scheduling: {approval: true} in the campaign file of the next campaign")
        if c.state not in ("running", "paused"):
            raise LabloopError(f"campaign '{c.name}' has ended ({c.stop_reason})", "nothing is waiting any more")
        by_number = {t.number: t for t in st.trials(c.id)}
        for n in numbers:
            t = by_number.get(n)
            if t is None:
                raise LabloopError(f"campaign '{c.name}' has no trial {n}", "see `labloop status` for trial numbers")
            if t.state != "proposed":
                raise LabloopError(f"trial {n} is {t.state}, not waiting for approval",
                                   "only proposed trials can be approved or rejected")
        for n in numbers:
            t = by_number[n]
            fields = {"state": state}
            if state == "rejected":
                fields.update(failure_reason=f"rejected by operator: {reason}", finished_at=utcnow())
            if not st.update_trial_if(t.id, "proposed", **fields):
                raise LabloopError(f"trial {n} changed state meanwhile", "check `labloop status` and try again")
            st.audit(c.id, {"approved": "trial.approve", "rejected": "trial.reject"}[state],
                     {"trial": n, "reason": reason}, user)
            console.print(f"trial {n}: {state}" + (f" ({reason})" if reason else ""))
    finally:
        st.close()
