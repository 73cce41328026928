"""Commands of the connected lab: ``serve`` (the daemon), ``submit`` (a campaign to it) and ``watch`` (its live
stream, from any machine)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from labloop.errors import LabloopError
from labloop.identity.keys import DEFAULT_CONTROL, DEFAULT_KEYS_DIR, DEFAULT_STREAM
from labloop.store import DEFAULT_URL

from .common import STORE_HELP, KeyOpt, ServerOpt, console, daemon_client, user_errors

if TYPE_CHECKING:
    from labloop.control.client import Client
    from labloop.control.server import DashboardFactory


def _client(server: str | None, key: str | None) -> Client:
    client = daemon_client(server, key)
    if client is None:
        raise LabloopError("no daemon given", "pass --server tcp://HOST:7510 (or set LABLOOP_SERVER)")
    return client


def describe(e: dict[str, Any]) -> str | None:
    """One line for a stream event (None for the documents: `watch` counts them)."""
    kind, b = e["kind"], e.get("body") or {}
    t: Any = b.get("trial")  # JSON: the trial's dict in the kinds that carry one
    if kind == "document":
        return None
    if kind in ("proposal", "trial_start", "approval"):
        return f"trial {t['number']} {kind.replace('_', ' ')}: " + " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items()
        )
    if kind == "step_start":
        return f"trial {b.get('trial')} step {b.get('step')} on {b.get('device')} (attempt {b.get('attempt')})"
    if kind == "step_end":
        return f"trial {b.get('trial')} step {b.get('step')} {b.get('exit_status')}"
    if kind == "measurement":
        return f"trial {t['number']} measured: " + ", ".join(f"{k}={v:.4g}" for k, v in (t["values"] or {}).items())
    if kind == "failure":
        return f"trial {t['number']} {t['state']}: {t['failure_reason']}"
    if kind == "best":
        return f"best so far: trial {b['trial']} {b['objective']} = {b['value']:.4g}"
    if kind in ("alert", "crash"):
        return f"[bold red]{kind}:[/] {b.get('message')}"
    if kind == "stopped":
        return f"[bold green]stopped:[/] {b.get('reason')}"
    if kind == "campaign_end":
        return f"campaign ended: {b.get('state')}"
    if kind in ("campaign_start", "campaign_resume"):
        verb = "started" if kind == "campaign_start" else "resumed"
        return f"campaign {verb} for {b.get('user')} (process {b.get('pid')})"
    return f"{kind}: {b}"


def register(app: typer.Typer) -> None:
    @app.command()
    @user_errors
    def serve(
        store: Annotated[str | None, typer.Option(help=STORE_HELP)] = None,
        control: Annotated[str, typer.Option(help="Address of the control socket.")] = DEFAULT_CONTROL,
        stream: Annotated[str, typer.Option(help="Address of the live stream.")] = DEFAULT_STREAM,
        keys: Annotated[
            Path,
            typer.Option(
                help="Folder of the daemon's key pair (the one `labloop users add "
                "--keys` uses) and its campaigns' logs."
            ),
        ] = DEFAULT_KEYS_DIR,
        http: Annotated[
            str | None,
            typer.Option(
                help="Also serve the web dashboard at HOST:PORT, e.g. 127.0.0.1:8080 (sign in with `labloop users "
                "passwd NAME`)."
            ),
        ] = None,
    ) -> None:
        """Run the daemon: campaigns submitted to it run here, each in its own process; operators control and
        watch them from any machine with their key (`labloop users add`)."""
        from labloop import needs

        # campaigns run in child processes (the optimizer) and --http in a thread (the web stack): a light install
        # is told now, not by a child's traceback in a log
        needs.require("sqlalchemy", "torch", "botorch", "gpytorch", *(("starlette", "uvicorn") if http else ()))
        from labloop.control.server import serve as run_daemon

        dashboard: DashboardFactory | None = None
        if http is not None:  # the CLI wires the dashboard to the daemon: neither layer imports the other upwards
            from labloop.web.server import start_dashboard as dashboard

        run_daemon(store or DEFAULT_URL, control, stream, keys, http, dashboard)

    @app.command()
    @user_errors
    def submit(
        file: Annotated[Path, typer.Argument(help="Campaign file (YAML).")],
        server: ServerOpt = None,
        key: KeyOpt = None,
        time_scale: Annotated[float | None, typer.Option(help="Simulated devices run this many times faster.")] = None,
    ) -> None:
        """Start a campaign on the daemon (validated there before anything starts); prints its id."""
        from labloop.spec import read_spec_text

        text = read_spec_text(file)
        client = _client(server, key)
        try:
            r = client.call("submit", timeout=330.0, text=text, source=str(file), time_scale=time_scale)
        finally:
            client.close()
        how = (f" --server {server}" if server else "") + (f" --key {key}" if key else "")
        console.print(
            f"campaign '{r['campaign']}' (id {r['campaign_id']}) runs on the daemon (pid {r['pid']}); "
            f"follow it with `labloop watch --campaign {r['campaign_id']}{how}`",
            soft_wrap=True,
        )

    @app.command()
    @user_errors
    def watch(
        campaign: Annotated[str | None, typer.Option(help="Campaign name or id (default: every campaign).")] = None,
        server: ServerOpt = None,
        key: KeyOpt = None,
        stream: Annotated[str | None, typer.Option(help="Stream address (default: the control port + 1).")] = None,
        until_end: Annotated[bool, typer.Option(help="Return when a followed campaign ends.")] = False,
    ) -> None:
        """Follow campaigns live: proposals, steps, measurements, best so far, alerts; catches up on what
        happened before (or while the connection was down)."""
        from labloop.control.client import Follower, stream_address

        client = _client(server, key)
        name = None
        view = WatchView()
        stop = stop_on_sigterm()
        if campaign is not None:
            snap = client.call("status", campaign=campaign)
            name = snap["campaign"]["name"]
            view.seed(snap)  # best so far is the campaign view's (the store's), not only what the stream says next
        f = Follower(client, stream or client.key.stream or stream_address(client.address), name)
        try:
            events = f.catch_up(campaign) if campaign is not None else []
            if console.is_terminal:
                with Live(view.render(), console=console, refresh_per_second=8) as live:
                    while not (view.add(events) and until_end) and not stop.is_set():
                        view.take_fresh()  # the Live view shows the last lines; nothing to print line by line
                        live.update(view.render())
                        events = f.poll(0.25)
                    live.update(view.render())
                console.print()
            else:  # a pipe or a file: each event's line as it comes (a Live view would print only at the end)
                while True:
                    ended = view.add(events)
                    for line in view.take_fresh():
                        console.print(line, soft_wrap=True)
                    if (ended and until_end) or stop.is_set():
                        break
                    events = f.poll(0.25)
        except KeyboardInterrupt:
            pass
        finally:
            if not console.is_terminal:
                console.print(view.render())  # the summary, also when interrupted (Ctrl-C, SIGTERM)
            sys.stdout.flush()
            f.close()
            client.close()


def stop_on_sigterm() -> threading.Event:
    """SIGTERM ends `watch` as Ctrl-C does (what it printed is flushed with the summary, its sockets closed), and
    standard output is line-buffered into a pipe or a file, so a reader sees each event as it comes.

    Why a flag the loop reads (it polls every 0.25 s) and not an exception raised by the handler: a signal handler's
    exception lands on whatever bytecode runs, and once it landed inside rich's print of an event line, and the
    summary printed after it never reached the pipe (seen in CI)."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding program): it keeps its own handling
        pass
    try:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # TextIO may lack it: see below
    except (AttributeError, ValueError):  # replaced by a test harness, or detached
        pass
    return stop


