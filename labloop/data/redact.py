"""A trial's bluesky documents as a viewer of one sharing class may have them (``labloop export --class ...
--format documents``).

Every document that describes or points at something hidden is left out or redacted: data keys of hidden fields and
kinds in descriptors and events, streams left with no data, ``stream_resource`` / ``stream_datum`` (and the older
``resource`` / ``datum``) of hidden data keys or of descriptors that were left out, the names of hidden readings in
stop documents' reasons (an ophyd ``Status`` repr quotes a device's ``read_attrs``), and absolute asset paths (a
file's name is kept: the files themselves are not part of an export). Nothing kept refers to a document left out,
so event-model's validation and a ``RunRouter`` replay pass on the result.

Timing can reveal a closed recipe field: a chamber-pressure plateau lasts the recipe's ``duration``, a failure says
"at 112.9 min into the recipe". Which streams and reasons are derived from a hidden field is the campaign's
``sharing.derived``; a hidden recipe field it does not list hides every stream and the stop reason of the runs
whose recipe holds it. Each thing left out is recorded on the view (:meth:`View.leave_out`) for the manifest.
"""

from __future__ import annotations

import json
import re
from typing import Any

from labloop.store.schema import Trial

#: the viewer (:class:`labloop.data.sharing.View`, which imports this module: named, not imported, here)
View = Any

_PATH_KEYS = ("uri", "root", "resource_path")


def file_name(path: str) -> str:
    """The last part of a path or file URI: ``file://localhost/data/run/x.h5`` -> ``x.h5``."""
    return re.split(r"[/\\]", path.rstrip("/\\"))[-1] if path else path


def hidden_components(view: View, all_docs: list[list[tuple[str, dict[str, Any]]]]) -> set[str]:
    """The names of every reading a viewer may not see, over the whole campaign: data keys and the ophyd component
    names they come from (``uvvis_transmittance`` -> ``transmittance``), so that a failed run, which may have no
    descriptor of its own, cannot quote them in its stop reason."""
    out: set[str] = set()
    visible_fields = {f for f in view.policy.fields() if view.sees(f)}
    for docs in all_docs:
        monitored = _monitored(docs)
        for name, doc in docs:
            if name != "descriptor":
                continue
            for key, dk in doc.get("data_keys", {}).items():
                if view.key_visible(key, "process_streams" if key in monitored else "dock"):
                    continue
                out.add(key)
                obj = dk.get("object_name") if isinstance(dk, dict) else None
                for o in [obj, *doc.get("object_keys", {})]:
                    # a component named like a field the viewer sees (the probe's 'sheet_resistance') names that
                    part = key[len(o) + 1 :] if o and key.startswith(o + "_") else ""
                    if part and part not in visible_fields:
                        out.add(part)
    return out


def _monitored(docs: list[tuple[str, dict[str, Any]]]) -> set[str]:
    return {
        k
        for name, doc in docs
        if name == "descriptor" and doc.get("name", "primary") != "primary"
        for k in doc.get("data_keys", {})
    }


def redact_names(text: str, names: set[str]) -> str:
    """``text`` with each of ``names`` (whole words, ``_`` counting as a letter) replaced by ``<closed>``."""
    if not names:
        return text
    pattern = "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
    return re.sub(r"(?<![A-Za-z0-9_])(" + pattern + r")(?![A-Za-z0-9_])", "<closed>", text)


