"""``labloop export --check FILE``: scan an export against its campaign for anything its class may not see.

The export's redaction (:mod:`labloop.data.sharing`, :mod:`labloop.data.redact`) decides what to leave out; this
module checks the result independently, the way a reviewer would before a file leaves the lab:

- **hidden names**: the name of a field the class may not see, or of a hidden reading (``uvvis_transmittance``);
- **hidden values**: any number in the file that equals a trial's hidden value to the precision the number is
  written with, when that is 4 or more significant figures (``358.8`` for a substrate temperature of 358.7735),
  and the choices of hidden categorical parameters;
- **dangling references** (documents): a descriptor, event, resource, datum or stop document that refers to a
  document not in the file, or a stop document counting a stream the file does not hold;
- **absolute paths**: a ``file://`` URI or an absolute file path (it tells where the owner's data live).

The manifest beside the file (``FILE.manifest.json``) gives the class, format and campaign; without it they are
given as arguments. The campaign's trials and documents are read from the store.
"""

from __future__ import annotations

import bisect
import io
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from labloop.errors import LabloopError
from labloop.spec import CategoricalParameter, FixedParameter
from labloop.store import Store

from .export import campaign_spec
from .redact import hidden_components
from .sharing import FORMATS, Policy, View, manifest_path

_NUMBER = re.compile(r"(?<![\w.-])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.-])")
_PATH = re.compile(r"file://[^\s\"',\]]+|(?<![\w.~/-])/(?:[\w.@+-]+/)+[\w.@+-]*|\b[A-Za-z]:\\\\?[\w.\\-]+")


@dataclass(frozen=True)
class Finding:
    kind: str  # hidden name | hidden value | dangling reference | absolute path
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.detail}"


def _sig_figs(token: str) -> tuple[int, Decimal] | None:
    try:
        d = Decimal(token)
        digits, exponent = d.as_tuple().digits, d.as_tuple().exponent
        sig = len(digits) - next((i for i, x in enumerate(digits) if x), len(digits))
        return sig, Decimal(1).scaleb(int(exponent)) / 2
    except (InvalidOperation, ValueError, TypeError):
        return None


def _text(data: bytes, fmt: str) -> str:
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise LabloopError(
                "checking a parquet export needs pyarrow, which is not installed", "pip install 'pyarrow>=14'"
            ) from None
        table = pq.read_table(io.BytesIO(data))
        return " ".join(table.column_names) + "\n" + json.dumps(table.to_pylist(), default=str)
    return data.decode("utf-8", errors="replace")


def _line_of(text: str, pos: int) -> str:
    return f"line {text.count(chr(10), 0, pos) + 1}"


def check_export(
    store: Store, path: Path, viewer: str | None = None, fmt: str | None = None, campaign: str | None = None
) -> list[Finding]:
    """Every finding in the export at ``path`` (empty: nothing leaks). Class, format and campaign come from the
    manifest beside it unless given."""
    if not path.is_file():
        raise LabloopError(f"{path} is not a file", "give the path of an export written with --output")
    man: dict[str, Any] = {}
    mp = manifest_path(path)
    if mp.is_file():
        try:
            man = json.loads(mp.read_text())
        except (OSError, ValueError) as exc:
            raise LabloopError(f"cannot read the manifest {mp}: {exc}", "export again with --output") from None
    viewer = viewer or man.get("class")
    fmt = fmt or man.get("format") or path.suffix.lstrip(".")
    campaign = campaign or (man.get("provenance") or {}).get("campaign_uid")
    if viewer is None:
        raise LabloopError(f"no manifest beside {path} says its sharing class", "give --class")
    if fmt not in FORMATS:
        raise LabloopError(f"cannot tell the format of {path}", f"give --format (one of: {', '.join(FORMATS)})")
    c = store.campaign(campaign)
    view = View(Policy(campaign_spec(c)), viewer)
    trials = store.trials(c.id)
    docs = {t.id: store.documents(trial_id=t.id) for t in trials}
    text = _text(path.read_bytes(), fmt)
    findings = _names(view, docs, text) + _values(view, trials, text)
    if fmt == "documents":
        findings += _paths(_without_datasets(text)) + dangling(text)
    else:
        findings += _paths(text)
    return findings


def _names(view: View, docs: dict[int, list[tuple[str, dict[str, Any]]]], text: str) -> list[Finding]:
    fields = sorted(n for n in (*view.policy.parameters, *view.policy.objectives) if n in view.hidden)
    readings = sorted(hidden_components(view, list(docs.values())) - set(fields))
    out = []
    for names, letters in ((fields, "A-Za-z0-9"), (readings, "A-Za-z0-9_")):
        for name in names:
            m = re.search(rf"(?<![{letters}]){re.escape(name)}(?![{letters}])", text)
            if m:
                what = (
                    f"the hidden field '{name}' (class {view.classes[name]})"
                    if name in view.classes
                    else f"the name of a hidden reading, '{name}'"
                )
                out.append(Finding("hidden name", _line_of(text, m.start()), what))
    return out


