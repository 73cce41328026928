"""``labloop show trial N``: one trial's whole chain, as an operator reads it.

Recipe, where the proposal came from (and the model's evidence), every step with the device that did it (driver,
version, serial, calibration: the provenance in the run's start document), the readings of each run's primary
stream, the asset files with their sha256, a summary of the process streams, the failure reason and the trial's
audit entries. It only reads.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape

from labloop.errors import LabloopError

from .common import STORE_HELP, console, open_store, pick_campaign, user_errors

show_app = typer.Typer(help="Show one object of the store in full (a trial and its whole chain).", no_args_is_help=True)

EVIDENCE_CHARS = 400  # the model's evidence stays one line


def register(app: typer.Typer) -> None:
    app.add_typer(show_app, name="show")


@show_app.command("trial")
@user_errors
def show_trial(
    number: Annotated[
        int,
        typer.Argument(
            help="The trial's number within its campaign (as `labloop status` and `labloop export` show it)."
        ),
    ],
    store: Annotated[str | None, typer.Option(help=STORE_HELP)] = None,
    campaign: Annotated[
        str | None, typer.Option(help="Campaign id, uid or name (default: the running campaign, else the latest).")
    ] = None,
) -> None:
    """A trial's whole chain: recipe, proposal, steps with their devices' provenance, readings, assets, process
    streams, failure and audit entries."""
    st = open_store(store)
    try:
        c = pick_campaign(st, campaign)
        trials = st.trials(c.id)
        trial = next((t for t in trials if t.number == number), None)
        if trial is None:
            have = f"it has trials {trials[0].number}-{trials[-1].number}" if trials else "it has no trials yet"
            raise LabloopError(
                f"campaign '{c.name}' (id {c.id}) has no trial {number}: {have}",
                "give a trial number from `labloop status` / `labloop export`, or pick another "
                "campaign with --campaign",
            )
        steps = st.steps(trial_id=trial.id)
        docs = st.documents(trial_id=trial.id)
        assets = st.assets(c.id, trial.id)
        from labloop.store.assets import verify

        # what `labloop verify` says of this trial's files: an altered or missing file is never shown as good
        problems = {p.path: p for p in verify(st, c.id)[1] if p.trial_id == trial.id} if assets else {}
        points = st.process_points(trial.id)
        audit = [a for a in st.audit_log(c.id) if _about(a, trial.number)]
    finally:
        st.close()
    runs = _runs(docs)
    units = {
        k: str(v.get("units"))
        for n, d in docs
        if n == "descriptor"
        for k, v in (d.get("data_keys") or {}).items()
        if isinstance(v, dict) and v.get("units")
    }
    out = _Out()
    out(
        f"[bold]trial {trial.number}[/] of campaign '{escape(c.name)}' (id {c.id}): {trial.state}, "
        f"sample {escape(trial.sample_id)}"
    )
    out("recipe: " + (" ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items()) or "-"))
    out(f"proposal: {escape(trial.source)}; evidence: {_evidence(trial.info or {})}")
    if trial.values:
        out("values: " + " ".join(f"{k}={_fmt(v)}" for k, v in trial.values.items()))
    times = [f"proposed {_t(trial.proposed_at)}"]
    if trial.started_at:
        times.append(f"started {_t(trial.started_at)}")
    if trial.finished_at:
        times.append(f"finished {_t(trial.finished_at)}")
    out("times (UTC): " + ", ".join(times))
    origin = next((r["start"].get("provenance") for r in runs.values() if r["start"].get("provenance")), None)
    if origin:
        out(
            f"campaign file sha256 {origin.get('spec_hash')}, labloop {origin.get('labloop_version')}, submitted "
            f"by {escape(str(origin.get('user')))}, run by {escape(str(origin.get('process')))}"
        )
    if trial.failure_reason:
        out(f"[bold red]failure:[/] {escape(trial.failure_reason)}")

    out("")
    out(f"[bold]steps[/] ({len(steps)}):")
    for s in steps:
        end = _t(s.finished_at) if s.finished_at else "-"
        out(
            f"  {s.index} {escape(s.label)} on {escape(s.device or '?')}, attempt {s.attempt}: {s.state}, "
            f"{_t(s.started_at)} -> {end}"
        )
        if s.error:
            out(f"      error: {escape(s.error)}")
        run = runs.get(s.run_uid or "")
        prov = (run or {}).get("start", {}).get("provenance") or {}
        for name, d in (prov.get("devices") or {}).items():
            out(
                f"      device {escape(name)} ({d.get('role')}): {escape(str(d.get('driver')))} "
                f"{escape(str(d.get('driver_version')))}, serial {escape(str(d.get('serial') or '-'))}, "
                f"calibration {_calibration(d)}"
            )
        if run is None:
            out("      no run recorded")
            continue
        for name, value, unit in _readings(run):  # not `units`: that is the streams' table, read below
            out(f"      {escape(name)} = {escape(value)}{' ' + escape(unit) if unit else ''}")

    out("")
    out(f"[bold]assets[/] ({len(assets)}):")
    for a in assets:
        out(f"  {escape(a.path)} sha256 {a.sha256 or '(unreadable at the end of the run)'} {a.size} bytes")
        if a.path in problems:
            p = problems[a.path]
            out(
                f"    [bold red]{p.kind.upper()}[/]: {escape(p.detail)}; its data cannot be trusted (`labloop verify` "
                f"lists every such file; restore it from a backup)"
            )

    out("")
    streams = _streams(points)
    out(f"[bold]process streams[/] ({len(streams)}):")
    for sig, (n, lo, hi, last) in streams.items():
        unit = f" {escape(units[sig])}" if sig in units else ""
        out(f"  {escape(sig)}: {n} points, min {_fmt(lo)}{unit}, max {_fmt(hi)}{unit}, last {_fmt(last)}{unit}")

    out("")
    out(f"[bold]audit[/] ({len(audit)}):")
    for entry in audit:
        detail = ", ".join(f"{k}={_fmt(v)}" for k, v in (entry.detail or {}).items())
        out(f"  {_t(entry.at)} {escape(entry.user)} {escape(entry.action)} {detail}")


class _Out:
    def __call__(self, text: str) -> None:
        console.print(text, soft_wrap=True)


def _t(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if at else "-"


def _fmt(v: Any) -> str:
    """A value on one line, markup-safe."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return escape("{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}")
    if isinstance(v, (list, tuple)):
        if len(v) > 6:
            return f"array[{len(v)}]"
        return escape("[" + ", ".join(_fmt(x) for x in v) + "]")
    return escape(str(v))


