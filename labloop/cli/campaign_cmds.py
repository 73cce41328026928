"""Campaign commands for operators: validate, run, demo, status, export."""

from __future__ import annotations

import json
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from labloop.errors import LabloopError
from labloop.store import DEFAULT_URL

from .common import STORE_HELP, KeyOpt, ServerOpt, console, daemon_client, open_store, user_errors
from .live import LiveView

if TYPE_CHECKING:  # the spec's models, the store and the exports are imported by the commands that use them
    from labloop.spec import CampaignSpec
    from labloop.store import Store


class Format(str, Enum):
    csv = "csv"
    json = "json"
    jsonl = "jsonl"
    parquet = "parquet"
    documents = "documents"


class SharingClass(str, Enum):
    open = "open"
    shared_closed = "shared-closed"
    closed = "closed"


def _store_url(option: str | None, spec: CampaignSpec | None = None) -> str:
    return option or (spec.store if spec is not None and spec.store else None) or DEFAULT_URL


def run_campaign(file_label: str, prepared: Any, store_url: str) -> None:
    from labloop.run.campaign import CampaignRunner, refuse_second_runner  # only a run pays for the optimizer

    store = open_store(store_url, create=True)
    try:
        refuse_second_runner(prepared.spec, store, prepared.source)  # before the header: a refusal says only why
        about = (prepared.spec.description or "").strip()
        console.print(f"[bold]{prepared.spec.name}[/]" + (f": {about}" if about else ""), soft_wrap=True)
        lab = prepared.spec.lab
        # the time scale is the in-process simulator's; a served or real lab keeps its own time
        scale = f"time scale: {lab.time_scale:g}x   " if lab is not None and lab.simulator else ""
        console.print(f"store: {store_url}   {scale}budget: {prepared.spec.stopping.max_trials} trials", soft_wrap=True)
        runner = CampaignRunner.start(prepared, store, LiveView(prepared.spec))
        require_lease_kept(runner.run())
        require_success(store, runner.campaign.id)
    finally:
        store.close()


def _served_demo(lab: str, directory: Path, time_scale: float | None, faults: bool = True) -> None:
    """A demo on a lab whose instruments are protocol servers: the lab's plugin (``labloop.demo_labs``) serves them
    (with its random faults when ``faults``) and hands back its campaign pointed at them; the campaign runs on an
    embedded store; the servers stop after."""
    from labloop import plugins
    from labloop.run.campaign import prepare_text

    labs = plugins.available("labloop.demo_labs")
    if lab not in labs:
        raise LabloopError(
            f"--lab: no lab called '{lab}' (labs: {', '.join(['thinfilm', *sorted(labs)])})", "name one of them"
        )
    served = plugins.load(lab, "labloop.demo_labs")
    directory.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(directory / 'labloop.db').resolve()}"
    scale = f"{time_scale:g}" if time_scale else "the lab's default"
    console.print(
        f"starting the {lab} lab's instrument servers (background processes, time scale {scale}, "
        f"faults {'on' if faults else 'off'}) ..."
    )
    with served(directory, time_scale, faults=faults) as (text, label):
        run_campaign(label, prepare_text(text, label), url)
    console.print(
        f"instrument servers stopped\ndata: {url}\nnext: labloop status --store {url}\n"
        f"      labloop export --store {url} --format csv",
        soft_wrap=True,
    )


def require_lease_kept(decision: Any) -> None:
    """A runner that lost its campaign's lease to another runner stopped acting on it: say so, exit non-zero."""
    if decision.rule == "lease_lost":
        raise LabloopError(
            decision.reason, "another runner holds the campaign now and continues it; see `labloop status`"
        )


def require_success(store: Store, campaign_id: int) -> None:
    """A campaign that ended without one successful trial did not do its job: say why, and exit non-zero."""
    c = store.campaign(campaign_id)
    if c.state not in ("finished", "stopped"):
        return
    trials = store.trials(campaign_id)
    if any(t.state == "done" for t in trials):
        return
    failed = [t for t in trials if t.state == "failed"]
    last = f"; the last failure: trial {failed[-1].number}: {failed[-1].failure_reason}" if failed else ""
    raise LabloopError(
        f"campaign '{c.name}' ended with no successful trial ({len(failed)} failed){last}",
        f"fix the cause, then start again; `labloop export --campaign {c.id}` lists every reason",
    )


