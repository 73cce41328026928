"""Operator control of a running campaign: resume, pause, stop, estop, approve, reject.

A request is a row in the store (the truth every process shares): the process running the campaign answers it
within a fraction of a second, ``done`` with what it did or ``refused`` with why, and the command prints that
answer. When no runner answers in time, the command says so, with the runner's liveness and what to do. Every
request and every answer is in the audit log with who asked and when. ``resume`` also restarts a campaign whose
process died (crash, reboot, ``kill -9``) in this process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from labloop.errors import LabloopError

from .common import STORE_HELP, KeyOpt, ServerOpt, console, daemon_client, open_store, pick_campaign, user_errors

if TYPE_CHECKING:  # the store-side paths import what they use; through a daemon only the client is needed
    from labloop.control.client import Client

CampaignOpt = Annotated[
    str | None, typer.Option(help="Campaign id, uid or name (default: the running campaign, else the latest).")
]
StoreOpt = Annotated[str | None, typer.Option(help=STORE_HELP)]
UserOpt = Annotated[str | None, typer.Option(help="Who asks (recorded in the audit log; default: login name).")]
WaitOpt = Annotated[float, typer.Option(help="Seconds to wait for the runner's answer.")]


def remote(server: str | None, key: str | None) -> Client | None:
    """A client of the daemon when --server (or LABLOOP_SERVER) is given; None: the command works on the store."""
    return daemon_client(server, key)


def remote_call(client: Client, method: str, **params: Any) -> Any:
    try:
        return client.call(method, timeout=float(params.get("wait", 5.0)) + 10.0, **params)
    finally:
        client.close()


def register(app: typer.Typer) -> None:
    @app.command()
    @user_errors
    def resume(
        store: StoreOpt = None,
        campaign: CampaignOpt = None,
        user: UserOpt = None,
        time_scale: Annotated[float | None, typer.Option(help="Override the stored time scale.")] = None,
        wait: WaitOpt = 5.0,
        server: ServerOpt = None,
        key: KeyOpt = None,
    ) -> None:
        """Continue a campaign: un-pause a running one, or restart one whose process died, in this process.

        After a crash nothing measured is lost, no trial is run twice, and an interrupted synthesis is recorded as
        failed instead of being repeated on a consumed sample. With --server, the daemon restarts it in a process
        of its own."""
        client = remote(server, key)
        if client is not None:
            r = remote_call(client, "resume", campaign=campaign, wait=wait)
            console.print(f"campaign '{r['campaign']}' (id {r['campaign_id']}): {r['outcome']}", soft_wrap=True)
            return
        from labloop.control.requests import ask_runner
        from labloop.run.liveness import ENDED_STATES, liveness

        st = open_store(store)
        try:
            c = pick_campaign(st, campaign)
            if c.state in ENDED_STATES:
                raise LabloopError(
                    f"campaign '{c.name}' (id {c.id}) has already ended ({c.stop_reason})",
                    "start a new campaign with `labloop run FILE`",
                )
            life = liveness(c)
            if life.alive:
                outcome = ask_runner(st, c, "resume", None, user, wait)
                console.print(f"campaign '{c.name}': {outcome}", soft_wrap=True)
                return
            if life.present:
                raise LabloopError(
                    f"campaign '{c.name}': its runner {life.host}:{life.pid} still exists but has not "
                    f"answered for {life.heartbeat_age or 0:.0f} s",
                    f"if it is hung, stop it (kill {life.pid}), then run `labloop resume` again",
                )
            from labloop.control.remote_lab import remote_device
            from labloop.run.campaign import CampaignRunner, refuse_second_runner  # only a restart runs the lab
            from labloop.run.recovery import reattach_lines
            from labloop.spec import spec_from_text

            from .campaign_cmds import require_lease_kept, require_success
            from .live import LiveView

            refuse_second_runner(
                spec_from_text(c.spec_text, f"<stored campaign {c.name}>"), st, f"campaign '{c.name}'", except_id=c.id
            )
            runner, resumptions = CampaignRunner.resume(st, c, time_scale, None, remote=remote_device)
            runner.observer = LiveView(runner.spec, trials=st.trials(c.id))
            console.print(
                f"restarting campaign '{c.name}' in this process: "
                f"{len(resumptions)} unfinished trial(s) pick up where they stopped",
                soft_wrap=True,
            )
            for line in reattach_lines(resumptions):  # why these trials did not fail: the station ran on without us
                console.print(line, soft_wrap=True)
            require_lease_kept(runner.run(resumptions))
            require_success(st, c.id)
        finally:
            st.close()

    @app.command()
    @user_errors
    def pause(
        store: StoreOpt = None,
        campaign: CampaignOpt = None,
        user: UserOpt = None,
        wait: WaitOpt = 5.0,
        server: ServerOpt = None,
        key: KeyOpt = None,
    ) -> None:
        """Finish the steps that are running, start nothing new, until `labloop resume`."""
        _simple(store, campaign, "pause", user, wait, server=server, key=key)

    @app.command()
    @user_errors
    def stop(
        store: StoreOpt = None,
        campaign: CampaignOpt = None,
        user: UserOpt = None,
        wait: WaitOpt = 5.0,
        server: ServerOpt = None,
        key: KeyOpt = None,
    ) -> None:
        """End the campaign gracefully: trials in flight finish, no new ones start."""
        _simple(store, campaign, "stop", user, wait, server=server, key=key)

    @app.command()
    @user_errors
    def estop(
        store: StoreOpt = None,
        campaign: CampaignOpt = None,
        user: UserOpt = None,
        wait: WaitOpt = 5.0,
        server: ServerOpt = None,
        key: KeyOpt = None,
    ) -> None:
        """Emergency stop: halt every device now. Without --campaign: every running campaign of the store.
        Interrupted trials are settled by `labloop resume`."""
        client = remote(server, key)
        if client is not None:
            for line in remote_call(client, "estop", campaign=campaign, wait=wait)["lines"]:
                console.print(line, soft_wrap=True)
            return
        from labloop.control import requests

        st = open_store(store)
        try:
            for line in requests.estop(st, campaign, user, wait):
                console.print(line, soft_wrap=True)
        finally:
            st.close()

    @app.command()
    @user_errors
    def approve(
        trials: Annotated[list[int], typer.Argument(help="Trial numbers to approve.")],
        store: StoreOpt = None,
        campaign: CampaignOpt = None,
        user: UserOpt = None,
        wait: WaitOpt = 5.0,
        server: ServerOpt = None,
        key: KeyOpt = None,
    ) -> None:
        """Approve proposed trials (campaigns with scheduling.approval: true); they start when a station is free."""
        _simple(store, campaign, "approve", user, wait, {"trials": trials}, server, key)

    @app.command()
    @user_errors
    def reject(
        trials: Annotated[list[int], typer.Argument(help="Trial numbers to reject.")],
        reason: Annotated[str, typer.Option(help="Why (recorded with the trial and in the audit log).")],
        store: StoreOpt = None,
        campaign: CampaignOpt = None,
        user: UserOpt = None,
        wait: WaitOpt = 5.0,
        server: ServerOpt = None,
        key: KeyOpt = None,
    ) -> None:
        """Reject proposed trials; the strategy treats them as infeasible and never proposes them again."""
        _simple(store, campaign, "reject", user, wait, {"trials": trials, "reason": reason}, server, key)


def _simple(
    store: str | None,
    campaign: str | None,
    action: str,
    user: str | None,
    wait: float,
    args: dict | None = None,
    server: str | None = None,
    key: str | None = None,
) -> None:
    """One request to a campaign's runner: through the daemon with --server (as the key's verified user; --user
    is ignored there), else on the store."""
    client = remote(server, key)
    if client is not None:
        r = remote_call(client, action, campaign=campaign, wait=wait, **(args or {}))
        console.print(f"campaign '{r['campaign']}' (id {r['campaign_id']}): {r['outcome']}", soft_wrap=True)
        return
    from labloop.control.requests import ask_runner

    st = open_store(store)
    try:
        c = pick_campaign(st, campaign)
        outcome = ask_runner(st, c, action, args, user, wait)
        console.print(f"campaign '{c.name}' (id {c.id}): {outcome}", soft_wrap=True)
    finally:
        st.close()