def _evidence(info: dict[str, Any]) -> str:
    text = " ".join(f"{k}={_fmt(v)}" for k, v in info.items()) or "-"
    return text if len(text) <= EVIDENCE_CHARS else text[: EVIDENCE_CHARS - 1] + "…"


def _calibration(d: dict[str, Any]) -> str:
    cal = d.get("calibration")
    if not cal:
        return "none"
    age = d.get("calibration_age_s")
    label = cal.get("id", "?") if isinstance(cal, dict) else cal
    at = f" of {cal['at']}" if isinstance(cal, dict) and cal.get("at") else ""
    return escape(f"{label}{at}" + (f", {_age(age)} old in the lab's time" if isinstance(age, (int, float)) else ""))


def _age(seconds: float) -> str:
    """An age read at a glance: 45 s, 12 min, 3.4 h, 2.1 d."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 172800 else f"{seconds / 86400:.1f} d"


def _runs(docs: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Run uid -> its start document, its primary descriptors and events."""
    runs: dict[str, dict[str, Any]] = OrderedDict()
    by_descriptor: dict[str, str] = {}
    primary: set[str] = set()
    for name, doc in docs:
        if name == "start":
            runs[doc["uid"]] = {"start": doc, "keys": {}, "events": []}
        elif name == "descriptor" and doc.get("run_start") in runs:
            by_descriptor[doc["uid"]] = doc["run_start"]
            if doc.get("name", "primary") == "primary":
                primary.add(doc["uid"])
                runs[doc["run_start"]]["keys"].update(doc.get("data_keys") or {})
        elif name == "event" and doc.get("descriptor") in primary:
            runs[by_descriptor[doc["descriptor"]]]["events"].append(doc)
    return runs


def _readings(run: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, value, units) of the run's primary stream; data in files (external) say so."""
    out = []
    keys = run["keys"]
    for ev in run["events"]:
        for name, value in (ev.get("data") or {}).items():
            units = str((keys.get(name) or {}).get("units") or "")
            out.append((name, _plain(value), units))
    for name, key in keys.items():
        if key.get("external") and not any(name in (ev.get("data") or {}) for ev in run["events"]):
            shape = "x".join(str(n) for n in key.get("shape") or []) or "scalar"
            out.append((name, f"<{shape} in an asset file>", str(key.get("units") or "")))
    return out


def _plain(v: Any) -> str:
    if v == "":
        return '""'
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return f"array[{len(v)}]" if len(v) > 6 else str(list(v))
    return str(v)


def _streams(points: list[Any]) -> dict[str, tuple[int, float, float, float]]:
    out: dict[str, tuple[int, float, float, float]] = OrderedDict()
    for p in points:  # ordered by time
        n, lo, hi, _ = out.get(p.signal, (0, p.value, p.value, p.value))
        out[p.signal] = (n + 1, min(lo, p.value), max(hi, p.value), p.value)
    return out


def _about(entry: Any, number: int) -> bool:
    """Is this audit entry about trial ``number``? (``trial: N`` or ``trials: [..]`` in its detail)."""
    d = entry.detail or {}
    if d.get("trial") == number:
        return True
    trials = d.get("trials")
    if isinstance(trials, list) and number in trials:
        return True
    args = d.get("args")
    return isinstance(args, dict) and isinstance(args.get("trials"), list) and number in args["trials"]
