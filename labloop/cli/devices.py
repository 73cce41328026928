"""``labloop devices``: list installed drivers and simulators; check a driver's conformance before it meets hardware.

The lead wires it into the main app with :func:`register`; it also runs standalone::

    app = typer.Typer(); register(app); app(["devices", "check", "labloop_devices.scpi_smu:ScpiSmu"])
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from labloop import needs, plugins
from labloop.errors import LabloopError

devices_app = typer.Typer(
    name="devices",
    help="Device drivers: list what is installed, and prove a driver with the conformance checks.",
    no_args_is_help=True,
)

_STYLE = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]skip[/]"}


def _console() -> Console:
    return Console(width=160, soft_wrap=False)


@devices_app.command("check")
def check(
    target: Annotated[
        str,
        typer.Argument(
            help="The driver: package.module:Class, an entry point name in "
            "'labloop.devices', or an instrument description FILE.yaml."
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="YAML or JSON file of constructor options "
            "(key 'simulator_options': options of the simulated endpoint).",
        ),
    ] = None,
    simulator: Annotated[
        bool,
        typer.Option(
            "--simulator/--no-simulator", help="Start the driver's simulated endpoint when the config names no host."
        ),
    ] = True,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only this check (repeatable).")] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds a Status may take (default: the driver's declared default_timeout).")
    ] = None,
    grace: Annotated[
        float, typer.Option(help="Seconds allowed beyond the timeout before a Status counts as hung.")
    ] = 1.0,
    remote: Annotated[
        bool,
        typer.Option(
            "--remote",
            help="Serve the driver from a `labloop agent` process and "
            "check it through its remote proxy (as a campaign's remote device).",
        ),
    ] = False,
    simulated: Annotated[
        bool,
        typer.Option(
            "--simulated",
            help="FILE.yaml: start the simulator its "
            "'simulation:' block names (own process, 127.0.0.1) and check the "
            "device against it through the real protocol library.",
        ),
    ] = False,
) -> None:
    """Build the driver and run the conformance checks; exit 1 when any check fails."""
    from labloop.devkit import instruments  # the declarative builder: only a check of a YAML file pays for it
    from labloop.driver_options import load_config  # yaml: only this command reads a config file

    console = _console()
    try:
        with needs.extras_named():  # a transport's or the lab's package missing: name the extra
            options = load_config(config)
            if instruments.is_instrument_file(target):
                report = instruments.check_file(
                    target, simulated=simulated, remote=remote, timeout=timeout, grace=grace, only=only
                )
            elif remote:
                from labloop.devkit.remote_check import check_remote

                report = check_remote(target, options, simulator=simulator, timeout=timeout, grace=grace, only=only)
            else:
                from labloop.devkit import conformance  # bluesky: only a check pays for it

                report = conformance.check_device(
                    target, options, simulator=simulator, timeout=timeout, grace=grace, only=only
                )
    except LabloopError as exc:
        console.print(f"[bold red]error:[/] {escape(exc.problem)}", markup=True, highlight=False)
        if exc.fix:
            console.print(f"  fix: {escape(exc.fix)}", highlight=False)
        raise typer.Exit(2) from None
    table = Table(title=f"conformance of {report.target}", show_lines=False)
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("details")
    for r in report.results:
        table.add_row(r.name, _STYLE[r.outcome], f"{r.seconds:.2f}s", r.message)
    console.print(table, highlight=False)
    failed = [r.name for r in report.failures]
    if failed:
        console.print(f"[bold red]{len(failed)} check(s) failed:[/] {', '.join(failed)}", highlight=False)
        raise typer.Exit(1)
    passed = sum(r.passed for r in report.results)
    console.print(f"[green]all checks passed[/] ({passed} passed, {len(report.results) - passed} skipped)")


def _describe_plugin(ref: str, group: str) -> tuple[str, str, str | None]:
    """(kind/role, simulator, load error) of an installed plugin; a broken plugin is reported, not raised."""
    try:
        obj = plugins.load(ref, group)
    except LabloopError as exc:
        return "[red]failed to load[/]", "", exc.problem
    role = getattr(obj, "role", None) if inspect.isclass(obj) else None
    kind = role if isinstance(role, str) else ("class" if inspect.isclass(obj) else "factory")
    sim = getattr(obj, "simulator", "")
    return kind, sim if isinstance(sim, str) else "", None


@devices_app.command("list")
def list_devices() -> None:
    """Show installed drivers (entry points 'labloop.devices') with their simulated endpoints, and simulators."""
    console = _console()
    drivers = plugins.available("labloop.devices")
    table = Table(title="drivers (entry point group labloop.devices)")
    for col in ("name", "target", "role", "simulated endpoint"):
        table.add_column(col, no_wrap=True)
    broken = []
    for name, value in sorted(drivers.items()):
        role, sim, error = _describe_plugin(value, "labloop.devices")
        table.add_row(name, value, role, sim or "-")
        if error:
            broken.append(f"{name}: {error}")
    console.print(table if drivers else "[yellow]no drivers installed in entry point group labloop.devices[/]")
    for line in broken:
        console.print(f"[red]{line}[/]", highlight=False)
    sims = plugins.available("labloop.simulators")
    stable = Table(title="simulated labs (entry point group labloop.simulators)")
    stable.add_column("name", no_wrap=True)
    stable.add_column("target", no_wrap=True)
    for name, value in sorted(sims.items()):
        stable.add_row(name, value)
    console.print(stable if sims else "[yellow]no simulators installed in entry point group labloop.simulators[/]")
    console.print(
        "check one with: labloop devices check NAME_OR_MODULE:CLASS [--config FILE], or an instrument "
        "described in YAML with: labloop devices check FILE.yaml --simulated",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add the ``devices`` sub-app to the main ``labloop`` app."""
    app.add_typer(devices_app, name="devices")