def register(app: typer.Typer) -> None:
    @app.command()
    @user_errors
    def validate(
        file: Annotated[Path, typer.Argument(help="Campaign file (YAML).")],
        store: Annotated[
            str | None, typer.Option(help=STORE_HELP + " (where remote agents' keys are looked up)")
        ] = None,
    ) -> None:
        """Check a campaign file: schema, bounds against device limits, plugins and search space; remote devices
        are reached through their agents."""
        from labloop.control.remote_lab import remote_device
        from labloop.run.campaign import prepare_text
        from labloop.spec import read_spec_text, spec_from_text

        text = read_spec_text(file)
        p = prepare_text(
            text, str(file), store_url=_store_url(store, spec_from_text(text, str(file))), remote=remote_device
        )
        console.print(
            f"[green]ok[/]: {file}: campaign '{p.spec.name}', {len(p.spec.parameter_names())} parameters, "
            f"{len(p.spec.objectives)} objective(s), {len(p.spec.workflow)} workflow steps",
            soft_wrap=True,
        )

    @app.command()
    @user_errors
    def run(
        file: Annotated[Path, typer.Argument(help="Campaign file (YAML).")],
        store: Annotated[str | None, typer.Option(help=STORE_HELP)] = None,
        time_scale: Annotated[float | None, typer.Option(help="Simulated devices run this many times faster.")] = None,
    ) -> None:
        """Run a campaign to its stopping rule, showing each trial as it finishes."""
        from labloop.control.remote_lab import remote_device
        from labloop.run.campaign import prepare_text
        from labloop.run.lab import state_dir_for
        from labloop.spec import read_spec_text, spec_from_text

        text = read_spec_text(file)
        url = _store_url(store, spec_from_text(text, str(file)))  # a simulated lab keeps its world beside the store
        prepared = prepare_text(
            text, str(file), time_scale, state_dir=state_dir_for(url), store_url=url, remote=remote_device
        )
        run_campaign(str(file), prepared, url)

    @app.command()
    @user_errors
    def demo(
        directory: Annotated[Path, typer.Option("--dir", help="Campaign directory for the store.")] = Path(
            "labloop-demo"
        ),
        time_scale: Annotated[float | None, typer.Option(help="Override the demo's time scale.")] = None,
        lab: Annotated[
            str,
            typer.Option(
                "--lab",
                help="thinfilm (in-process simulator) or solid_state (its protocol servers started in the "
                "background, the campaign run against them, the servers stopped).",
            ),
        ] = "thinfilm",
        faults: Annotated[
            bool,
            typer.Option(
                "--faults/--no-faults",
                help="A served lab (solid_state): its random faults at their default rates (furnace trips, cracked "
                "crucibles, dispenser jams, barcode misreads), as a real lab has them; --no-faults for a clean run. "
                "The thin-film lab's campaign file says its own.",
            ),
        ] = True,
    ) -> None:
        """Run a bundled campaign on a simulated lab with a local SQLite store (default: the thin-film lab)."""
        from labloop.run.campaign import prepare_text
        from labloop.run.lab import state_dir_for

        if lab != "thinfilm":
            _served_demo(lab, directory, time_scale, faults)
            return
        text = resources.files("labloop_experiments").joinpath("thinfilm.yaml").read_text(encoding="utf-8")
        directory.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(directory / 'labloop.db').resolve()}"
        prepared = prepare_text(text, "experiments/thinfilm.yaml", time_scale, state_dir=state_dir_for(url))
        run_campaign("experiments/thinfilm.yaml", prepared, url)
        console.print(
            f"data: {url}\nnext: labloop status --store {url}\n      labloop export --store {url} --format csv",
            soft_wrap=True,
        )

    @app.command()
    @user_errors
    def status(
        store: Annotated[str | None, typer.Option(help=STORE_HELP)] = None,
        campaign: Annotated[
            str | None, typer.Option(help="Campaign id, uid or name (default: the running campaign, else the latest).")
        ] = None,
        server: ServerOpt = None,
        key: KeyOpt = None,
        as_json: Annotated[
            bool,
            typer.Option(
                "--json",
                help="Print the campaign view as JSON (what the dashboard's "
                "/api/campaigns/NAME serves) instead of lines for a person.",
            ),
        ] = False,
    ) -> None:
        """Show a campaign's state, its runner's liveness, what each station is doing, trials awaiting approval,
        trial counts, the best result and why it stopped."""
        client = daemon_client(server, key)
        if client is not None:
            try:
                snap = client.call("status", campaign=campaign)
            finally:
                client.close()
        else:
            from labloop.data.status import snapshot

            st = open_store(_store_url(store))
            try:
                snap = snapshot(st, campaign)
            finally:
                st.close()
        if as_json:
            typer.echo(json.dumps(snap, indent=1))
        else:
            print_status(snap)

    @app.command("export")
    @user_errors
    def export_cmd(
        store: Annotated[str | None, typer.Option(help=STORE_HELP)] = None,
        format: Annotated[
            Format,
            typer.Option(
                help="csv, json (one array), jsonl (one object per trial), parquet (needs --output), or documents: "
                "the trials' bluesky documents, one JSON list (name, document) per line."
            ),
        ] = Format.csv,
        output: Annotated[
            Path | None,
            typer.Option(
                help="Write to this file (atomically), with PATH.manifest.json beside it; without it csv, json, jsonl "
                "and documents go to standard output and no manifest is written."
            ),
        ] = None,
        campaign: Annotated[str | None, typer.Option(help="Campaign id, uid or name (default: the latest).")] = None,
        sharing_class: Annotated[
            SharingClass | None,
            typer.Option(
                "--class",
                help="Export what a viewer of this sharing class may see (the campaign file's `sharing` "
                "section): open, shared-closed, or closed (everything). Without it: the owner's full view, as "
                "before.",
            ),
        ] = None,
        check: Annotated[
            Path | None,
            typer.Option(
                "--check",
                help="Scan this export (written with --output) against its campaign in the store for "
                "anything its class may not see: a hidden name, a hidden value (4+ significant figures), a reference "
                "to a document not in the file, an absolute path. Class, format and campaign come from its manifest. "
                "Exits 1 naming each finding.",
            ),
        ] = None,
        server: ServerOpt = None,
        key: KeyOpt = None,
    ) -> None:
        """Write one row per trial (failed and non-best ones included): trial, state, sample, stations, source,
        parameters, objectives, failure_reason, the model's evidence, times; or the trials' documents. With
        --class, only the fields that class may see. With --check FILE, scan an export for leaks instead."""
        fmt = format.value
        if check is not None:
            _check_export(check, store, server, campaign, sharing_class.value if sharing_class else None, fmt)
            return
        if output is None and fmt == "parquet":
            raise LabloopError(
                "parquet is a binary format: it is not written to standard output", "give --output FILE.parquet"
            )
        client = daemon_client(server, key)
        if client is not None:
            try:
                data, man = client.export(
                    campaign=campaign,
                    format=fmt,
                    output_name=str(output) if output else None,
                    sharing_class=sharing_class.value if sharing_class else None,
                )
            finally:
                client.close()
            write_export(data, man, output)
            return
        from labloop.data import sharing

        st = open_store(_store_url(store))
        try:
            data, man = sharing.export_data(st, fmt, campaign, sharing_class.value if sharing_class else None, output)
        finally:
            st.close()
        write_export(data, man, output)


