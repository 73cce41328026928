"""Shared CLI plumbing: operator-readable errors instead of tracebacks, and the store option."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from labloop import needs
from labloop.errors import LabloopError

if TYPE_CHECKING:  # imported when a command runs: `labloop --help` and the daemon's clients stay light
    from labloop.control.client import Client
    from labloop.store import Store
    from labloop.store.schema import Campaign

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

P = ParamSpec("P")
R = TypeVar("R")

STORE_HELP = "Store URL: sqlite:///path/labloop.db (default: ./labloop.db) or postgresql://user@host/db."
ServerOpt = Annotated[
    str | None,
    typer.Option(
        help="Ask the daemon at this address (`labloop serve`, e.g. tcp://lab-pc:7510) instead of the store; "
        "env LABLOOP_SERVER."
    ),
]
KeyOpt = Annotated[str | None, typer.Option(help="Your key file (from `labloop users add`); env LABLOOP_KEY.")]


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Print a :class:`LabloopError` as 'error: problem' + 'fix: ...' and exit 2; never a traceback. A package that
    one of labloop's extras installs and this install lacks (a light instrument-PC install running a campaign
    host's command) is such an error too, naming the extra (:mod:`labloop.needs`)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with needs.extras_named():
                return fn(*args, **kwargs)
        except LabloopError as exc:
            # escaped: a message's brackets (`pip install 'labloop[lab]'`, a list) are text, not rich markup
            err_console.print(f"[bold red]error:[/] {escape(exc.problem)}", soft_wrap=True)
            if exc.fix:
                err_console.print(f"[bold]fix:[/] {escape(with_options(exc.fix, kwargs))}", soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


#: Commands that take --server/--key (they may run through a daemon), and those that take --store.
DAEMON_COMMANDS = {"status", "pause", "resume", "stop", "estop", "approve", "reject", "export", "submit", "watch"}
STORE_COMMANDS = {
    "status",
    "pause",
    "resume",
    "stop",
    "estop",
    "approve",
    "reject",
    "export",
    "show",
    "verify",
    "report",
    "audit",
    "calibrate",
    "validate",
    "run",
    "users",
    "db",
}
_HINT = re.compile(r"`(labloop ([a-z]+)[^`]*)`")


def with_options(fix: str, given: dict[str, Any]) -> str:
    """A fix's commands as the operator can run them: each complete `labloop CMD ...` it names (no FILE or N to
    fill in) gets the --server and --key, or the --store, this command was given (when CMD takes them and names
    none itself). The daemon and the store do not know how the operator reached them; the command line does."""

    def complete(m: re.Match[str]) -> str:
        cmd, name = m.group(1), m.group(2)
        if any(w.isupper() or "..." in w for w in cmd.split()):
            return m.group(0)  # a template (FILE, N...): the operator writes the command; the message says how
        extra = []
        if given.get("server") and name in DAEMON_COMMANDS and "--server" not in cmd:
            extra += ["--server", str(given["server"])] + (["--key", str(given["key"])] if given.get("key") else [])
        elif given.get("store") and name in STORE_COMMANDS and "--store" not in cmd and not given.get("server"):
            extra += ["--store", str(given["store"])]
        elif given.get("key") and name in DAEMON_COMMANDS and "--key" not in cmd:
            extra += ["--key", str(given["key"])]
        return f"`{' '.join([cmd, *extra])}`"

    return _HINT.sub(complete, fix)


def open_store(store: str | None, create: bool = False) -> Store:
    """The store at ``store`` (default: ./labloop.db); SQLAlchemy is imported only here, when a command needs it."""
    from labloop.store import DEFAULT_URL, Store

    return Store(store or DEFAULT_URL, create=create)


def pick_campaign(st: Store, campaign: str | None) -> Campaign:
    """The campaign ``--campaign`` names (default: the running one, else the latest)."""
    from labloop.data.status import pick_campaign as pick

    return pick(st, campaign)


def daemon_client(server: str | None, key: str | None) -> Client | None:
    """A client of the daemon when --server (or LABLOOP_SERVER) is given; None: the command works on the store."""
    from labloop.control.client import Client

    return Client.from_options(server, key)
