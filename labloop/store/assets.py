"""Large data as assets: files that a run's documents reference, their checksums, and reading them back.

The bluesky way: an instrument writes its spectra, patterns or images to files (HDF5) and its run carries
``stream_resource`` documents (which file, which dataset) and ``stream_datum`` documents (which frames belong to
which event); the older ``resource``/``datum`` pair is understood too. The event itself holds only the scalars.
The :class:`~labloop.store.writer.DocumentWriter` takes every referenced file's sha256 and size when the run ends and
the store keeps them in ``assets``; :func:`verify` (``labloop verify``) reports a file that is missing or altered.

Reading back (an objective plugin, a notebook)::

    from labloop.store.assets import read_arrays
    spectra = read_arrays(store.documents(trial_id=t.id), "uvvis_transmittance")  # one numpy array per event

Needs h5py only to read arrays; checksums need nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from labloop.errors import LabloopError

HDF5_MIMETYPE = "application/x-hdf5"
ASSET_DOCUMENTS = ("stream_resource", "resource")


def uri_path(uri: str) -> str:
    """The local path of a ``file://`` URI (``file://localhost/abs/x.h5`` or ``file:///abs/x.h5``)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        raise LabloopError(f"asset URI '{uri}' is not a local file", "keep assets on a file system this host mounts")
    return unquote(parsed.path)


def asset_path(name: str, doc: Mapping[str, Any]) -> str | None:
    """The file a ``stream_resource`` (``uri``) or ``resource`` (``root`` + ``resource_path``) document names."""
    if name == "stream_resource" and doc.get("uri"):
        return uri_path(str(doc["uri"]))
    if name == "resource" and doc.get("resource_path") is not None:
        return os.path.join(str(doc.get("root") or ""), str(doc["resource_path"]))
    return None


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes) of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


@dataclass(frozen=True)
class AssetProblem:
    """One asset that is not as recorded: ``missing`` or ``altered`` (another sha256 or size)."""

    path: str
    kind: str
    trial_id: int | None
    run_uid: str
    detail: str


def verify(store: Any, campaign_id: int | None = None) -> tuple[int, list[AssetProblem]]:
    """Check every recorded asset (of a campaign, or of the whole store) against its file: (how many were checked,
    the problems found)."""
    rows = store.assets(campaign_id)
    problems: list[AssetProblem] = []
    for a in rows:
        p = Path(a.path)
        if not p.is_file():
            problems.append(AssetProblem(a.path, "missing", a.trial_id, a.run_uid, "no such file"))
            continue
        try:
            digest, size = sha256_file(p)
        except OSError as exc:
            problems.append(AssetProblem(a.path, "missing", a.trial_id, a.run_uid, f"cannot read it: {exc}"))
            continue
        if digest != a.sha256 or size != a.size:
            problems.append(
                AssetProblem(
                    a.path,
                    "altered",
                    a.trial_id,
                    a.run_uid,
                    f"sha256 {digest[:12]}… and {size} bytes, recorded {a.sha256[:12]}… and {a.size} bytes",
                )
            )
    return len(rows), problems


def read_arrays(documents: Iterable[tuple[str, Mapping[str, Any]]], data_key: str) -> list[Any]:
    """Every frame of ``data_key`` stored as an asset, in event order, as numpy arrays (read with h5py).

    ``data_key`` is the full key (``uvvis_transmittance``) or its suffix after the device name
    (``transmittance``), like :meth:`~labloop.run.objectives.TrialData.readings`."""
    import h5py  # imported here: only readers of arrays need it

    resources: dict[str, Mapping[str, Any]] = {}
    out: list[Any] = []
    for name, doc in documents:
        if name == "stream_resource":
            key = str(doc.get("data_key", ""))
            if key == data_key or key.endswith("_" + data_key):
                resources[str(doc["uid"])] = doc
        elif name == "stream_datum" and doc.get("stream_resource") in resources:
            res = resources[str(doc["stream_resource"])]
            if res.get("mimetype") != HDF5_MIMETYPE:
                raise LabloopError(
                    f"asset of '{res.get('data_key')}' is {res.get('mimetype')}, not HDF5",
                    "read it with a reader for that format",
                )
            path = uri_path(str(res["uri"]))
            dataset = str(res.get("parameters", {}).get("dataset", "/data"))
            start, stop = int(doc["indices"]["start"]), int(doc["indices"]["stop"])
            try:
                with h5py.File(path, "r") as f:
                    frames = f[dataset][start:stop]
            except (OSError, KeyError) as exc:
                raise LabloopError(
                    f"cannot read asset {path} ({dataset}): {exc}",
                    "run `labloop verify` to see which asset files are missing or altered",
                ) from None
            out.extend(frames)
    return out
