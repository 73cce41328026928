"""``labloop calibrate DEVICE``: calibrate a device of a campaign's lab against its reference and record it."""

from __future__ import annotations

from typing import Annotated

import typer

from labloop.errors import LabloopError

from .common import STORE_HELP, console, open_store, pick_campaign, user_errors


def register(app: typer.Typer) -> None:
    @app.command()
    @user_errors
    def calibrate(
        device: Annotated[str, typer.Argument(help="Device to calibrate, e.g. probe.")],
        store: Annotated[str | None, typer.Option(help=STORE_HELP)] = None,
        campaign: Annotated[
            str | None,
            typer.Option(help="Campaign (id or name) whose lab to build (default: the running, else the latest one)."),
        ] = None,
        file: Annotated[
            str | None,
            typer.Option("--file", help="Build the lab from this campaign file instead of a stored campaign."),
        ] = None,
        reference: Annotated[
            float | None, typer.Option(help="Certified value of the reference (default: the device's own standard).")
        ] = None,
        user: Annotated[str | None, typer.Option(help="Who calibrates (default: login name).")] = None,
    ) -> None:
        """Run DEVICE's calibration plan (measuring its reference) and record the result (table calibrations, audit
        log). A malformed result (NaN, out of range) is refused and nothing is recorded."""
        from labloop.control.remote_lab import remote_device
        from labloop.run import calibration  # builds the lab and runs a plan: only this command pays for it
        from labloop.run.campaign import prepare, prepare_text
        from labloop.run.lab import state_dir_for
        from labloop.run.liveness import liveness
        from labloop.spec import load_spec
        from labloop.store import DEFAULT_URL

        # with a campaign file the store records the calibration and may be new (the file's own `store:` when no
        # --store is given: the one `labloop run FILE` uses, so the run finds the calibration); else it holds the
        # campaign
        if file is not None:
            st = open_store(store or load_spec(file).store or DEFAULT_URL, create=True)
        else:
            st = open_store(store)
        try:
            campaign_id = None
            if file is not None:
                prepared = prepare(file, state_dir=state_dir_for(st.url), remote=remote_device)
            else:
                c = pick_campaign(st, campaign)
                if liveness(c).alive and c.state != "paused":
                    raise LabloopError(
                        f"campaign '{c.name}' (id {c.id}) is running and uses the lab",
                        f"pause it (`labloop pause`), calibrate, then `labloop resume`: the campaign puts the "
                        f"calibration in force when it resumes (or give it lab.calibration.{device}.on_expiry: "
                        f"calibrate)",
                    )
                lab_audit = [a for a in st.audit_log(c.id) if a.action == "campaign.lab"]
                time_scale = lab_audit[-1].detail.get("time_scale") if lab_audit else None
                prepared = prepare_text(
                    c.spec_text,
                    f"<stored campaign {c.name}>",
                    time_scale,
                    read_prior_files=False,
                    state_dir=state_dir_for(st.url),
                    remote=remote_device,
                )
                campaign_id = c.id
            lab = prepared.lab
            if lab is None:
                raise LabloopError(
                    "the campaign has no lab section: nothing to calibrate", "give a campaign file with a lab"
                )
            dev = calibration.check_device(lab, device)
            md = {"campaign_id": campaign_id} if campaign_id is not None else {}
            cal, run_uid = calibration.run_calibration(dev, device, reference, md=md)
            row = calibration.record(st, campaign_id, device, cal, run_uid, user=user)
            result = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in cal["result"].items())
            console.print(
                f"calibrated '{device}' ({cal['id']}) against {cal.get('reference')}: {result}; "
                f"recorded as calibration {row.id}",
                soft_wrap=True,
            )
        finally:
            st.close()
