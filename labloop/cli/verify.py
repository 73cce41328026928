"""``labloop verify``: are the asset files (spectra, patterns, images) that runs referenced still as recorded?

Every file a run's ``stream_resource``/``resource`` documents named was checksummed (sha256, size) when the run
ended; this command reads each file again and reports those missing or altered (exit 2 with the list and the fix),
or says that all of them are intact. It only reads.
"""

from __future__ import annotations

from typing import Annotated

import typer

from labloop.errors import LabloopError

from .common import STORE_HELP, console, err_console, open_store, user_errors

StoreOpt = Annotated[str | None, typer.Option(help=STORE_HELP)]
CampaignOpt = Annotated[str | None, typer.Option(help="Campaign id, uid or name (default: every campaign).")]

SHOWN = 50  # problems listed one per line; the rest are counted


def register(app: typer.Typer) -> None:
    @app.command()
    @user_errors
    def verify(store: StoreOpt = None, campaign: CampaignOpt = None) -> None:
        """Check every asset file against the sha256 the store recorded: report missing or altered ones."""
        from labloop.store.assets import verify as check

        st = open_store(store)
        try:
            cid = st.campaign(campaign).id if campaign is not None else None
            what = f"campaign '{st.campaign(cid).name}'" if cid is not None else "the store"
            trials = {
                t.id: t.number
                for c in ([st.campaign(cid)] if cid is not None else st.campaigns())
                for t in st.trials(c.id)
            }
            n, problems = check(st, cid)
        finally:
            st.close()
        if not problems and n == 0:
            console.print(f"{what} has no asset files yet: nothing to check", soft_wrap=True)
            return
        if not problems:
            console.print(
                f"all {n} asset file{'s' if n != 1 else ''} of {what} are intact (sha256 as recorded)", soft_wrap=True
            )
            return
        for p in problems[:SHOWN]:
            trial = f"trial {trials[p.trial_id]}" if p.trial_id in trials else "no trial"
            err_console.print(f"{p.kind}: {p.path} ({trial}, run {p.run_uid[:8]}): {p.detail}", soft_wrap=True)
        if len(problems) > SHOWN:
            err_console.print(f"... and {len(problems) - SHOWN} more", soft_wrap=True)
        missing = sum(p.kind == "missing" for p in problems)
        altered = len(problems) - missing
        raise LabloopError(
            f"{len(problems)} of {n} asset files of {what} are not as recorded ({missing} missing, {altered} altered)",
            "restore those files from a backup (the store keeps their sha256); the data of their runs cannot be "
            "trusted until then",
        )
