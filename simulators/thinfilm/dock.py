"""The materials dock of the simulated thin-film lab: profilometer, UV-vis spectrometer, X-ray diffractometer and
optical microscope, measuring the sample they hold as the physics of :mod:`.characterization` says.

They are instruments like the four-point probe (a ``sample`` signal the robot keeps, ``trigger`` + ``read``, seeded
noise and faults, one job at a time, ``stop()``). The profilometer reads a scalar; the other three are
:class:`~labloop_devices.assets.ArrayInstrument`: their spectra, patterns and images go to one HDF5 file per
measurement in the lab's data folder, referenced by ``stream_resource``/``stream_datum`` documents, while ``read()``
holds the scalars an analysis would pull out of them (visible transmittance, absorption edge, main XRD peak, crack
fraction and texture contrast).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from labloop_devices.assets import ArrayInstrument, ArraySpec
from labloop_devices.base import Instrument
from ophyd import Component as Cpt

from labloop.errors import DeviceError

from ..clock import SimClock
from ..registry import SampleRegistry
from . import characterization as ch
from .devices import CalibrationJob, Quantity, _Calibrated, _SimInstrument


class _DockInstrument(_SimInstrument):
    """Shared measurement loop: check where the sample is, maybe hang or fault, wait through ``STEPS``, then
    :meth:`acquire` on the film the registry holds for it."""

    STEPS: tuple[tuple[str, float], ...] = ()
    FAULTS: tuple[str, ...] = ("instrument fault",)
    RESULTS: tuple[str, ...] = ()  # scalar signals reset to NaN before each measurement
    arrays_free = True  # writes no files (takes no data_dir)

    def _dock_setup(
        self, clock: SimClock | None, registry: SampleRegistry | None, fault_rate: float, seed: Any, noise: float
    ) -> None:
        self._sim_setup(clock, registry, fault_rate, seed)
        if not 0.0 <= float(noise) < 1.0:
            raise DeviceError(f"{self.name}: noise must lie in [0, 1), got {noise}", "give a relative sd, e.g. 0.03")
        self.noise = float(noise)

    def _measure(self) -> None:
        for name in self.RESULTS:
            getattr(self, name).put(math.nan)  # never leave the previous sample's numbers in read()
        sample = str(self.sample.get())  # type: ignore[attr-defined]  # a mixin: the instrument defines sample
        rec = self.registry.get(sample)
        if rec is not None and rec.location != self.name:
            raise DeviceError(
                f"{self.name}: the sample signal says '{sample}' but that sample is at '{rec.location}'",
                f"transfer the sample onto the {self.name} with the robot",
            )
        self._maybe_hang("measuring")
        fault_step = int(self._rng.integers(len(self.STEPS))) if self._draw_fault() else None
        for i, (doing, seconds) in enumerate(self.STEPS):
            if i == fault_step:
                self._wait(seconds * float(self._rng.random()), doing)
                raise DeviceError(
                    f"{self.name}: {self.FAULTS[i % len(self.FAULTS)]} on sample '{sample}'",
                    "re-seat the sample and measure again; call service if it repeats",
                )
            self._wait(seconds, doing)
        props = rec.properties if rec is not None else {}
        summary = self.acquire(props.get("film") or {}, props.get("recipe"))
        if rec is not None:
            self.registry.update(sample, f"{self.name}: {summary}")

    def acquire(self, film: dict[str, Any], recipe: dict[str, Any] | None) -> str:
        """Measure (the waiting is done): put the results into the read signals (and write the arrays); return a
        line for the sample's history."""
        raise NotImplementedError


class SimProfilometer(_DockInstrument, Instrument):
    """Stylus profilometer: the step height at a masked edge, i.e. the film thickness (nm), with noise."""

    thickness = Cpt(Quantity, value=math.nan, units="nm", kind="hinted", doc="Film thickness (step height).")
    STEPS = (("levelling the stage", 30.0), ("scanning across the step", 120.0))
    FAULTS = ("stylus lost contact (vibration)", "stage levelling failed")
    RESULTS = ("thickness",)

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str,
        clock: SimClock | None = None,
        registry: SampleRegistry | None = None,
        noise: float = 0.03,
        fault_rate: float = 0.0,
        seed: Any = None,
        **kwargs: Any,
    ):
        super().__init__(prefix, name=name, **kwargs)
        self._dock_setup(clock, registry, fault_rate, seed, noise)

    def acquire(self, film: dict[str, Any], recipe: dict[str, Any] | None) -> str:
        t = ch.profilometer_thickness(film, self._rng, self.noise)
        self.thickness.put(t)
        return f"thickness {t:.1f} nm"