def _values(view: View, trials: list[Any], text: str) -> list[Finding]:
    hidden: list[tuple[float, str]] = []
    words: list[tuple[str, str]] = []
    categorical = {p.name for p in view.policy.spec.parameters if isinstance(p, (CategoricalParameter, FixedParameter))}
    for t in trials:
        for name, v in [*(t.params or {}).items(), *(t.values or {}).items()]:
            if name not in view.hidden:
                continue
            if isinstance(v, float) and not v.is_integer() and (_sig_figs(repr(v)) or (0,))[0] >= 4:
                hidden.append((v, f"trial {t.number}'s {name}"))
            elif isinstance(v, str) and name in categorical and len(v) >= 3:
                words.append((v, f"trial {t.number}'s {name}"))
    hidden.sort()
    keys = [v for v, _ in hidden]
    out, seen = [], set()
    for m in _NUMBER.finditer(text) if hidden else ():
        sig = _sig_figs(m.group())
        if sig is None or sig[0] < 4:
            continue
        x, tol = float(m.group()), float(sig[1]) * (1 + 1e-9)
        if not math.isfinite(x) or not math.isfinite(tol):
            continue
        i = bisect.bisect_left(keys, x - tol)
        while i < len(keys) and keys[i] <= x + tol:
            if (m.group(), hidden[i][1]) not in seen:
                seen.add((m.group(), hidden[i][1]))
                out.append(
                    Finding(
                        "hidden value", _line_of(text, m.start()), f"{m.group()} is {hidden[i][1]} ({hidden[i][0]!r})"
                    )
                )
            i += 1
    for w, what in words:
        word = re.search(rf"(?<![A-Za-z0-9]){re.escape(w)}(?![A-Za-z0-9])", text)
        if word:
            out.append(Finding("hidden value", _line_of(text, word.start()), f"'{w}' is {what}"))
    return out


def _without_datasets(text: str) -> str:
    """A documents export without the paths inside asset files (HDF5 ``/entry/data/x``), which say nothing about
    where the files are; one document a line, as written."""
    lines = []
    for line in text.splitlines():
        try:
            name, doc = json.loads(line)
            if name in ("stream_resource", "resource") and isinstance(doc.get("parameters"), dict):
                doc["parameters"] = {k: v for k, v in doc["parameters"].items() if k not in ("dataset", "path")}
            elif name in ("datum",) and isinstance(doc.get("datum_kwargs"), dict):
                doc["datum_kwargs"] = {k: v for k, v in doc["datum_kwargs"].items() if k not in ("dataset", "path")}
            line = json.dumps([name, doc])
        except (ValueError, TypeError, AttributeError):
            pass
        lines.append(line)
    return "\n".join(lines)


def _paths(text: str) -> list[Finding]:
    return [Finding("absolute path", _line_of(text, m.start()), m.group()[:120]) for m in _PATH.finditer(text)]


def dangling(text: str) -> list[Finding]:
    """References in a documents export to documents that are not in it."""
    docs: list[tuple[int, str, dict[str, Any]]] = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            name, doc = json.loads(line)
        except (ValueError, TypeError):
            return [Finding("dangling reference", f"line {n}", "not a [name, document] JSON list")]
        docs.append((n, name, doc))
    uids: dict[str, set[Any]] = {}
    streams: dict[Any, set[Any]] = {}
    for _, name, doc in docs:
        uids.setdefault(name, set()).add(doc.get("datum_id") if name == "datum" else doc.get("uid"))
        if name == "descriptor":
            streams.setdefault(doc.get("run_start"), set()).add(doc.get("name"))
    refs = {
        "descriptor": [("run_start", "start")],
        "event": [("descriptor", "descriptor")],
        "event_page": [("descriptor", "descriptor")],
        "stop": [("run_start", "start")],
        "stream_resource": [("run_start", "start")],
        "stream_datum": [("stream_resource", "stream_resource"), ("descriptor", "descriptor")],
        "resource": [("run_start", "start")],
        "datum": [("resource", "resource")],
    }
    out = []
    for n, name, doc in docs:
        for key, target in refs.get(name, []):
            if key in doc and doc[key] is not None and doc[key] not in uids.get(target, set()):
                out.append(
                    Finding(
                        "dangling reference",
                        f"line {n}",
                        f"a {name} refers to {target} {doc[key]}, which is not in the file",
                    )
                )
        if name == "stop" and isinstance(doc.get("num_events"), dict):
            for s in set(doc["num_events"]) - streams.get(doc.get("run_start"), set()):
                out.append(
                    Finding(
                        "dangling reference",
                        f"line {n}",
                        f"a stop document counts events of stream '{s}', which is not in the file",
                    )
                )
    return out
