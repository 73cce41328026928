"""Sharing classes: what a viewer of class ``open``, ``shared-closed`` or ``closed`` may see of a campaign, and the
exports that hold exactly that (``labloop export --class``).

Over 500 lines, on purpose: what a class may see and every export that honours it are one rule, kept in one
module so that no format can drift from it (redaction of documents is in ``redact``, the check in ``leakcheck``).

The campaign file's ``sharing`` section gives each field a class (see :class:`labloop.spec.SharingSpec`); a viewer
of class X sees the fields whose class is X or less restrictive (open < shared-closed < closed). A field that is
left out is left out everywhere: its column, its key in event data, descriptors and configuration, its entry in a
start document's ``recipe`` or metadata, the model's evidence about it, and, as a last guard, any number of a
trial's hidden parameter or objective values that shows up under another name. Its name may still appear in the
manifest, which says what was left out and why.

Always shared (they say which sample went through which station when, never what was made or measured): the trial
number, its state, the sample id, the stations used, and the start and end times.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from labloop import __version__
from labloop.errors import LabloopError
from labloop.run.lab import setpoint_targets
from labloop.spec import (
    SHARING_CLASSES,
    SHARING_KINDS,
    CampaignSpec,
    CategoricalParameter,
    CompositionParameter,
    FixedParameter,
    ObjectiveSpec,
    OutcomeConstraintSpec,
)
from labloop.store import Store
from labloop.store.connection import display_url
from labloop.store.schema import Campaign, Step, Trial

from .export import _iso, campaign_spec, columns, export
from .parquet import parquet as _parquet

RANK = {c: i for i, c in enumerate(SHARING_CLASSES)}
ALWAYS = ("trial", "state", "sample_id", "stations", "started", "finished")
FORMATS = ("csv", "json", "jsonl", "parquet", "documents")


class Policy:
    """The class of every field of one campaign, on one day (an embargo that has ended makes closed shared-closed)."""

    def __init__(self, spec: CampaignSpec, today: date | None = None):
        self.spec = spec
        self.sharing = spec.sharing
        self.today = today or datetime.now(UTC).date()
        emb = self.sharing.embargo_until
        self.embargo_lifted = emb is not None and self.today >= emb
        self.parameters = spec.parameter_names()
        self.objectives = [o.name for o in spec.objectives] + [o.name for o in spec.outcome_constraints]
        self._group = {c: p.name for p in spec.parameters if isinstance(p, CompositionParameter) for c in p.components}

    def fields(self) -> list[str]:
        """Every field a class is given to, in export order."""
        return [*self.parameters, *self.objectives, *SHARING_KINDS]

    def declared(self, name: str) -> str:
        given = self.sharing.fields
        if name in given:
            return given[name]
        if name in self._group and self._group[name] in given:
            return given[self._group[name]]
        if name in self.parameters and "parameters" in given:
            return given["parameters"]
        if name in self.objectives and "objectives" in given:
            return given["objectives"]
        return self.sharing.default

    def klass(self, name: str) -> str:
        c = self.declared(name)
        return "shared-closed" if c == "closed" and self.embargo_lifted else c

    def table(self) -> dict[str, str]:
        return {f: self.klass(f) for f in self.fields()}


class View:
    """What one viewer class sees of a campaign, and the redaction of rows and documents to that."""

    def __init__(self, policy: Policy, viewer: str):
        if viewer not in RANK:
            raise LabloopError(f"'{viewer}' is not a sharing class", f"use one of: {', '.join(SHARING_CLASSES)}")
        self.policy, self.viewer = policy, viewer
        self.classes = policy.table()
        self.hidden = {f for f, c in self.classes.items() if RANK[c] > RANK[viewer]}
        # an objective and a constraint made by the same plugin with the same options hold the same number: the
        # stricter class decides for both (a shared-closed floor must not carry a closed objective's values)
        self.same_as: dict[str, str] = {}
        outcomes: list[ObjectiveSpec | OutcomeConstraintSpec] = [
            *policy.spec.objectives,
            *policy.spec.outcome_constraints,
        ]
        for o in outcomes:
            twin = next(
                (
                    h
                    for h in outcomes
                    if h.name in self.hidden and h.name != o.name and h.plugin == o.plugin and h.options == o.options
                ),
                None,
            )
            if twin is not None and o.name not in self.hidden:
                self.hidden.add(o.name)
                self.same_as[o.name] = twin.name
        # the model's evidence predicts the objectives: whoever may not see one may not see the evidence either
        if any(o in self.hidden for o in policy.objectives):
            self.hidden.add("evidence")
        self._names = [n for n in (*policy.parameters, *policy.objectives) if n in self.hidden]
        alternatives = "|".join(map(re.escape, sorted(self._names, key=len, reverse=True)))
        # a hidden name, and the value a message gives it ('nb_fraction=0.19', 'nb_fraction: 0.19')
        self._mention = (
            re.compile(
                r"(?<![A-Za-z0-9])(" + alternatives + r")(?![A-Za-z0-9])"
                r"(\s*(?:=|:|is|of)\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)?"
            )
            if self._names
            else None
        )
        self.left_out: dict[tuple[str, str], list[int]] = {}  # (what, why) -> trial numbers; for the manifest
        self.components: set[str] = set()  # hidden readings' names over the campaign (labloop.data.redact)
        self._targets = setpoint_targets(policy.spec)
        self._aliases: dict[str, str] = {}  # recipe/device field -> parameter, reading -> objective
        for p in policy.spec.parameters:
            if p.setpoint:
                dev, _, fld = p.setpoint.partition(".")
                self._aliases[fld] = p.name
                self._aliases[f"{dev}_{fld}"] = p.name
        for o in outcomes:
            if isinstance(o.options.get("field"), str) and o.options["field"]:  # the reading an objective is
                self._aliases[o.options["field"]] = o.name

    def sees(self, name: str) -> bool:
        return name not in self.hidden

    def why_hidden(self, name: str) -> str:
        if name in self.same_as:
            twin = self.same_as[name]
            return f"it is the same measurement as {twin} (plugin and options), whose class is {self.classes[twin]}"
        if name == "evidence" and RANK[self.classes["evidence"]] <= RANK[self.viewer]:
            objs = [o for o in self.policy.objectives if o in self.hidden]
            return f"it predicts {', '.join(objs)}, which this class may not see"
        return f"its class is {self.classes[name]}, more restrictive than {self.viewer}"

    # --------------------------------------------------------------------------------- what a name or value is
    def key_fields(self, key: str) -> set[str]:
        """The parameters and objectives a data key, recipe key or metadata key stands for (ophyd names a
        component ``device_field``: the key ``chamber_substrate_temperature`` is the parameter
        ``substrate_temperature``)."""
        out = {n for n in (*self.policy.parameters, *self.policy.objectives) if key == n or key.endswith("_" + n)}
        for k, p in self._aliases.items():
            if key == k or key.endswith("_" + k):
                out.add(p)
        return out

    def names_hidden(self, name: str) -> bool:
        """Whether a name (an ophyd object, a stream) stands for a field this viewer may not see."""
        return bool(self.key_fields(name) & self.hidden)

    def key_visible(self, key: str, kind: str | None) -> bool:
        related = self.key_fields(key)
        if kind is not None:
            related.add(kind)
        return all(self.sees(f) for f in related)

    def mentions_hidden(self, text: str) -> bool:
        return bool(self._mention and self._mention.search(text))

    def redact(self, text: str) -> str:
        return self._mention.sub("<closed>", text) if self._mention else text

    def redact_reason(self, text: str) -> str:
        """A failure reason without hidden names, values, nor the names of hidden readings (an ophyd Status quotes
        a device's ``read_attrs``)."""
        from .redact import redact_names

        return redact_names(self.redact(text), self.components)

    def hidden_values(self, trial: Trial) -> set[Any]:
        """The trial's values of hidden fields that could be recognized elsewhere: non-integral numbers, and the
        choices of hidden categorical parameters."""
        out: set[Any] = set()
        categorical = {
            p.name for p in self.policy.spec.parameters if isinstance(p, (CategoricalParameter, FixedParameter))
        }
        for name, v in [*(trial.params or {}).items(), *(trial.values or {}).items()]:
            if name not in self.hidden:
                continue
            if isinstance(v, float) and not v.is_integer():
                out.add(v)
            elif isinstance(v, str) and name in categorical and len(v) >= 3:
                out.add(v)
        return out

    def _leaks(self, value: Any, guard: set[Any]) -> bool:
        if isinstance(value, bool):
            return False
        if isinstance(value, float):
            return value in guard
        if isinstance(value, str):
            return value in guard or self.mentions_hidden(value)
        if isinstance(value, dict):
            return any(self._leaks(k, guard) or self._leaks(v, guard) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return any(self._leaks(v, guard) for v in value)
        return False

    # --------------------------------------------------------------------------------- rows
    def row(self, trial: Trial, steps: list[Step]) -> dict[str, Any]:
        stations: list[str] = []
        for s in steps:
            if s.device and s.device not in stations:
                stations.append(s.device)
        row: dict[str, Any] = {
            "trial": trial.number,
            "state": trial.state,
            "sample_id": trial.sample_id,
            "stations": stations,
        }
        if self.sees("source"):
            row["source"] = trial.source
        for p in self.policy.parameters:
            if self.sees(p):
                row[p] = (trial.params or {}).get(p)
        for o in self.policy.objectives:
            if self.sees(o):
                row[o] = (trial.values or {}).get(o)
        if self.sees("failure_reason"):
            withheld = self.failure_withheld(steps) if trial.failure_reason else None
            if withheld:
                self.leave_out("failure reason", withheld, trial.number)
            row["failure_reason"] = (
                None if trial.failure_reason is None or withheld else self.redact_reason(trial.failure_reason)
            )
        row["started"] = _iso(trial.started_at)
        row["finished"] = _iso(trial.finished_at)
        if self.sees("evidence"):
            guard = self.hidden_values(trial)
            for k, v in _flatten(trial.info or {}).items():
                if (
                    not any(self.key_fields(part) & self.hidden for part in k.split("."))
                    and not self._leaks(k, guard)
                    and not self._leaks(v, guard)
                ):
                    row[f"evidence.{k}"] = v
        return row

    # --------------------------------------------------------------------------------- documents
    def documents(
        self, trial: Trial, docs: list[tuple[str, dict[str, Any]]], components: set[str] | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """The trial's documents as this viewer may have them (:mod:`labloop.data.redact`)."""
        from .redact import redact_documents

        return redact_documents(self, trial, docs, components)

    # --------------------------------------------------------------------------------- derived and timing
    def derived(self, name: str) -> list[str] | None:
        """What ``sharing.derived`` says is derived from a field (a composition's entry stands for its
        components), or None when it says nothing."""
        given = self.policy.sharing.derived
        if name in given:
            return given[name]
        group = self.policy._group.get(name)
        return given[group] if group in given else None

    def timing(self, fields: set[str]) -> tuple[bool, bool, str]:
        """For a step whose recipe holds ``fields``: whether all its streams, and whether its failure reason, are
        withheld from this viewer, and why."""
        hidden = sorted(f for f in fields if f in self.hidden and f in self.policy.parameters)
        undeclared = [f for f in hidden if self.derived(f) is None]
        reason = [f for f in hidden if self.derived(f) is None or "failure_reason" in (self.derived(f) or [])]
        named = undeclared or reason
        if not named:
            return False, False, ""
        why = (
            f"the step's recipe holds {', '.join(f'{f} ({self.classes[f]})' for f in named)}, which this class "
            f"may not see, and the step's timing can reveal it"
        )
        why += (
            " (sharing.derived names what is derived from it)"
            if not undeclared
            else " (a campaign narrows this by listing what is derived from it under sharing.derived)"
        )
        return bool(undeclared), bool(reason), why

    def _declared(self) -> list[tuple[str, list[str]]]:
        return [
            (f, [n for n in self.derived(f) or [] if n != "failure_reason"])
            for f in (*self.policy.parameters, *self.policy.objectives)
            if f in self.hidden and self.derived(f)
        ]

    def derived_from(self, key: str, stream: str = "") -> set[str]:
        """The hidden fields ``sharing.derived`` says a data key (or its stream) is derived from."""
        return {
            f
            for f, names in self._declared()
            for n in names
            if key == n or key.endswith("_" + n) or (stream and stream == n)
        }

    def why_derived(self, stream: str, keys: set[str]) -> str:
        fields = sorted({f for k in keys for f in self.derived_from(k, stream)})
        return (
            f"sharing.derived says it is derived from {', '.join(f'{f} ({self.classes[f]})' for f in fields)}, "
            f"which this class may not see"
        )

    def why_key(self, key: str | list[str], kind: str | dict[str, str] | None) -> str:
        """Why data keys are left out: the hidden fields and data kinds they carry (``kind``: one for all keys, or
        key -> kind)."""
        fields: set[str] = set()
        for k in [key] if isinstance(key, str) else key:
            fields |= self.key_fields(k) & self.hidden
            kd = kind.get(k) if isinstance(kind, dict) else kind
            if kd is not None and kd in self.hidden:
                fields.add(kd)
        return "; ".join(f"it carries {f}: {self.why_hidden(f)}" for f in sorted(fields)) or "it carries a hidden field"

    def leave_out(self, what: str, why: str, trial: int | None = None) -> None:
        """Record one thing left out of this export, for the manifest."""
        trials = self.left_out.setdefault((what, why), [])
        if trial is not None and trial not in trials:
            trials.append(trial)

    def failure_withheld(self, steps: list[Step]) -> str | None:
        """Why the trial's failure reason is withheld (its failed step's recipe holds a hidden field whose timing
        the reason may give away), or None."""
        failed = [s for s in steps if s.state == "failed"]
        if not failed or failed[-1].kind != "synthesize":
            return None
        step = failed[-1]
        places = {step.device, step.label.partition(":")[2]}
        fields = {p for p, (dev, _) in self._targets.items() if dev in places}
        return self.timing(fields)[2] if self.timing(fields)[1] else None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar leaves of nested dicts as ``a.b`` keys; short lists of numbers as ``a.0``, ``a.1``; other lists
    left out."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            if 0 < len(v) <= 4 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                out.update({f"{key}.{i}": x for i, x in enumerate(v)})
        elif v is None or isinstance(v, (str, int, float, bool)):
            out[key] = v
    return out


# ------------------------------------------------------------------------------------------------- exports
@dataclass
class Export:
    """An export's bytes and what the manifest says about it."""

    data: bytes
    count: int
    unit: str  # what a row is: a trial, or a document
    view: View
    campaign: Campaign
    trials: int
    columns: list[str] = field(default_factory=list)


def _columns(rows: list[dict[str, Any]], view: View) -> list[str]:
    head = ["trial", "state", "sample_id", "stations"] + (["source"] if view.sees("source") else [])
    head += [p for p in view.policy.parameters if view.sees(p)] + [o for o in view.policy.objectives if view.sees(o)]
    head += (["failure_reason"] if view.sees("failure_reason") else []) + ["started", "finished"]
    for r in rows:
        head += [k for k in r if k not in head]
    return head


def build(store: Store, campaign_ref: str | None, viewer: str, fmt: str, today: date | None = None) -> Export:
    """Read a campaign from the store and produce the export a viewer of class ``viewer`` may have."""
    if fmt not in FORMATS:
        raise LabloopError(f"'{fmt}' is not an export format", f"use one of: {', '.join(FORMATS)}")
    campaign = store.campaign(campaign_ref)
    spec = campaign_spec(campaign)
    view = View(Policy(spec, today), viewer)
    trials = store.trials(campaign.id)
    from .redact import hidden_components, redact_documents

    stored = {t.id: store.documents(trial_id=t.id) for t in trials}
    view.components = hidden_components(view, list(stored.values()))  # a failure reason may quote them
    if fmt == "documents":
        lines = []
        for t in trials:
            for name, doc in redact_documents(view, t, stored[t.id]):
                lines.append(json.dumps([name, doc], separators=(",", ":")))
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        return Export(data, len(lines), "document", view, campaign, len(trials))
    steps: dict[int, list[Step]] = {}
    for s in store.steps(campaign_id=campaign.id):
        steps.setdefault(s.trial_id, []).append(s)
    rows = [view.row(t, steps.get(t.id, [])) for t in trials]
    cols = _columns(rows, view)
    rows = [{c: r.get(c) for c in cols} for r in rows]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else ";".join(v) if k == "stations" else v) for k, v in r.items()})
        data = buf.getvalue().encode("utf-8")
    elif fmt == "json":
        data = (json.dumps(rows, indent=2) + "\n").encode("utf-8")
    elif fmt == "jsonl":
        data = "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")
    else:
        data = _parquet(rows, cols)
    return Export(data, len(rows), "trial", view, campaign, len(trials), cols)