class _ArrayDock(_DockInstrument, ArrayInstrument):
    arrays_free = False

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str,
        clock: SimClock | None = None,
        registry: SampleRegistry | None = None,
        noise: float = 0.03,
        fault_rate: float = 0.0,
        seed: Any = None,
        data_dir: Any = None,
        **kwargs: Any,
    ):
        super().__init__(prefix, name=name, data_dir=data_dir, **kwargs)
        self._dock_setup(clock, registry, fault_rate, seed, noise)


#: The spectrometer's 100 % line: the empty beam (air) transmits exactly 1 at every wavelength.
BLANK_REFERENCE = {"name": "100 % line (empty beam)", "value": 1.0, "units": "fraction"}
#: Band whose mean the spectrometer fits its gain on when calibrating (its lamp and detector are strongest there).
CALIBRATION_BAND = (400.0, 800.0)
PHOTOMETRIC_NOISE = 0.002  # absolute, per point (0.2 % T)


class SimUVVis(_Calibrated, _ArrayDock):
    """UV-vis spectrometer: specular transmittance from 300 to 1100 nm in 2-nm steps (an HDF5 asset), and the
    mean visible (400-700 nm) transmittance and the absorption edge (where T falls below 10 %) in ``read()``.

    Drift (:class:`~.devices._Calibrated`, lab option ``uvvis_drift``). The simulated spectrometer is single-beam:
    it divides the light through the sample by the 100 % line (baseline) recorded at its last calibration. Its
    halogen/deuterium lamps dim and its detector's responsivity sags as they age and warm, so the light reaching
    the detector now is a factor ``1 / (1 + drift h)`` of what the baseline saw ``h`` simulated hours after switch-on,
    and every transmittance (the whole spectrum, hence the visible mean) reads low by that factor: about
    ``-drift * h`` (0.005 = 0.5 %/h, ~11 % low after a day). :meth:`calibrate` records a new 100 % line: it
    measures the empty beam (:data:`BLANK_REFERENCE`, T = 1 exactly; or a certified neutral-density filter given
    as ``reference``) over :data:`CALIBRATION_BAND`, fits the gain and divides it out of later spectra.
    """

    arrays = {
        "wavelength": ArraySpec((len(ch.WAVELENGTHS),), "nm"),
        "transmittance": ArraySpec((len(ch.WAVELENGTHS),), ""),
    }
    visible_transmittance = Cpt(
        Quantity, value=math.nan, units="", kind="hinted", doc="Mean transmittance over 400-700 nm."
    )
    absorption_edge = Cpt(
        Quantity,
        value=math.nan,
        units="eV",
        kind="hinted",
        doc="Photon energy where the transmittance falls below 10 %.",
    )
    calibrator = Cpt(
        CalibrationJob,
        value=math.nan,
        kind="omitted",
        doc="set(reference transmittance or None: the empty beam) records a new 100 % line; value: fitted gain.",
    )
    # the baseline is the calibration's (a 100 % line is not recorded before every sample, as on a real instrument)
    STEPS = (("stabilizing the lamp and detector", 60.0), ("scanning 1100-300 nm", 240.0))
    FAULTS = ("deuterium lamp did not ignite", "detector changeover failed at 800 nm")
    RESULTS = ("visible_transmittance", "absorption_edge")
    REFERENCE = BLANK_REFERENCE
    DRIFT_SIGN = -1.0
    CALIBRATION_STEP = ("recording the 100 % line (empty beam, 1100-300 nm)", 300.0)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._calibration_setup()

    def _reference_readings(self, known: float, shown: float, readings: int) -> list[float]:
        """The reference's spectrum (flat at ``known``) over the calibration band, one value per point (the
        ``readings`` argument is the probe's; a spectrum has its own ~200 points)."""
        lam = ch.WAVELENGTHS[(ch.WAVELENGTHS >= CALIBRATION_BAND[0]) & (ch.WAVELENGTHS <= CALIBRATION_BAND[1])]
        T = np.full(lam.shape, known * shown)
        if self.noise > 0:
            T = T + self._rng.normal(0.0, PHOTOMETRIC_NOISE, T.shape)
        return [float(v) for v in T]

    def acquire(self, film: dict[str, Any], recipe: dict[str, Any] | None) -> str:
        lam = ch.WAVELENGTHS
        T = self._drifted(ch.transmittance(film, recipe, lam))
        if self.noise > 0:
            T = T + self._rng.normal(0.0, PHOTOMETRIC_NOISE, T.shape)  # photometric noise, 0.2 % T
        T = self.read_out(T)
        vis = float(T[(lam >= 400) & (lam <= 700)].mean())
        edge = ch.band_edge_ev(lam, T)
        self.write_arrays({"wavelength": lam, "transmittance": T}, {"technique": "UV-vis transmittance"})
        self.visible_transmittance.put(vis)
        self.absorption_edge.put(edge)
        return f"T(400-700 nm) = {vis:.3f}"

    def read_out(self, T: np.ndarray) -> np.ndarray:
        """The detector's read-out of a spectrum (a test replaces it to feed the instrument bad data)."""
        return T


