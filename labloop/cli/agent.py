"""``labloop agent MODULE:ATTR --bind ADDR``: serve one device to the lab's runner from the computer it is on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import console, user_errors


def register(app: typer.Typer) -> None:
    @app.command()
    @user_errors
    def agent(
        target: Annotated[
            str,
            typer.Argument(
                help="The device: package.module:Class (or factory), or an entry point name in 'labloop.devices'."
            ),
        ],
        bind: Annotated[str, typer.Option(help="Address to listen on, e.g. tcp://0.0.0.0:7600.")],
        config: Annotated[
            Path | None,
            typer.Option(
                help="YAML/JSON file: the device's constructor options, "
                "plus trusted_keys (Z85 public keys of other runners "
                "allowed in)."
            ),
        ] = None,
        name: Annotated[
            str | None,
            typer.Option(help="Device name (must match the campaign's name for it; default: the key file's name)."),
        ] = None,
        key: Annotated[
            Path | None,
            typer.Option(
                help="The agent's key file from `labloop users add NAME --role "
                "agent --out FILE` (default: env LABLOOP_KEY)."
            ),
        ] = None,
    ) -> None:
        """Serve one ophyd device over 0MQ with CURVE to the runners whose keys it trusts; runs until Ctrl-C."""
        from labloop.control.agent import run_agent
        from labloop.driver_options import load_config

        run_agent(
            target,
            bind,
            load_config(config),
            name,
            key,
            announce=lambda line: console.print(line, soft_wrap=True, highlight=False),
        )