def manifest(exp: Export, fmt: str, output: Path, store_url: str, user: str | None = None) -> dict[str, Any]:
    """``user``: who exported (a daemon's verified user); default: this process's login name."""
    view, policy, c = exp.view, exp.view.policy, exp.campaign
    if user is None:
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no login name in some containers
            user = "unknown"
    return {
        "class": view.viewer,
        "format": fmt,
        "fields_included": [{"field": f, "class": policy.klass(f)} for f in policy.fields() if view.sees(f)],
        "fields_left_out": [
            {"field": f, "class": policy.klass(f), "why": view.why_hidden(f)}
            for f in policy.fields()
            if not view.sees(f)
        ],
        "always_included": list(ALWAYS),
        "left_out": [
            {"what": what, "why": why, "trials": sorted(trials)}
            for (what, why), trials in sorted(view.left_out.items())
        ],
        "asset_paths": "file names only: the asset files are not part of an export",
        "embargo_until": None if policy.sharing.embargo_until is None else policy.sharing.embargo_until.isoformat(),
        "embargo_lifted": policy.embargo_lifted,
        "provenance": {
            "labloop_version": __version__,
            "campaign": c.name,
            "campaign_uid": c.uid,
            "campaign_file_sha256": c.spec_hash,
            "store": display_url(store_url),
            "exported_at": datetime.now(UTC).isoformat(),
            "user": user,
        },
        "files": [
            {
                "path": output.name,
                "sha256": hashlib.sha256(exp.data).hexdigest(),
                "rows": exp.count,
                "rows_are": exp.unit,
                "trials": exp.trials,
                **({"columns": exp.columns} if exp.columns else {}),
            }
        ],
    }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def manifest_path(output: Path) -> Path:
    return output.with_name(output.name + ".manifest.json")


