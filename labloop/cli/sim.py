"""``labloop sim serve LAB``: run a simulated lab's instruments as real protocol servers until Ctrl-C or SIGTERM.

Only ``solid_state`` is served this way: its instruments speak Modbus, OPC UA, VISA and serial, each server in its
own process on 127.0.0.1 (see :mod:`labloop_simulators.solid_state_lab.lab`); the thin-film lab stays in-process.
Imports are lazy: the operator CLI must not pay for asyncua, pymodbus or numpy when it starts.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

sim_app = typer.Typer(
    name="sim", help="Simulated labs: serve a lab's instruments as protocol servers.", no_args_is_help=True
)

LABS = ("solid_state",)


@sim_app.command("serve")
def serve(
    lab: Annotated[str, typer.Argument(help="The lab to serve: solid_state.")],
    time_scale: Annotated[
        float,
        typer.Option("--time-scale", help="Model seconds per real second (a 9-hour firing takes 9 minutes at 60)."),
    ] = 60.0,
    ports_file: Annotated[
        Path, typer.Option("--ports-file", help="Where to write the endpoints (JSON); removed when the lab stops.")
    ] = Path("solid_state_lab.json"),
    base_port: Annotated[
        int,
        typer.Option(
            "--base-port",
            help="First of the fixed ports (furnace1 = base, "
            "furnace2 = base + 1, ...; see the ports file); 0: free ports.",
        ),
    ] = 47100,
    world: Annotated[
        Path | None,
        typer.Option(
            "--world",
            help="The shared sample world (JSON); kept if it "
            "exists (the lab resumes), else made fresh. Default: beside the "
            "ports file, always fresh.",
        ),
    ] = None,
    faults: Annotated[
        bool,
        typer.Option(
            "--faults/--no-faults",
            help="Random faults at realistic rates (trips, cracks, jams, misreads); injected faults work either way.",
        ),
    ] = True,
    fault_rate: Annotated[
        list[str] | None,
        typer.Option(
            "--fault-rate",
            help="With --faults: override one rate, NAME=P (crucible_crack, furnace_trip, barcode_misread, "
            "dispenser_jam; a probability per event); repeat for several. A fault-injection run raises rare "
            "faults so that each happens in a short campaign.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every server's random draws.")] = 0,
) -> None:
    """Start every instrument server of LAB, print and write the endpoints, serve until Ctrl-C or SIGTERM."""
    if lab not in LABS:
        typer.echo(
            f"error: unknown lab {lab!r}; served labs: {', '.join(LABS)} (the thin-film lab runs "
            "in-process: labloop demo)",
            err=True,
        )
        raise typer.Exit(2)
    if time_scale <= 0:
        typer.echo("error: --time-scale must be positive", err=True)
        raise typer.Exit(2)
    from labloop import plugins  # the served lab is a plugin, loaded by name (entry point labloop.served_labs)

    SolidStateLab = plugins.load(lab, "labloop.served_labs")
    if fault_rate and not faults:
        typer.echo("error: --fault-rate needs --faults (--no-faults turns every rate off)", err=True)
        raise typer.Exit(2)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    world_path = world if world is not None else ports_file.with_suffix(".world.json")
    try:
        sim = SolidStateLab(
            time_scale=time_scale,
            base_port=base_port,
            world=world_path,
            faults=faults,
            fault_rates=fault_rate or [],
            seed=seed,
            fresh_world=world is None,
        )
    except ValueError as exc:  # a bad --fault-rate: the lab's message names the allowed names
        typer.echo(f"error: --fault-rate: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        sim.start()
    except Exception as exc:  # noqa: BLE001 - LabloopError or a busy port: say it, exit non-zero
        typer.echo(f"error: the lab did not start: {getattr(exc, 'problem', exc)}", err=True)
        raise typer.Exit(1) from None
    try:
        info = sim.endpoints()
        ports_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = ports_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(ports_file)  # whoever waits for the file sees it whole
        for name, d in info["devices"].items():
            typer.echo(f"{name:10s} {d['protocol']:7s} {d['address']}")
        typer.echo(
            f"serving {lab} at time scale {time_scale:g}; endpoints in {ports_file}; world {world_path}; "
            "Ctrl-C or SIGTERM stops it",
        )
        reported: set[str] = set()
        while not stop.wait(0.5):
            for name in set(sim.dead()) - reported:
                reported.add(name)
                typer.echo(f"{name} stopped (its process exited); the other instruments keep serving", err=True)
    finally:
        sim.stop()
        ports_file.unlink(missing_ok=True)
        typer.echo("stopped every instrument server")


def register(app: typer.Typer) -> None:
    app.add_typer(sim_app, name="sim")