def _check_export(
    path: Path, store: str | None, server: str | None, campaign: str | None, klass: str | None, fmt: str
) -> None:
    from labloop.data import sharing
    from labloop.data.leakcheck import check_export

    if server is not None:
        raise LabloopError("--check reads the campaign from the store", "run it where the store is, with --store")
    st = open_store(_store_url(store))
    try:
        # the manifest's format, else the file's suffix (out.parquet), else --format
        known = sharing.manifest_path(path).is_file() or path.suffix.lstrip(".") in sharing.FORMATS
        findings = check_export(st, path, klass, None if known else fmt, campaign)
    finally:
        st.close()
    for f in findings:
        console.print(f"[red]leak[/] {f}", soft_wrap=True, markup=True, highlight=False)
    if findings:
        console.print(
            f"{path}: {len(findings)} finding(s); fix: export again with this labloop, or narrow the "
            f"campaign's sharing section",
            soft_wrap=True,
        )
        raise typer.Exit(1)
    console.print(f"{path}: nothing its class may not see, no dangling reference, no absolute path", soft_wrap=True)


def write_export(data: bytes, man: dict[str, Any] | None, output: Path | None) -> None:
    """Standard output, or ``output`` and its manifest beside it, atomically."""
    from labloop.data import sharing

    if output is None:
        typer.echo(data.decode("utf-8"), nl=False)
        return
    sharing.write_atomically(
        [(output, data), (sharing.manifest_path(output), (json.dumps(man, indent=2) + "\n").encode())]
    )


