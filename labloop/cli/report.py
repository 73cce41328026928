"""``labloop report``: write a campaign's report (``index.html`` and its figures) into a folder.

Thin: the work is in :mod:`labloop.report`. It only reads the store; the folder is written atomically (made beside
``--out`` and renamed into place), so a refused or failed report leaves nothing behind.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .common import STORE_HELP, console, err_console, open_store, pick_campaign, user_errors


def register(app: typer.Typer) -> None:
    @app.command()
    @user_errors
    def report(
        out: Annotated[
            str,
            typer.Option(
                "--out",
                help="Folder to write index.html and its figures into (created; an earlier report there is replaced).",
            ),
        ],
        store: Annotated[str | None, typer.Option(help=STORE_HELP)] = None,
        campaign: Annotated[
            str | None, typer.Option(help="Campaign id, uid or name (default: the running campaign, else the latest).")
        ] = None,
        trial: Annotated[
            list[int] | None, typer.Option("--trial", help="Also draw this trial's process streams (repeatable).")
        ] = None,
    ) -> None:
        """A campaign's report as a web page that opens offline: convergence against the target and random search,
        Pareto front, parameter importance, predicted vs measured, process streams, failures, dock data."""
        from labloop.report import write_report

        st = open_store(store)
        try:
            c = pick_campaign(st, campaign)
            rep = write_report(st, c, out, trial or ())
        finally:
            st.close()
        data = rep.data
        if not data.trials:
            err_console.print(
                f"note: campaign '{c.name}' has no trials yet: the report says so and has no figures", soft_wrap=True
            )
        elif data.best is None:
            err_console.print(
                f"note: no trial of campaign '{c.name}' succeeded: the report shows the failures only", soft_wrap=True
            )
        console.print(
            f"report of campaign '{c.name}' ({len(data.trials)} trials, {len(rep.files)} figures): {rep.index}",
            soft_wrap=True,
        )