class WatchView:
    """The last lines of every followed campaign, and per campaign: documents, measurements, best so far."""

    def __init__(self, keep: int = 25):
        self.keep = keep
        self.lines: list[str] = []
        self.fresh: list[str] = []  # lines not printed yet (`watch` into a pipe or a file)
        self.campaigns: dict[int, dict[str, Any]] = {}

    def seed(self, snap: dict[str, Any]) -> None:
        """Start a campaign's row from its view (``status``)."""
        c, best = snap["campaign"], snap.get("best")
        self.campaigns[c["id"]] = {
            "name": c["name"],
            "docs": 0,
            "seq": 0,
            "state": c["state"],
            "best": "-" if best is None else f"{best['value']:.4g} (trial {best['trial']})",
        }

    def add(self, events: list[dict[str, Any]]) -> bool:
        """Take events; True when one of them ended its campaign."""
        ended = False
        for e in events:
            c = self.campaigns.setdefault(
                e["campaign_id"], {"name": e.get("campaign", "?"), "docs": 0, "seq": 0, "best": "-", "state": "running"}
            )
            c["seq"] = e["seq"]
            if e["kind"] == "document":
                c["docs"] += 1
            elif e["kind"] == "best":
                c["best"] = f"{e['body']['value']:.4g} (trial {e['body']['trial']})"
            elif e["kind"] == "campaign_end":
                c["state"] = e["body"].get("state", "ended")
                ended = True
            line = describe(e)
            if line is not None:
                self.lines.append(f"[dim]{c['name']} #{e['seq']}[/] {line}")
                self.fresh.append(self.lines[-1])
        self.lines = self.lines[-self.keep :]
        return ended

    def take_fresh(self) -> list[str]:
        out, self.fresh = self.fresh, []
        return out

    def render(self) -> Group:
        table = Table("campaign", "state", "events", "documents", "best so far", box=None)
        for cid, c in self.campaigns.items():
            table.add_row(f"{c['name']} ({cid})", c["state"], str(c["seq"]), str(c["docs"]), c["best"])
        return Group(table, Text.from_markup("\n".join(self.lines) or "[dim]waiting for events...[/]"))