class DocumentFilter:
    """Redacts one trial's documents for one view (the view's ``components``: :func:`hidden_components` of the
    campaign)."""

    def __init__(self, view: View, trial: Trial, components: set[str] | None = None):
        self.view, self.trial = view, trial
        self.number = getattr(trial, "number", None)
        self.guard = view.hidden_values(trial)
        if components is not None:
            view.components = set(components)

    def __call__(self, docs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
        view = self.view
        monitored = _monitored(docs)
        # runs whose recipe holds a hidden field: which of their streams and reasons that field's timing decides
        timing: dict[str | None, tuple[bool, bool, str]] = {}  # run uid -> (all streams, reason, why)
        for name, doc in docs:
            if name == "start" and isinstance(doc.get("recipe"), dict):
                fields = {f for k in doc["recipe"] for f in view.key_fields(k)}
                timing[doc.get("uid")] = view.timing(fields)

        def visible(key: str) -> bool:
            return view.key_visible(key, "process_streams" if key in monitored else "dock")

        step_of = {d.get("uid"): str(d.get("step") or d.get("plan_name") or "run") for n, d in docs if n == "start"}
        dropped: set[str | None] = set()  # descriptor uids (keyed as doc.get finds them)
        dropped_streams: dict[str | None, set[str]] = {}  # run_start -> stream names dropped
        kept_keys: dict[str | None, set[str]] = {}  # descriptor uid -> data keys kept
        # first the descriptors, so that a resource emitted before its descriptor is judged as well
        for name, doc in docs:
            if name != "descriptor":
                continue
            run, stream = doc.get("run_start"), str(doc.get("name", ""))
            step = step_of.get(run, "run")
            all_streams, _, why_timing = timing.get(run, (False, False, ""))
            keys = {k for k in doc.get("data_keys", {}) if visible(k)}
            derived = {k for k in keys if view.derived_from(k, stream)}
            why = None
            if all_streams:
                why = why_timing
            elif view.names_hidden(stream):
                why = view.why_key(stream, None)
            elif not keys:
                every = list(doc.get("data_keys", {}))
                why = view.why_key(every, {k: self._kind(k, monitored) for k in every}) if every else "it holds no data"
            elif keys == derived:
                why = view.why_derived(stream, keys)
            if why is not None:
                dropped.add(doc.get("uid"))
                dropped_streams.setdefault(run, set()).add(stream)
                view.leave_out(f"stream {stream} of {step}", why, self.number)
                continue
            for k in sorted(set(doc.get("data_keys", {})) - keys):
                view.leave_out(f"data key {k} of {step}", view.why_key(k, self._kind(k, monitored)), self.number)
            for k in sorted(derived):
                view.leave_out(f"data key {k} of {step}", view.why_derived(k, {k}), self.number)
            kept_keys[doc.get("uid")] = keys - derived
        kept_data = set().union(*kept_keys.values()) if kept_keys else set()
        kept_resources = {d.get("uid") for n, d in docs if n == "stream_resource" and d.get("data_key") in kept_data}
        out: list[tuple[str, dict[str, Any]]] = []
        for name, doc in docs:
            doc = json.loads(json.dumps(doc))  # a private copy
            if name == "start":
                doc = self._start(doc)
            elif name == "descriptor":
                if doc.get("uid") in dropped:
                    continue
                self._descriptor(doc, kept_keys[doc["uid"]], visible)
            elif name in ("event", "event_page"):
                if doc.get("descriptor") in dropped:
                    continue
                self._event(doc, kept_keys.get(doc.get("descriptor"), set()))
            elif name == "stream_resource":
                if doc.get("uid") not in kept_resources:
                    continue
                self._paths(doc)
            elif name == "stream_datum":
                if doc.get("stream_resource") not in kept_resources or doc.get("descriptor") not in kept_keys:
                    continue
            elif name == "resource":
                # the older Resource names no data key: kept only while every stream of its run is kept
                if doc.get("run_start") in dropped_streams or any(
                    not view.sees(f) for f in ("dock", "process_streams")
                ):
                    continue
                kept_resources.add(doc.get("uid"))  # before its datum documents, as event-model orders them
                self._paths(doc)
            elif name == "datum":
                if doc.get("resource") not in kept_resources:
                    continue
            elif name == "stop":
                run = doc.get("run_start")
                gone = dropped_streams.get(run, set())
                if isinstance(doc.get("num_events"), dict):
                    doc["num_events"] = {k: v for k, v in doc["num_events"].items() if k not in gone}
                if doc.get("reason"):
                    _, reason_hidden, why_timing = timing.get(run, (False, False, ""))
                    if not view.sees("failure_reason"):
                        doc["reason"] = ""
                    elif reason_hidden:
                        doc["reason"] = ""
                        view.leave_out(f"stop reason of {step_of.get(run, 'run')}", why_timing, self.number)
                    else:
                        doc["reason"] = view.redact_reason(doc["reason"])
            out.append((name, doc))
        return out

    @staticmethod
    def _kind(key: str, monitored: set[str]) -> str:
        return "process_streams" if key in monitored else "dock"

    def _descriptor(self, doc: dict[str, Any], keys: set[str], visible) -> None:
        view, guard = self.view, self.guard
        doc["data_keys"] = {k: v for k, v in doc["data_keys"].items() if k in keys}
        doc["object_keys"] = {
            o: [k for k in ks if k in keys]
            for o, ks in doc.get("object_keys", {}).items()
            if any(k in keys for k in ks) and not view.names_hidden(o)
        }
        for part in ("hints", "configuration", "object_classes"):  # keyed by object names
            if isinstance(doc.get(part), dict):
                doc[part] = {o: v for o, v in doc[part].items() if not view.names_hidden(o)}
        for h in list(doc.get("hints", {}).values()):
            if isinstance(h, dict) and "fields" in h:
                h["fields"] = [k for k in h["fields"] if k in keys]
        for conf in list(doc.get("configuration", {}).values()):
            ck = {
                k
                for k in conf.get("data_keys", {})
                if visible(k) and not view._leaks(conf.get("data", {}).get(k), guard)
            }
            for part in ("data", "timestamps", "data_keys"):
                if isinstance(conf.get(part), dict):
                    conf[part] = {k: v for k, v in conf[part].items() if k in ck}

    def _event(self, doc: dict[str, Any], keys: set[str]) -> None:
        for part in ("data", "timestamps", "filled"):
            if isinstance(doc.get(part), dict):
                doc[part] = {k: v for k, v in doc[part].items() if k in keys}
        data = doc.get("data", {})
        for k in [k for k, v in data.items() if self.view._leaks(v, self.guard)]:
            for part in ("data", "timestamps", "filled"):
                doc.get(part, {}).pop(k, None)

    @staticmethod
    def _paths(doc: dict[str, Any]) -> None:
        for k in _PATH_KEYS:
            if isinstance(doc.get(k), str):
                doc[k] = "" if k == "root" else file_name(doc[k])

    _RESERVED_MD = frozenset(
        {
            "uid",
            "time",
            "versions",
            "scan_id",
            "plan_type",
            "plan_name",
            "campaign",
            "campaign_uid",
            "trial",
            "trial_id",
            "sample_id",
            "step",
            "step_index",
            "attempt",
            "station",
            "instrument",
            "source",
            "destination",
        }
    )

    def _start(self, doc: dict[str, Any]) -> dict[str, Any]:
        view, guard = self.view, self.guard
        out: dict[str, Any] = {}
        every_param_visible = all(view.sees(p) for p in view.policy.parameters)
        for k, v in doc.items():
            if k == "recipe" and isinstance(v, dict):
                # a recipe key that names no parameter is kept only when every parameter may be seen
                out[k] = {
                    rk: rv
                    for rk, rv in v.items()
                    if (
                        (view.key_fields(rk) and view.key_visible(rk, None))
                        or (not view.key_fields(rk) and every_param_visible)
                    )
                    and not view._leaks(rv, guard)
                }
            elif k in self._RESERVED_MD:
                out[k] = v
            elif view.key_visible(k, None) and not view._leaks(k, guard) and not view._leaks(v, guard):
                out[k] = v
        return out


def redact_documents(
    view: View, trial: Trial, docs: list[tuple[str, dict[str, Any]]], components: set[str] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    return DocumentFilter(view, trial, components)(docs)
