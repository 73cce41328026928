"""A bluesky callback that writes every document of a run to the store, unchanged.

It flushes every ``flush_every`` documents; the executor commits the rest together with the step's end (``take``),
so the usual step costs two transactions (its start, and its documents with its end). A crash loses at most the
tail of a run whose step is still recorded as running, which resume treats as interrupted anyway. Events of monitor streams (every
stream except 'primary' and 'baseline') are also flattened into process points.

Files that the run's ``stream_resource`` or ``resource`` documents reference (large data: spectra, patterns,
images) are checksummed when the run stops, when every device has closed them: the executor commits (path, sha256,
size) with the step's end (``take_assets``); a writer that flushes at stop records them itself.
"""

from __future__ import annotations

import math
from typing import Any

from labloop.errors import LabloopError

from .assets import ASSET_DOCUMENTS, asset_path, sha256_file
from .repository import Store


class DocumentWriter:
    def __init__(
        self, store: Store, campaign_id: int, trial_id: int | None, flush_every: int = 200, flush_at_stop: bool = True
    ):
        """``flush_at_stop=False``: the caller commits the run's last documents itself (``take``), with the step's
        end in one transaction."""
        self.flush_at_stop = flush_at_stop
        self.store = store
        self.campaign_id = campaign_id
        self.trial_id = trial_id
        self.flush_every = flush_every
        self.run_uid: str | None = None
        self.run_uids: list[str] = []
        self._docs: list[tuple[str, dict[str, Any]]] = []
        self._points: list[tuple[str, float, float]] = []
        self._streams: dict[str, str] = {}
        self._asset_paths: dict[str, None] = {}  # files referenced by the running run, in order, once each
        self._assets: list[tuple[str, str, int]] = []  # (path, sha256, size) of a stopped run, not stored yet
        self.asset_errors: list[str] = []  # referenced files that could not be read at stop

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            self.run_uid = doc["uid"]
            self.run_uids.append(doc["uid"])
        elif name == "descriptor":
            self._streams[doc["uid"]] = doc.get("name", "primary")
        elif name == "event" and self._streams.get(doc["descriptor"]) not in ("primary", "baseline", None):
            for key, value in doc["data"].items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._points.append((key, float(doc["timestamps"].get(key, doc["time"])), float(value)))
        elif name in ASSET_DOCUMENTS:
            try:
                path = asset_path(name, doc)
            except LabloopError as exc:
                self.asset_errors.append(exc.problem)
                path = None
            if path:
                self._asset_paths[path] = None
        elif name == "stop":
            self._checksum_assets()
        self._docs.append((name, doc))
        if len(self._docs) >= self.flush_every or (name == "stop" and self.flush_at_stop):
            self.flush()

    def _checksum_assets(self) -> None:
        for path in self._asset_paths:
            try:
                digest, size = sha256_file(path)
            except OSError as exc:  # recorded as missing: `labloop verify` will say so
                self.asset_errors.append(f"{path}: {exc}")
                digest, size = "", 0
            self._assets.append((path, digest, size))
        self._asset_paths = {}

    def take_assets(self) -> list[tuple[str, str, int]]:
        """(path, sha256, size) of the files the stopped run referenced, handed to the caller to commit."""
        assets, self._assets = self._assets, []
        return assets

    def take(self) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, float, float]]]:
        """The documents and points not flushed yet, handed to the caller to commit with the step's end."""
        docs, points = self._docs, self._points
        self._docs, self._points = [], []
        return docs, points

    def flush(self) -> None:
        if not self._docs or self.run_uid is None:
            return
        docs, points = self._docs, self._points
        self._docs, self._points = [], []
        self.store.add_documents(self.campaign_id, self.trial_id, self.run_uid, docs, points)
        if self._assets:
            self.store.add_assets(self.campaign_id, self.trial_id, self.run_uid, self.take_assets())
