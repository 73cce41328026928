"""Sharing classes: what a viewer of class ``open``, ``shared-closed`` or ``closed`` may see of a campaign, and the
exports that hold exactly that (``labloop export --class``).

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
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from labloop import __version__
from labloop.errors import LabloopError
from labloop.spec import (SHARING_CLASSES, SHARING_KINDS, CampaignSpec, CategoricalParameter, CompositionParameter,
                          FixedParameter)
from labloop.store import Store
from labloop.store.connection import display_url
from labloop.store.schema import Campaign, Step, Trial

from .export import _iso, campaign_spec, columns, export

RANK = {c: i for i, c in enumerate(SHARING_CLASSES)}
ALWAYS = ("trial", "state", "sample_id", "stations", "started", "finished")
FORMATS = ("csv", "json", "jsonl", "parquet", "documents")


class Policy:
    """The class of every field of one campaign, on one day (an embargo that has ended makes closed shared-closed)."""

    def __init__(self, spec: CampaignSpec, today: date | None = None):
        self.spec = spec
        self.sharing = spec.sharing
        self.today = today or datetime.now(timezone.utc).date()
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
        # the model's evidence predicts the objectives: whoever may not see one may not see the evidence either
        if any(o in self.hidden for o in policy.objectives):
            self.hidden.add("evidence")
        self._names = [n for n in (*policy.parameters, *policy.objectives) if n in self.hidden]
        alternatives = "|".join(map(re.escape, sorted(self._names, key=len, reverse=True)))
        # a hidden name, and the value a message gives it ('nb_fraction=0.19', 'nb_fraction: 0.19')
        self._mention = (re.compile(r"(?<![A-Za-z0-9])(" + alternatives + r")(?![A-Za-z0-9])"
                                    r"(\s*(?:=|:|is|of)\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)?")
                         if self._names else None)
        self._aliases: dict[str, str] = {}  # recipe/device field -> parameter, reading -> objective
        for p in policy.spec.parameters:
            if p.setpoint:
                dev, _, fld = p.setpoint.partition(".")
                self._aliases[fld] = p.name
                self._aliases[f"{dev}_{fld}"] = p.name
        for o in [*policy.spec.objectives, *policy.spec.outcome_constraints]:
            if isinstance(o.options.get("field"), str) and o.options["field"]:  # the reading an objective is
                self._aliases[o.options["field"]] = o.name

    def sees(self, name: str) -> bool:
        return name not in self.hidden

    def why_hidden(self, name: str) -> str:
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

    def hidden_values(self, trial: Trial) -> set[Any]:
        """The trial's values of hidden fields that could be recognized elsewhere: non-integral numbers, and the
        choices of hidden categorical parameters."""
        out: set[Any] = set()
        categorical = {p.name for p in self.policy.spec.parameters
                       if isinstance(p, (CategoricalParameter, FixedParameter))}
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
        row: dict[str, Any] = {"trial": trial.number, "state": trial.state, "sample_id": trial.sample_id,
                               "stations": stations}
        if self.sees("source"):
            row["source"] = trial.source
        for p in self.policy.parameters:
            if self.sees(p):
                row[p] = (trial.params or {}).get(p)
        for o in self.policy.objectives:
            if self.sees(o):
                row[o] = (trial.values or {}).get(o)
        if self.sees("failure_reason"):
            row["failure_reason"] = None if trial.failure_reason is None else self.redact(trial.failure_reason)
        row["started"] = _iso(trial.started_at)
        row["finished"] = _iso(trial.finished_at)
        if self.sees("evidence"):
            guard = self.hidden_values(trial)
            for k, v in _flatten(trial.info or {}).items():
                if not any(self.key_fields(part) & self.hidden for part in k.split(".")) \
                        and not self._leaks(k, guard) and not self._leaks(v, guard):
                    row[f"evidence.{k}"] = v
        return row

    # --------------------------------------------------------------------------------- documents
    def documents(self, trial: Trial, docs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
        """The trial's documents with every hidden field removed from data and metadata; a stream left with no
        data is dropped with its events (and its count in the stop document)."""
        guard = self.hidden_values(trial)
        monitored: set[str] = set()
        for name, doc in docs:
            if name == "descriptor" and doc.get("name", "primary") != "primary":
                monitored.update(doc.get("data_keys", {}))
        dropped: set[str] = set()  # descriptor uids
        dropped_streams: dict[str, set[str]] = {}  # run_start -> stream names dropped
        kept_keys: dict[str, set[str]] = {}  # descriptor uid -> data keys kept
        out: list[tuple[str, dict[str, Any]]] = []

        def visible(key: str) -> bool:
            return self.key_visible(key, "process_streams" if key in monitored else "dock")

        for name, doc in docs:
            doc = json.loads(json.dumps(doc))  # a private copy
            if name == "start":
                doc = self._start(doc, guard)
            elif name == "descriptor":
                keys = {k for k in doc.get("data_keys", {}) if visible(k)}
                if not keys or self.names_hidden(str(doc.get("name", ""))):
                    dropped.add(doc.get("uid"))
                    dropped_streams.setdefault(doc.get("run_start"), set()).add(doc.get("name"))
                    continue
                kept_keys[doc["uid"]] = keys
                doc["data_keys"] = {k: v for k, v in doc["data_keys"].items() if k in keys}
                doc["object_keys"] = {o: [k for k in ks if k in keys] for o, ks in doc.get("object_keys", {}).items()
                                      if any(k in keys for k in ks) and not self.names_hidden(o)}
                for part in ("hints", "configuration", "object_classes"):  # keyed by object names
                    if isinstance(doc.get(part), dict):
                        doc[part] = {o: v for o, v in doc[part].items() if not self.names_hidden(o)}
                for o, h in list(doc.get("hints", {}).items()):
                    if isinstance(h, dict) and "fields" in h:
                        h["fields"] = [k for k in h["fields"] if k in keys]
                for o, conf in list(doc.get("configuration", {}).items()):
                    ck = {k for k in conf.get("data_keys", {}) if visible(k)
                          and not self._leaks(conf.get("data", {}).get(k), guard)}
                    for part in ("data", "timestamps", "data_keys"):
                        if isinstance(conf.get(part), dict):
                            conf[part] = {k: v for k, v in conf[part].items() if k in ck}
            elif name in ("event", "event_page"):
                if doc.get("descriptor") in dropped:
                    continue
                keys = kept_keys.get(doc.get("descriptor"), set())
                for part in ("data", "timestamps", "filled"):
                    if isinstance(doc.get(part), dict):
                        doc[part] = {k: v for k, v in doc[part].items() if k in keys}
                data = doc.get("data", {})
                for k in [k for k, v in data.items() if self._leaks(v, guard)]:
                    for part in ("data", "timestamps", "filled"):
                        doc.get(part, {}).pop(k, None)
            elif name == "stop":
                gone = dropped_streams.get(doc.get("run_start"), set())
                if isinstance(doc.get("num_events"), dict):
                    doc["num_events"] = {k: v for k, v in doc["num_events"].items() if k not in gone}
                if doc.get("reason"):
                    doc["reason"] = self.redact(doc["reason"]) if self.sees("failure_reason") else ""
            out.append((name, doc))
        return out

    _RESERVED_MD = frozenset({"uid", "time", "versions", "scan_id", "plan_type", "plan_name", "campaign",
                              "campaign_uid", "trial", "trial_id", "sample_id", "step", "step_index", "attempt",
                              "station", "instrument", "source", "destination"})

    def _start(self, doc: dict[str, Any], guard: set[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        every_param_visible = all(self.sees(p) for p in self.policy.parameters)
        for k, v in doc.items():
            if k == "recipe" and isinstance(v, dict):
                # a recipe key that names no parameter is kept only when every parameter may be seen
                out[k] = {rk: rv for rk, rv in v.items()
                          if (self.key_fields(rk) and self.key_visible(rk, None) or
                              not self.key_fields(rk) and every_param_visible) and not self._leaks(rv, guard)}
            elif k in self._RESERVED_MD:
                out[k] = v
            elif self.key_visible(k, None) and not self._leaks(k, guard) and not self._leaks(v, guard):
                out[k] = v
        return out


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
    if fmt == "documents":
        lines = []
        for t in trials:
            for name, doc in view.documents(t, store.documents(trial_id=t.id)):
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


def _parquet(rows: list[dict[str, Any]], cols: list[str]) -> bytes:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise LabloopError("the parquet format needs pyarrow, which is not installed",
                           "pip install 'pyarrow>=14', or export as csv or jsonl") from None
    arrays = []
    for c in cols:
        values = [r[c] for r in rows]
        if c == "stations":
            arrays.append(pa.array(values, pa.list_(pa.string())))
            continue
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types (a number here, a word there): text
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    table = pa.Table.from_arrays(arrays, names=cols)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


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
        "fields_left_out": [{"field": f, "class": policy.klass(f), "why": view.why_hidden(f)}
                            for f in policy.fields() if not view.sees(f)],
        "always_included": list(ALWAYS),
        "embargo_until": None if policy.sharing.embargo_until is None else policy.sharing.embargo_until.isoformat(),
        "embargo_lifted": policy.embargo_lifted,
        "provenance": {
            "labloop_version": __version__,
            "campaign": c.name,
            "campaign_uid": c.uid,
            "campaign_file_sha256": c.spec_hash,
            "store": display_url(store_url),
            "exported_at": datetime.now(timezone.utc).isoformat(),
            "user": user,
        },
        "files": [{"path": output.name, "sha256": hashlib.sha256(exp.data).hexdigest(), "rows": exp.count,
                   "rows_are": exp.unit, "trials": exp.trials, **({"columns": exp.columns} if exp.columns else {})}],
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
                raise LabloopError(f"cannot write {path}: {exc.strerror or exc}",
                                   "choose a writable path in an existing folder") from None
            temps.append((tmp, path))
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the file gets the usual mode
            except OSError as exc:
                raise LabloopError(f"cannot write {path}: {exc.strerror or exc}",
                                   "free some space or choose another path") from None
        for tmp, path in temps:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise LabloopError(f"cannot write {path}: {exc.strerror or exc}", "choose a writable path") from None
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def export_data(st: Store, fmt: str, campaign: str | int | None, sharing_class: str | None,
                output: Path | None, user: str | None = None) -> tuple[bytes, dict[str, Any] | None]:
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
