"""The ``labloop`` command line (typer). Each sub-module registers its commands on :data:`app`."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="labloop",
    help="Autonomous closed-loop lab orchestrator: run, watch and export self-driving-lab campaigns.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from . import campaign_cmds, control_cmds  # noqa: E402 - the modules register on `app`, made above

campaign_cmds.register(app)
control_cmds.register(app)

for _name in (
    "replay",
    "devices",
    "db",
    "verify",
    "show",
    "calibrate",
    "users",
    "daemon_cmds",
    "agent",
    "sim",
    "report",
    "inventory",
):
    try:
        _mod = __import__(f"labloop.cli.{_name}", fromlist=["register"])
    except ModuleNotFoundError as _exc:  # a command module still being written must not break the others
        if _exc.name != f"labloop.cli.{_name}":
            raise
    else:
        _mod.register(app)


def main() -> None:
    app()
