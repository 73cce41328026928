"""Dock data of the best trials: the spectra, diffraction patterns and images their instruments stored as HDF5
assets (``stream_resource`` / ``stream_datum`` documents, read back with :func:`labloop.store.assets.read_arrays`).

Nothing here knows a particular instrument: a run's one-dimensional arrays are drawn as curves, the first declared
array (wavelength, 2-theta) as x and the others against it; two-dimensional arrays (images) as thumbnails. The
instruments of the top trials are overlaid, one figure per instrument, so their differences show. An asset file
that is missing, unreadable or altered since its run (another sha256 than the store recorded: what ``labloop verify``
reports) is not drawn and is named in the caption instead, so the report never shows data that cannot be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labloop.errors import LabloopError
from labloop.store.assets import ASSET_DOCUMENTS, asset_path, read_arrays

from .gather import ReportData
from .plotting import CYCLE, Drawn, Item, NotDrawn, new_figure, save, slug


@dataclass
class Run:
    """One instrument's measurement run of a trial and the arrays it stored as assets."""

    instrument: str
    keys: list[str] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)
    docs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def asset_runs(documents: list[tuple[str, dict[str, Any]]]) -> list[Run]:
    """The runs of a trial that reference asset files, in order (documents of one run are contiguous)."""
    runs: list[Run] = []
    current: Run | None = None
    for name, doc in documents:
        if name == "start":
            current = Run(str(doc.get("instrument") or doc.get("station") or doc.get("plan_name") or "run"))
            runs.append(current)
        if current is None:
            continue
        current.docs.append((name, doc))
        if name == "stream_resource" and doc.get("data_key"):
            current.keys.append(str(doc["data_key"]))
        elif name == "descriptor":
            for k, v in (doc.get("data_keys") or {}).items():
                if isinstance(v, dict) and v.get("units"):
                    current.units[k] = str(v["units"])
    return [r for r in runs if r.keys]


def run_files(run: Run) -> list[str]:
    """The asset files a run's documents point at, as the store records them."""
    return list(dict.fromkeys(p for p in (asset_path(n, d) for n, d in run.docs if n in ASSET_DOCUMENTS) if p))


def draw(data: ReportData, out: Path) -> list[Item]:
    # instrument -> [(trial number, {data_key: array}, problem)]
    found: dict[str, list[tuple[int, dict[str, np.ndarray], str | None]]] = {}
    units: dict[str, str] = {}
    for n in data.top:
        bad = data.details[n].bad_assets
        for run in asset_runs(data.details[n].documents):
            arrays: dict[str, np.ndarray] = {}
            problem = None
            altered = [f"{Path(p).name} is {bad[p]}" for p in run_files(run) if p in bad]
            if altered:  # never drawn silently: the caption says which file and why
                found.setdefault(run.instrument, []).append((n, arrays, "; ".join(altered)))
                continue
            try:
                for key in run.keys:
                    frames = read_arrays(run.docs, key)
                    if frames:
                        arrays[key] = np.asarray(frames[-1])
            except LabloopError as exc:
                problem = exc.problem
            found.setdefault(run.instrument, []).append((n, arrays, problem))
            units.update(run.units)
    items: list[Item] = []
    for instrument, entries in found.items():
        item = _instrument(instrument, entries, units, out)
        if item is not None:
            items.append(item)
    return items


def _short(instrument: str, key: str) -> str:
    return key[len(instrument) + 1 :] if key.startswith(instrument + "_") else key


def _instrument(instrument: str, entries: list, units: dict[str, str], out: Path) -> Item | None:
    title = f"Dock: {instrument} of the best trials"
    problems = [f"trial {n}: {p}" for n, _, p in entries if p]
    note = (" Not drawn: " + "; ".join(problems) + " (run `labloop verify`).") if problems else ""
    usable = [(n, a) for n, a, _ in entries if a]
    if not usable:
        return NotDrawn(title, "no array could be read." + note) if problems else None
    first = usable[0][1]
    curves = [k for k, a in first.items() if a.ndim == 1]
    images = [k for k, a in first.items() if a.ndim == 2]
    if len(curves) >= 2:
        x, ys = curves[0], curves[1:]
        fig, axes = new_figure(7, 3.2 * len(ys), len(ys), 1)
        for ax, y in zip(axes, ys):
            for i, (n, arrays) in enumerate(usable):
                if x in arrays and y in arrays and arrays[x].shape == arrays[y].shape:
                    ax.plot(arrays[x], arrays[y], lw=1, color=CYCLE[i % len(CYCLE)], label=f"trial {n}")
            ax.set_xlabel(_axis(instrument, x, units))
            ax.set_ylabel(_axis(instrument, y, units))
            ax.legend(fontsize=8, loc="best")
        file = save(fig, out, f"dock-{slug(instrument)}")
        what = ", ".join(_short(instrument, y) for y in ys)
        return Drawn(
            file,
            title,
            f"The {what} that {instrument} stored (HDF5 asset) for the best feasible trials "
            f"(the campaign's best first; none that breaks a constraint), against {_short(instrument, x)}; one colour per trial (legend).{note}",
        )
    if images:
        key = images[0]
        fig, axes = new_figure(2.6 * len(usable), 2.8, 1, len(usable))
        for ax, (n, arrays) in zip(axes, usable):
            if key in arrays:
                ax.imshow(arrays[key], cmap="gray", interpolation="nearest")
            ax.set_title(f"trial {n}", fontsize=9)
            ax.set_axis_off()
        file = save(fig, out, f"dock-{slug(instrument)}")
        return Drawn(
            file,
            title,
            f"The {_short(instrument, key)} that {instrument} stored (HDF5 asset) for each "
            f"of the best feasible trials (the campaign's best first), grey levels as recorded.{note}",
        )
    return None


def _axis(instrument: str, key: str, units: dict[str, str]) -> str:
    unit = units.get(key)
    return f"{_short(instrument, key)} ({unit})" if unit else _short(instrument, key)