class SimXRD(_ArrayDock):
    """X-ray diffractometer (Cu K-alpha, theta-2theta 20-80 deg in 0.05-deg steps): the pattern is an HDF5 asset;
    ``read()`` has the main peak's position in 22-32 deg (anatase 101 at 25.3, rutile 110 at 27.4; NaN for an
    amorphous film)."""

    arrays = {"two_theta": ArraySpec((len(ch.TWO_THETA),), "deg"), "counts": ArraySpec((len(ch.TWO_THETA),), "counts")}
    main_peak = Cpt(
        Quantity,
        value=math.nan,
        units="deg",
        kind="hinted",
        doc="2-theta of the strongest peak in 22-32 deg (NaN: none, amorphous).",
    )
    STEPS = (("aligning the sample height", 120.0), ("scanning 20-80 deg at 2 deg/min", 1800.0))
    FAULTS = ("X-ray shutter interlock open", "detector count rate saturated")
    RESULTS = ("main_peak",)

    def acquire(self, film: dict[str, Any], recipe: dict[str, Any] | None) -> str:
        x = ch.TWO_THETA
        counts = ch.xrd_pattern(film, recipe, x)
        if self.noise > 0:
            counts = self._rng.poisson(counts).astype(float)  # counting statistics
        peak = ch.main_peak(x, counts)
        self.write_arrays({"two_theta": x, "counts": counts}, {"technique": "XRD theta-2theta, Cu K-alpha"})
        self.main_peak.put(peak)
        return "amorphous" if math.isnan(peak) else f"main peak at {peak:.2f} deg"


class SimMicroscope(_ArrayDock):
    """Optical microscope (bright field, 64 x 64 px, ~200 um field): the image is an HDF5 asset; ``read()`` has
    the fraction of crack pixels and the texture contrast that haze raises."""

    arrays = {"image": ArraySpec((ch.IMAGE_SIZE, ch.IMAGE_SIZE), "", "<f4")}
    crack_fraction = Cpt(Quantity, value=math.nan, units="", kind="hinted", doc="Share of dark (crack) pixels.")
    contrast = Cpt(
        Quantity,
        value=math.nan,
        units="",
        kind="hinted",
        doc="std/mean of the pixels outside cracks (haze mottles the image).",
    )
    STEPS = (("autofocus", 20.0), ("imaging", 10.0))
    FAULTS = ("autofocus did not converge",)
    RESULTS = ("crack_fraction", "contrast")

    def acquire(self, film: dict[str, Any], recipe: dict[str, Any] | None) -> str:
        img = ch.micrograph(film, recipe, self._rng, self.noise)
        m = ch.image_metrics(img)
        self.write_arrays({"image": img}, {"technique": "bright-field reflected light", "field_um": ch.FIELD_UM})
        self.crack_fraction.put(m["crack_fraction"])
        self.contrast.put(m["contrast"])
        return f"cracks {m['crack_fraction']:.3f}, contrast {m['contrast']:.3f}"


#: The dock's instruments by name, in the order a workflow usually visits them.
DOCK = {"profilometer": SimProfilometer, "uvvis": SimUVVis, "xrd": SimXRD, "microscope": SimMicroscope}