def print_status(snap: dict[str, Any]) -> None:
    """Print a :func:`labloop.data.status.snapshot` (read here or sent by a daemon)."""
    c, life = snap["campaign"], snap["liveness"]
    console.print(f"[bold]{c['name']}[/] (id {c['id']}, {c['uid']}) state: {c['state']}", soft_wrap=True)
    if life["state"] != "ended":
        style = {"alive": "green", "hung": "bold red", "dead": "bold red"}[life["state"]]
        console.print(f"[{style}]{life['describe']}[/]", soft_wrap=True)
    if c["note"] and c["state"] in ("running", "paused"):
        console.print(f"[yellow]waiting:[/] {c['note']}", soft_wrap=True)
    console.print(
        "trials: "
        + (", ".join(f"{n} {s}" for s, n in sorted(snap["counts"].items())) or "none")
        + f" (budget {snap['budget']})",
        soft_wrap=True,
    )
    if snap.get("quarantined"):
        console.print(f"[bold red]out of service:[/] {', '.join(snap['quarantined'])}", soft_wrap=True)
    for alert in [a for a in snap.get("alerts", []) if a["action"] == "sample.mismatch"]:
        console.print(f"[bold red]alert:[/] {alert['message']}", soft_wrap=True, highlight=False)
    if snap.get("inventory"):
        from .inventory import stock_lines

        console.print("stocks:")
        for line in stock_lines(snap["inventory"]):
            console.print(line, soft_wrap=True, highlight=False)
    if snap["running_steps"] and life["state"] != "ended":
        console.print("now:" if life["alive"] else "when the runner stopped:")
        for s in snap["running_steps"]:
            console.print(
                f"  trial {s['trial'] or '?'} (sample {s['sample'] or '?'}): {s['label']} "
                f"on {s['device'] or '?'}, attempt {s['attempt']}, since {s['since'] or '?'} UTC",
                soft_wrap=True,
            )
    if snap["awaiting"]:
        console.print(
            f"awaiting approval: trials {', '.join(map(str, snap['awaiting']))} "
            f"(labloop approve N... / labloop reject N... --reason TEXT)",
            soft_wrap=True,
        )
    best = snap["best"]
    if best is not None:
        console.print(
            f"best: trial {best['trial']}: {best['objective']} = {best['value']:.4g}"
            f"{' ' + best['unit'] if best['unit'] else ''} at {best['params']}",
            soft_wrap=True,
        )
    _print_model_view(snap["model"])
    if c["stop_reason"]:
        console.print(f"stopped: {c['stop_reason']}", soft_wrap=True)


def _print_model_view(model: dict[str, Any] | None) -> None:
    """What the model thought at its latest proposal (stored with that trial): which parameters matter (ARD
    importance) and where it predicts the best result, so an operator sees why the loop goes where it goes."""
    if model is None:
        return
    imp = model["importance"]
    console.print(
        f"model (at trial {model['trial']}): importance " + ", ".join(f"{k} {v:.0%}" for k, v in list(imp.items())[:8]),
        soft_wrap=True,
    )
    pb = model.get("predicted_best")
    if pb:
        params = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in pb["params"].items()}
        value = ", ".join(f"{k} = {v:.4g}" for k, v in pb.items() if k != "params" and isinstance(v, (int, float)))
        console.print(
            f"model's predicted best: {value} at " + " ".join(f"{k}={v}" for k, v in params.items()), soft_wrap=True
        )
