"""Objective plugins: from the documents a trial's runs emitted to one objective value.

The protocol is small on purpose. A plugin is either

* a function ``f(trial: TrialData, **options) -> float``, or
* a class whose instances (built with the campaign file's ``options``) are such callables.

It is named in the campaign file by an entry point in the ``labloop.objectives`` group or as
``package.module:attribute``. It raises :class:`~labloop.errors.ObjectiveError` (or anything else) when the
documents do not contain what it needs; the trial then fails with that reason and the campaign goes on.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labloop import plugins
from labloop.errors import ObjectiveError, PluginError


@dataclass
class TrialData:
    """What an objective plugin sees: the trial's parameters and every document of its runs, in order."""

    params: dict[str, Any]
    documents: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def runs(self) -> list[dict[str, Any]]:
        """Start documents of the trial's runs (their metadata says which step each run was)."""
        return [d for n, d in self.documents if n == "start"]

    def readings(self, key: str, stream: str = "primary") -> list[Any]:
        """All values of data key ``key`` (or of any key ending in ``_key``, i.e. any device's ``key``) in
        events of ``stream``, in order."""
        streams = {d["uid"]: d.get("name") for n, d in self.documents if n == "descriptor"}
        out = []
        for n, d in self.documents:
            if n != "event" or streams.get(d["descriptor"]) != stream:
                continue
            for k, v in d["data"].items():
                if k == key or k.endswith("_" + key):
                    out.append(v)
        return out

    def arrays(self, key: str) -> list[Any]:
        """The frames of data key ``key`` (or any device's ``key``) that instruments stored as assets (HDF5 spectra,
        diffraction patterns, images: ``stream_resource``/``stream_datum`` documents), as numpy arrays in order;
        read with h5py from the files the documents name."""
        from labloop.store.assets import read_arrays

        return read_arrays(self.documents, key)

    def data_keys(self) -> list[str]:
        keys: set[str] = set()
        for n, d in self.documents:
            if n == "descriptor":
                keys.update(d.get("data_keys", {}))
        return sorted(keys)


_REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "mean": statistics.fmean,
    "median": statistics.median,
    "last": lambda v: v[-1],
    "min": min,
    "max": max,
}


class Reading:
    """The objective is a reading of the measured sample (``field``), reduced over repeats (``reduce``)."""

    def __init__(self, field: str, reduce: str = "mean", stream: str = "primary"):
        if reduce not in _REDUCERS:
            raise PluginError(f"unknown reduce '{reduce}'", f"use one of {sorted(_REDUCERS)}")
        self.field, self.reduce, self.stream = field, reduce, stream

    def __call__(self, trial: TrialData) -> float:
        values = trial.readings(self.field, self.stream)
        if not values:
            raise ObjectiveError(
                f"no reading '{self.field}' in the trial's '{self.stream}' events (keys: {trial.data_keys()})",
                "check the objective's 'field' option against the instrument's read() keys",
            )
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ObjectiveError(f"reading '{self.field}' is not numeric: {values!r}") from None
        value = _REDUCERS[self.reduce](numbers)
        if not math.isfinite(value):
            raise ObjectiveError(f"reading '{self.field}' is not finite ({value})", "check the instrument")
        return value


class SheetResistance(Reading):
    """Sheet resistance (ohm/sq) from a four-point probe; must be positive to be physical."""

    def __init__(self, field: str = "sheet_resistance", reduce: str = "mean"):
        super().__init__(field, reduce)

    def __call__(self, trial: TrialData) -> float:
        value = super().__call__(trial)
        if value <= 0:
            raise ObjectiveError(f"sheet resistance {value} ohm/sq is not physical", "check the probe contacts")
        return value


class VisibleTransmittance:
    """Mean transmittance (0..1) over a wavelength band (default the visible, 400-800 nm) of the spectrum a UV-vis
    instrument stored as an asset: arrays ``transmittance`` and ``wavelength`` (nm) of the trial's documents (the
    last spectrum when several were taken). Fails the trial cleanly when there is no spectrum, no point in the
    band, or values that are not finite.

    Options: ``lower``, ``upper`` (nm), ``field`` (array key of the spectrum), ``wavelengths`` (array key of its
    wavelengths), ``percent`` (true when the instrument reports percent)."""

    def __init__(
        self,
        lower: float = 400.0,
        upper: float = 800.0,
        field: str = "transmittance",
        wavelengths: str = "wavelength",
        percent: bool = False,
    ):
        if not float(lower) < float(upper):
            raise PluginError(
                f"visible_transmittance: lower ({lower}) must be below upper ({upper})",
                "give the band in nm, e.g. lower: 400, upper: 800",
            )
        self.lower, self.upper = float(lower), float(upper)
        self.field, self.wavelengths, self.percent = field, wavelengths, bool(percent)

    def __call__(self, trial: TrialData) -> float:
        import numpy as np

        spectra = trial.arrays(self.field)
        if not spectra:
            raise ObjectiveError(
                f"no '{self.field}' spectrum in the trial's documents (keys: {trial.data_keys()})",
                "add a transfer to the UV-vis and a measure step on it to the workflow (lab option dock: true)",
            )
        lams = trial.arrays(self.wavelengths)
        T = np.asarray(spectra[-1], dtype=float)
        lam = np.asarray(lams[-1], dtype=float) if lams else None
        if lam is None or lam.shape != T.shape:
            raise ObjectiveError(
                f"the '{self.field}' spectrum has no matching '{self.wavelengths}' array",
                "the instrument must store the wavelengths beside the spectrum",
            )
        band = (lam >= self.lower) & (lam <= self.upper)
        if not band.any():
            raise ObjectiveError(
                f"the spectrum ({lam.min():g}-{lam.max():g} nm) has no point in {self.lower:g}-{self.upper:g} nm",
                "check the band against the instrument",
            )
        value = float(T[band].mean()) / (100.0 if self.percent else 1.0)
        if not math.isfinite(value):
            raise ObjectiveError(
                f"mean transmittance over {self.lower:g}-{self.upper:g} nm is not finite", "check the instrument"
            )
        return value


def load_objective(ref: str, options: dict[str, Any] | None = None) -> Callable[[TrialData], float]:
    """Resolve a plugin reference to a callable ``TrialData -> float`` configured with ``options``."""
    obj = plugins.load(ref, "labloop.objectives")
    options = dict(options or {})
    if isinstance(obj, type):
        try:
            return obj(**options)
        except TypeError as exc:
            raise PluginError(
                f"objective plugin '{ref}' rejects its options {options}: {exc}",
                "check the plugin's documented options",
            ) from None
    if not callable(obj):
        raise PluginError(f"objective plugin '{ref}' is not callable", "name a function or a class")
    return functools.partial(obj, **options) if options else obj