def write_atomically(files: list[tuple[Path, bytes]]) -> None:
    """Write each file to a temporary file in its own folder, then rename them into place: a reader never sees a
    half-written file, and a failure leaves nothing behind."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            if path.is_dir():
                raise LabloopError(f"cannot write {path}: it is a folder", "give a file path for --output")
            try:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
            except OSError as exc:
                raise LabloopError(
                    f"cannot write {path}: {exc.strerror or exc}", "choose a writable path in an existing folder"
                ) from None
            temps.append((tmp, path))
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the file gets the usual mode
            except OSError as exc:
                raise LabloopError(
                    f"cannot write {path}: {exc.strerror or exc}", "free some space or choose another path"
                ) from None
        for tmp, path in temps:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise LabloopError(f"cannot write {path}: {exc.strerror or exc}", "choose a writable path") from None
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def export_data(
    st: Store,
    fmt: str,
    campaign: str | int | None,
    sharing_class: str | None,
    output: Path | None,
    user: str | None = None,
) -> tuple[bytes, dict[str, Any] | None]:
    """The bytes ``labloop export`` writes, and the manifest to write beside ``output`` (None without output).
    Without a sharing class, csv and json are the owner's table as they have always been."""
    ref = None if campaign is None else str(campaign)
    if sharing_class is None and fmt in ("csv", "json"):
        data = export(st, fmt, ref).encode("utf-8")
        exp = build(st, ref, "closed", fmt) if output else None
        if exp is not None:
            exp.columns = columns(campaign_spec(exp.campaign))
    else:
        exp = build(st, ref, sharing_class or "closed", fmt)
        data = exp.data
    if output is None or exp is None:
        return data, None
    exp.data = data
    return data, manifest(exp, fmt, output, st.given_url, user)
