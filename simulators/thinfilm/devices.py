"""Simulated thin-film lab equipment: sputter chamber, four-point probe, transfer robot.

Built like ophyd-async's simulators: the physics lives in :mod:`.physics`, these devices only wire ophyd signals,
simulated time (:class:`~labloop_simulators.clock.SimClock`) and the shared
:class:`~labloop_simulators.registry.SampleRegistry` to it. They use the same base classes as real drivers, so the
scheduler and plans cannot tell them from hardware: limits are refused in ``set``, work returns a Status that fails
with a :class:`~labloop.errors.DeviceError` (faults, ``stop()``), process streams are signals a bluesky ``monitor``
records.

Faults are optional and seeded: with ``fault_rate`` f, each recipe (or measurement) fails with probability f, at a
random moment, with a message like the real failure (arc, MFC, lost probe contact). A recipe cut short leaves a
partly coated sample behind, as in a real chamber.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
from labloop_devices.base import Health, Instrument, Move, Robot, Station, check_limits
from ophyd import Component as Cpt
from ophyd import Signal

from labloop.errors import DeviceError, LimitError

from ..clock import SimClock
from ..registry import SampleRegistry
from . import physics


class Quantity(Signal):
    """A soft signal that reports its physical unit in ``describe()`` (event-model data key ``units``)."""

    def __init__(self, *args: Any, units: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.units = units

    def describe(self) -> dict[str, dict[str, Any]]:
        desc = super().describe()
        desc[self.name]["units"] = self.units
        return desc


class _Simulated:
    """Shared plumbing of the simulated devices: clock, registry, seeded faults, one job at a time, stop()."""

    name: str

    def _sim_setup(
        self,
        clock: SimClock | None,
        registry: SampleRegistry | None,
        fault_rate: float,
        seed: int | np.random.SeedSequence | None,
    ) -> None:
        if not 0.0 <= float(fault_rate) <= 1.0:
            raise DeviceError(
                f"{self.name}: fault_rate must lie in [0, 1], got {fault_rate}", "give a probability, e.g. 0.05"
            )
        self.clock = clock if clock is not None else SimClock()
        self.registry = registry if registry is not None else SampleRegistry()
        self.fault_rate = float(fault_rate)
        seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        # Separate streams: whether a job faults does not depend on how many noise draws came before.
        self._rng, self._fault_rng = (np.random.default_rng(s) for s in seq.spawn(2))
        self._interrupt = threading.Event()
        self._job = threading.Lock()
        self.faults = 0  # injected faults so far
        self.time_factor = 1.0  # stretches every simulated wait (to model a slower or faster unit)
        self.hang_rate = 0.0  # probability that a job hangs until stop() instead of finishing

    @property
    def busy(self) -> bool:
        return self._job.locked()

    def _claim(self, what: str) -> None:
        """Take the device for one job, or refuse at once: real equipment does one thing at a time."""
        if not self._job.acquire(blocking=False):
            raise DeviceError(
                f"{self.name}: busy, cannot start {what}", "wait for the running operation to finish, or stop() it"
            )
        self._interrupt.clear()

    def _release(self) -> None:
        if self._job.locked():
            self._job.release()

    def _wait(self, sim_seconds: float, doing: str) -> None:
        """Sleep in simulated time; raise if stop() is called meanwhile."""
        if not self.clock.sleep(sim_seconds * self.time_factor, self._interrupt):
            raise DeviceError(
                f"{self.name}: stopped by request while {doing}", "check the sample's state before going on"
            )

    def _maybe_hang(self, doing: str) -> None:
        """Seeded: a hung job never finishes on its own; only stop() (e.g. after a step timeout) ends it."""
        if self.hang_rate and self._fault_rng.random() < self.hang_rate:
            self.faults += 1
            self.clock.sleep(1e12, self._interrupt)
            raise DeviceError(
                f"{self.name}: hung while {doing}; stopped by request", "power-cycle the controller if it keeps hanging"
            )

    def _draw_fault(self) -> bool:
        """Seeded: does this job fail? (drawn once per job, so a seed replays the same faults)."""
        hit = bool(self._fault_rng.random() < self.fault_rate)
        self.faults += hit
        return hit

    def stop(self, *, success: bool = False) -> None:
        """Interrupt the running job now; its Status fails with a DeviceError."""
        self._interrupt.set()
        super().stop(success=success)  # type: ignore[misc]  # a mixin: the device class after it has stop()

    def health(self) -> Health:
        return Health(True, "busy" if self.busy else "ready")


# ------------------------------------------------------------------------------------------------ chamber
class SimSputterChamber(_Simulated, Station):
    """RF magnetron sputter chamber depositing Nb:TiO2 from a recipe of the five :data:`physics.PARAMETERS`.

    A recipe takes as long as in a real chamber (pump-down, heater ramp, strike, the deposition itself,
    cool-down: ``physics.timeline``), streams ``chamber_pressure`` and ``substrate_temperature`` every
    ``update_interval`` simulated seconds, and finally writes the film it made onto the sample registry.
    """

    #: Hardware limits (wider than any campaign's bounds; the campaign box must lie inside them).
    limits = {
        "o2_pressure": (0.0, 50.0),  # mTorr, MFC + gauge range
        "substrate_temperature": (20.0, 800.0),  # degC, heater
        "nb_fraction": (0.0, 0.3),  # co-sputter power ratio range
        "rf_power": (10.0, 500.0),  # W, RF generator / target rating
        "duration": (1.0, 240.0),  # min
        # categorical: one of physics.DOPANTS by name ("Nb", "Ta", "W"; the co-sputter target in use). The range
        # is the targets' index, there only so tools reading limits see the field; set() checks the name.
        "dopant": (0.0, float(len(physics.DOPANTS) - 1)),
    }
    process_signals = ("chamber_pressure", "substrate_temperature")

    chamber_pressure = Cpt(
        Quantity,
        value=physics.BASE_PRESSURE,
        units="mTorr",
        kind="hinted",
        doc="Total chamber pressure (capacitance manometer).",
    )
    substrate_temperature = Cpt(
        Quantity,
        value=physics.ROOM_T,
        units="degC",
        kind="hinted",
        doc="Substrate temperature (thermocouple under the platen).",
    )
    process_phase = Cpt(Signal, value="idle", kind="normal", doc="idle, pump-down, ramp, strike, deposition, ...")

    FAULTS = (
        "RF reflected power above limit (arc): plasma extinguished",
        "O2 mass-flow controller did not reach its setpoint",
        "substrate heater thermocouple reads open",
    )

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str,
        clock: SimClock | None = None,
        registry: SampleRegistry | None = None,
        fault_rate: float = 0.0,
        seed: Any = None,
        update_interval: float = 30.0,
        **kwargs: Any,
    ):
        super().__init__(prefix, name=name, **kwargs)
        self._sim_setup(clock, registry, fault_rate, seed)
        if not float(update_interval) > 0:
            raise DeviceError(
                f"{name}: update_interval must be positive, got {update_interval}",
                "give simulated seconds between process-stream updates, e.g. 30",
            )
        self.update_interval = float(update_interval)
        self.fixed_seconds: float | None = None  # fixed run time (simulated s) instead of the recipe's timeline
        self.dead_after: int | None = None  # the chamber dies after this many recipes
        self.recipes_run = 0

    def set(self, recipe: Mapping[str, Any]) -> Any:
        """Refuse an incomplete or out-of-limits recipe at once (nothing moves); else run it."""
        if not isinstance(recipe, Mapping):
            raise DeviceError(
                f"{self.name}: set() needs a recipe mapping, got {recipe!r}",
                f"send {{field: value}} with fields {list(physics.PARAMETERS)}",
            )
        missing = [k for k in physics.PARAMETERS if k not in recipe]
        if missing:
            raise DeviceError(
                f"{self.name}: recipe lacks {missing}",
                "give every recipe field (use a 'fixed' parameter for values that are not searched)",
            )
        if physics.DOPANT_FIELD in recipe:
            value = recipe[physics.DOPANT_FIELD]
            if not isinstance(value, str) or value not in physics.DOPANTS:
                raise LimitError(
                    f"{self.name}: setpoint dopant={value!r} is not a target the chamber has "
                    f"(has {sorted(physics.DOPANTS)})",
                    "send one of those names",
                )
            numeric = {k: v for k, v in recipe.items() if k != physics.DOPANT_FIELD}
            check_limits(self.limits, numeric, self.name)
            if not self.sample.get():
                raise DeviceError(f"{self.name}: no sample loaded", "transfer a sample into the station first")
            self._claim("a recipe")
            recipe = dict(recipe)
            try:
                return self._run_status(lambda: self.run_recipe(recipe))
            except BaseException:
                self._release()
                raise
        self._claim("a recipe")
        try:
            return super().set(recipe)
        except BaseException:
            self._release()
            raise

    def conformance_hints(self) -> dict[str, Any]:
        """For labloop's driver conformance kit: a short, valid recipe."""
        return {
            "setpoint": {
                "o2_pressure": 0.3,
                "substrate_temperature": 300.0,
                "nb_fraction": 0.05,
                "rf_power": 100.0,
                "duration": 5.0,
            }
        }

    def _show(self, state: Mapping[str, Any]) -> None:
        self.chamber_pressure.put(float(state["chamber_pressure"]))
        self.substrate_temperature.put(float(state["substrate_temperature"]))
        self.process_phase.put(str(state["phase"]))

    def run_recipe(self, recipe: dict[str, Any]) -> None:
        try:
            self._run(recipe)
        finally:
            self._release()

    def _run(self, recipe: dict[str, Any]) -> None:
        self.recipes_run += 1
        if self.dead_after is not None and self.recipes_run > self.dead_after:
            raise DeviceError(
                f"{self.name}: RF generator reports no forward power (unit failed)",
                "the chamber needs service; the campaign continues on the other chambers",
            )
        self._maybe_hang("running a recipe")
        sample = str(self.sample.get())
        where = self.registry.location(sample)
        if self.registry.get(sample) is None or where == self.registry.supply:
            self.registry.move(sample, self.name, "loaded by hand")
        elif where != self.name:
            raise DeviceError(
                f"{self.name}: the sample signal says '{sample}' but that sample is at '{where}'",
                "transfer the sample into the chamber with the robot",
            )
        tl = physics.timeline(recipe)
        k = self.fixed_seconds / tl.total if self.fixed_seconds else 1.0  # real seconds per timeline second
        _, dep_start, dep_end = next(ph for ph in tl.phases if ph[0] == "deposition")
        fault_at, fault = None, ""
        if self._draw_fault():
            fault_at = float(self._rng.uniform(dep_start, dep_end))
            fault = self.FAULTS[int(self._rng.integers(len(self.FAULTS)))]
        start = self.clock.now()
        ticks = tl.sample_times(self.update_interval)
        for t, nxt in zip(ticks, ticks[1:] + [None]):
            self._show(physics.process_profile(recipe, t))
            if nxt is None:
                break
            wake = fault_at if fault_at is not None and fault_at <= nxt else nxt
            if not self.clock.sleep_until(start + wake * k, self._interrupt):
                now = min(max((self.clock.now() - start) / k, t), wake)
                self._abort(sample, recipe, now, dep_start)
                raise DeviceError(
                    f"{self.name}: recipe stopped by request at {now / 60:.1f} min "
                    f"({tl.phase_at(now)[0]}); sample '{sample}' is not finished",
                    "the sample is consumed: run the trial again on a new substrate",
                )
            if wake != nxt:
                self._abort(sample, recipe, wake, dep_start)
                raise DeviceError(
                    f"{self.name}: {fault} at {wake / 60:.1f} min into the recipe; "
                    f"sample '{sample}' is only partly coated",
                    "the sample is consumed: run the trial again on a new substrate; check the chamber if it repeats",
                )
        made = physics.film(recipe)
        self.registry.update(sample, f"deposited {recipe}", film=made.as_dict(), recipe=dict(recipe), complete=True)
        self.process_phase.put("idle")

    def _abort(self, sample: str, recipe: dict[str, Any], t: float, dep_start: float) -> None:
        """Leave what a real aborted run leaves: a partly coated sample, gas off, heater off."""
        coated_min = min(max(0.0, (t - dep_start) / 60.0), float(recipe["duration"]))
        made = physics.film({**recipe, "duration": coated_min}).as_dict() if coated_min > 0 else None
        self.registry.update(
            sample, f"aborted after {coated_min:.1f} min of deposition", film=made, recipe=dict(recipe), complete=False
        )
        self.chamber_pressure.put(physics.BASE_PRESSURE)
        self.process_phase.put("aborted")


# ------------------------------------------------------------------------------------------------ probe
GEOMETRY = math.pi / math.log(2.0)  # R_s = (pi / ln 2) V / I for a thin, large sheet and a collinear probe
CURRENTS = tuple(10.0**k for k in range(-8, -1))  # A: source ranges 10 nA .. 10 mA
V_TARGET = 0.1  # V: autorange aims at about this
V_COMPLIANCE = 10.0  # V
#: A mediocre but conductive film (~10 ohm/sq), for checks that need something to measure.
REFERENCE_RECIPE = {
    "o2_pressure": 0.3,
    "substrate_temperature": 400.0,
    "nb_fraction": 0.05,
    "rf_power": 150.0,
    "duration": 30.0,
}


def place_coated_sample(dev: Any) -> None:
    """Conformance-kit hint for an instrument of the simulated lab: before each action, put a sample coated with the
    reference recipe on it (the kit has no campaign to make one)."""
    sample = str(dev.sample.get()) or "conformance-sample"
    dev.registry.move(sample, dev.name, "placed by the conformance kit")
    dev.registry.update(
        sample,
        "coated for the conformance kit",
        film=physics.film(REFERENCE_RECIPE).as_dict(),
        recipe=dict(REFERENCE_RECIPE),
    )
    dev.sample.put(sample)


class _SimInstrument(_Simulated):
    """A simulated instrument measures one sample at a time: ``trigger`` claims it (or refuses at once while busy),
    the measurement (``measure``, which the Instrument base class runs for ``trigger``) releases it,
    whatever happens."""

    def trigger(self) -> Any:
        self._claim("a measurement")
        try:
            return super().trigger()  # type: ignore[misc]  # a mixin: the device class after it has trigger()
        except BaseException:
            self._release()
            raise

    def conformance_hints(self) -> dict[str, Any]:
        """For labloop's driver conformance kit: put a coated sample on the instrument before each action."""
        return {"prepare": place_coated_sample}

    def measure(self) -> None:
        try:
            self._measure()
        finally:
            self._release()

    def _measure(self) -> None:
        raise NotImplementedError


#: The probe's built-in check standard: a certified sheet-resistance reference (ohm/sq) it calibrates against.
REFERENCE_STANDARD = {"name": "Rs check standard", "value": 100.0, "units": "ohm/sq"}
#: A fitted gain (drift since the calibration in force) outside this range is not drift but a fault (broken tip,
#: wrong standard): refused.
GAIN_RANGE = (0.5, 2.0)


def check_calibration_result(device: str, result: Any) -> dict[str, Any]:
    """Refuse a malformed calibration result (not a dict, gain missing, NaN/inf or outside :data:`GAIN_RANGE`)."""
    gain = result.get("gain") if isinstance(result, Mapping) else None
    try:
        g = float(gain)  # type: ignore[arg-type]  # None or a string fails here: caught below
    except (TypeError, ValueError):
        g = math.nan
    if not (math.isfinite(g) and GAIN_RANGE[0] <= g <= GAIN_RANGE[1]):
        raise DeviceError(
            f"{device}: calibration result {result!r} is malformed: the fitted gain must be a finite "
            f"number in [{GAIN_RANGE[0]:g}, {GAIN_RANGE[1]:g}]",
            "clean the tips, check the reference standard is seated, and calibrate again",
        )
    return dict(result)


class CalibrationJob(Signal):
    """``set(reference_value)`` runs the parent's :meth:`calibrate` in a thread (a Status for a bluesky plan); its
    value is then the fitted gain (read into the calibration run's primary stream)."""

    def set(self, value: Any, **kwargs: Any) -> Any:
        dev = self.parent

        def work() -> None:
            cal = dev.calibrate(None if value is None else float(value))
            Signal.put(self, float(cal["result"]["gain"]))

        return dev._run_status(work)


class _Calibrated:
    """Drift since the last calibration, and the calibration against a reference that divides it out: shared by the
    probe and the UV-vis spectrometer (each says what drifts and how it reads its reference).

    The raw gain (reading / truth) moves with simulated hours ``h`` since the lab was switched on:
    ``(1 + drift h) ** DRIFT_SIGN`` (up for the probe's tip wear, down for the spectrometer's dimming lamp).
    :meth:`calibrate` reads the reference as the instrument reports it now (the calibration in force applied), fits
    the gain (measured / certified: the drift since that calibration) and divides it out of later readings
    (``correction``), which resets the error to the noise of the fit; ``calibration`` then says which calibration is
    in force. A subclass declares a ``calibrator = Cpt(CalibrationJob, ...)`` (ophyd components live on the device
    class) and calls :meth:`_calibration_setup` in its constructor."""

    #: The reference the instrument calibrates against (name, certified value, units).
    REFERENCE: dict[str, Any] = {}
    #: +1: readings grow with drift; -1: they shrink.
    DRIFT_SIGN = 1.0
    #: What the instrument does while calibrating, and for how many simulated seconds.
    CALIBRATION_STEP: tuple[str, float] = ("measuring the reference", 120.0)
    #: labloop refuses a calibration whose result lies outside these (see labloop.run.calibration).
    calibration_limits = {"gain": GAIN_RANGE}

    def _calibration_setup(self) -> None:
        self.drift = 0.0  # relative gain drift per simulated hour (lab options probe_drift, uvvis_drift)
        self._t_on = self.clock.now()  # drift counts from when the lab was switched on
        self._correction = 1.0  # 1 / fitted gain of the calibration in force
        self._cal_t = self._t_on  # simulated time of the last calibration (switch-on until the first)
        self.calibration: dict[str, Any] | None = None
        self.calibrations = 0

    def gain(self) -> float:
        """The raw (uncorrected) gain now: (1 + drift * simulated hours since switch-on) ** DRIFT_SIGN."""
        return (1.0 + self.drift * (self.clock.now() - self._t_on) / 3600.0) ** self.DRIFT_SIGN

    def _drifted(self, value: Any) -> Any:
        """A true reading as the instrument reports it: the drifted raw gain, corrected by the calibration in force
        (exactly ``value`` without drift or calibration)."""
        if self.drift or self._correction != 1.0:
            return value * (self.gain() * self._correction)
        return value

    def calibration_age(self) -> float:
        """Simulated seconds since the last calibration (since switch-on before the first)."""
        return max(0.0, self.clock.now() - self._cal_t)

    def calibrate(self, reference: float | None = None, readings: int = 8) -> dict[str, Any]:
        """Measure the reference (certified value ``reference``, default :attr:`REFERENCE`), fit the gain and put it
        in force. Blocking (:attr:`CALIBRATION_STEP`). Returns the new ``calibration``; a malformed fit (NaN, out of
        :data:`GAIN_RANGE`) raises a DeviceError and changes nothing."""
        known = float(self.REFERENCE["value"] if reference is None else reference)
        if not (math.isfinite(known) and known > 0):
            raise DeviceError(
                f"{self.name}: reference value {reference!r} is not a positive number",
                f"give the certified value of the {self.REFERENCE['name']} in {self.REFERENCE['units']}",
            )
        self._claim("a calibration")
        try:
            self._wait(self.CALIBRATION_STEP[1], self.CALIBRATION_STEP[0])
            values = self._reference_readings(known, self.gain() * self._correction, int(readings))
            result = check_calibration_result(self.name, self._fit(values, known))
            result["correction"] = self._correction / float(result["gain"])
            self._correction = result["correction"]
            self._cal_t = self.clock.now()
            self.calibrations += 1
            self.calibration = {
                "id": f"cal-{uuid.uuid4().hex[:12]}",
                "at": datetime.now(UTC).isoformat(),
                "reference": {**self.REFERENCE, "value": known},
                "result": result,
                "sim_time_s": round(self._cal_t, 3),
            }
            return dict(self.calibration)
        finally:
            self._release()

    def _reference_readings(self, known: float, shown: float, readings: int) -> list[float]:
        """``readings`` readings of the reference whose true value is ``known``, through gain ``shown``."""
        return [physics.with_noise(known * shown, self.noise, self._rng) for _ in range(readings)]

    def restore_calibration(self, cal: Mapping[str, Any]) -> None:
        """Put a recorded calibration back in force after a restart. The simulated drift restarts with its clock
        (gain 1 at switch-on), so only the record comes back; the age counts from now."""
        self.calibration = dict(cal)
        self._correction = 1.0 / self.gain()
        self._cal_t = self.clock.now()

    @staticmethod
    def _fit(values: list[float], known: float) -> dict[str, Any]:
        """Gain = geometric mean of the readings / certified value (the noise is log-normal)."""
        logs = [math.log(v / known) for v in values]
        mean = sum(logs) / len(logs)
        sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / max(1, len(logs) - 1))
        return {"gain": math.exp(mean), "rel_sd": sd, "readings": len(values)}


class SimFourPointProbe(_Calibrated, _SimInstrument, Instrument):
    """Collinear four-point probe: autoranges the source current, reads the voltage, reports R_s (ohm/sq).

    Drift (:class:`_Calibrated`): tip wear and contact-resistance build-up make the probe's gain grow by ``drift``
    (relative, per simulated hour) since the lab was switched on, so a reading taken ``h`` hours after the last
    calibration is off by about ``+drift * h`` (0.002 = 0.2 %/h, ~5 %/day). It calibrates against the built-in
    :data:`REFERENCE_STANDARD`.
    """

    sheet_resistance = Cpt(
        Quantity, value=math.nan, units="ohm/sq", kind="hinted", doc="Sheet resistance, (pi/ln2) V/I."
    )
    current = Cpt(Quantity, value=math.nan, units="A", kind="normal", doc="Source current used.")
    voltage = Cpt(Quantity, value=math.nan, units="V", kind="normal", doc="Voltage between the inner tips.")
    calibrator = Cpt(
        CalibrationJob,
        value=math.nan,
        kind="omitted",
        doc="set(reference ohm/sq or None) calibrates against the check standard; value: fitted gain.",
    )

    #: Simulated seconds: lower the tips and settle, autorange, average readings.
    STEPS = (("lowering the tips", 30.0), ("autoranging", 30.0), ("averaging readings", 240.0))

    FAULTS = (
        "no ohmic contact: tip contact resistance above limit",
        "voltage reading unstable (tip slipped on the film)",
    )

    REFERENCE = REFERENCE_STANDARD
    CALIBRATION_STEP = ("measuring the check standard", 120.0)

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
        self._sim_setup(clock, registry, fault_rate, seed)
        if not 0.0 <= float(noise) < 1.0:
            raise DeviceError(f"{name}: noise must lie in [0, 1), got {noise}", "give a relative sd, e.g. 0.03")
        self.noise = float(noise)
        self._calibration_setup()

    def _measure(self) -> None:
        for sig in (self.sheet_resistance, self.current, self.voltage):
            sig.put(math.nan)  # never leave the previous sample's numbers in read()
        sample = str(self.sample.get())
        rec = self.registry.get(sample)
        if rec is not None and rec.location != self.name:
            raise DeviceError(
                f"{self.name}: the sample signal says '{sample}' but that sample is at '{rec.location}'",
                "transfer the sample onto the probe with the robot",
            )
        self._maybe_hang("measuring")
        fault_step = int(self._rng.integers(len(self.STEPS))) if self._draw_fault() else None
        for i, (doing, seconds) in enumerate(self.STEPS):
            if i == fault_step:
                self._wait(seconds * float(self._rng.random()), doing)
                raise DeviceError(
                    f"{self.name}: {self.FAULTS[i % len(self.FAULTS)]} on sample '{sample}'",
                    "re-seat the sample and measure again; clean the tips if it repeats",
                )
            self._wait(seconds, doing)
        film = (rec.properties.get("film") if rec is not None else None) or {}
        rs = float(film.get("sheet_resistance", math.inf))
        # Autorange: the largest current whose voltage stays near V_TARGET.
        current = CURRENTS[0]
        for i in CURRENTS:
            if i * rs / GEOMETRY <= V_TARGET:
                current = i
        volts = self._drifted(physics.with_noise(current * rs / GEOMETRY, self.noise, self._rng))
        if not volts < V_COMPLIANCE:
            why = "bare substrate" if not film else "film insulating"
            raise DeviceError(
                f"{self.name}: no current flows through sample '{sample}' ({why}): the source hit "
                f"its {V_COMPLIANCE:g} V compliance at {current:g} A",
                "check the sample was coated; an insulating film is a result, not a probe fault",
            )
        self.current.put(current)
        self.voltage.put(volts)
        self.sheet_resistance.put(GEOMETRY * volts / current)
        if rec is not None:
            self.registry.update(sample, f"measured R_s = {GEOMETRY * volts / current:.4g} ohm/sq")


# ------------------------------------------------------------------------------------------------ robot
class SimTransferRobot(_Simulated, Robot):
    """Vacuum transfer arm between the load lock, the stations and storage (about a simulated minute a move).

    It keeps the sample locations in the registry and the ``sample`` signals of the devices it serves in step,
    and refuses at once (nothing moves) to pick a sample that is not at the source or to place into an
    occupied station.
    """

    APPROACH_S, PICK_S, TRAVEL_S, PLACE_S = 20.0, 10.0, 30.0, 10.0

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str,
        clock: SimClock | None = None,
        registry: SampleRegistry | None = None,
        stations: Mapping[str, Any] | None = None,
        positions: tuple[str, ...] = ("load_lock", "chamber", "probe", "storage"),
        seed: Any = None,
        **kwargs: Any,
    ):
        super().__init__(prefix, name=name, **kwargs)
        self._sim_setup(clock, registry, 0.0, seed)
        self.stations = dict(stations or {})
        self.positions = tuple(positions)
        self.registry.single |= {n for n, d in self.stations.items() if not hasattr(d, "samples")}
        self.fixed_move_seconds: float | None = None
        # After a restart the physical world is as it was: the gripper and the stations hold what they held.
        held = self.registry.at(self.name)
        if held:
            self.holding.put(held[0])
        for where, dev in self.stations.items():
            if hasattr(dev, "samples"):  # a station with slots (a furnace): every sample in it
                dev.samples.put(self.registry.at(where))
                continue
            occupant = self.registry.occupant(where)
            if occupant:
                dev.sample.put(occupant)

    def conformance_hints(self) -> dict[str, Any]:
        """For labloop's driver conformance kit: a repeatable move of a test sample (put back before each try)."""
        sample = "conformance-sample"

        def prepare(dev: SimTransferRobot) -> None:
            if dev.holding.get() != sample:
                dev.registry.move(sample, dev.registry.supply, "put back by the conformance kit")

        return {"setpoint": Move(sample, self.registry.supply, self.positions[-1]), "prepare": prepare}

    def locate(self, sample: str) -> str | None:
        """Where a sample physically is (the orchestrator asks after a crash); None for a sample never seen."""
        if self.registry.get(sample) is None:
            return None
        return self.registry.location(sample)

    def _already_done(self, move: Move) -> bool:
        """A move repeated after a crash that had already completed it is a no-op (moves are idempotent)."""
        return (
            not self.holding.get()
            and self.registry.location(move.sample) == move.destination
            and self.registry.get(move.sample) is not None
        )

    def _check(self, move: Move) -> None:
        if self._already_done(move):
            return
        held = str(self.holding.get())
        if held and held != move.sample:
            raise DeviceError(
                f"{self.name}: the gripper still holds sample '{held}'",
                f"place '{held}' somewhere before moving '{move.sample}'",
            )
        if not held:
            self.registry.check_pick(move.sample, move.source, self.name)
        self.registry.check_place(move.sample, move.destination, self.name)
        slots = getattr(self.stations.get(move.destination), "capacity", None)
        inside = self.registry.at(move.destination)
        if slots is not None and move.sample not in inside and len(inside) >= slots:
            raise DeviceError(
                f"{self.name}: '{move.destination}' is full ({len(inside)} of {slots} slots: {sorted(inside)})",
                f"take a sample out of '{move.destination}' first",
            )
        for where in (move.source, move.destination):
            dev = self.stations.get(where)
            if dev is not None and getattr(dev, "busy", False):
                raise DeviceError(
                    f"{self.name}: '{where}' is busy; its door stays shut", f"wait for '{where}' to finish"
                )

    def set(self, move: Move) -> Any:
        self._claim("a move")
        try:
            if isinstance(move, Move) and move.source in self.positions and move.destination in self.positions:
                self._check(move)  # refuse before anything moves
            return super().set(move)
        except BaseException:
            self._release()
            raise

    def do_move(self, move: Move) -> None:
        try:
            self._move(move)
        finally:
            self._release()

    def _move(self, move: Move) -> None:
        self._check(move)
        if self._already_done(move):
            _put_into(self.stations.get(move.destination), move.sample)
            return
        if self.fixed_move_seconds:  # every move takes exactly this long, however far the arm travels
            planned = self.TRAVEL_S + self.PLACE_S
            if not self.holding.get():
                planned += self.PICK_S + (self.APPROACH_S if self.at.get() != move.source else 0.0)
            self.time_factor = self.fixed_move_seconds / planned
        if not self.holding.get():
            if self.at.get() != move.source:
                self.at.put("moving")
                self._wait(self.APPROACH_S, f"approaching '{move.source}'")
                self.at.put(move.source)
            self._wait(self.PICK_S, f"picking '{move.sample}' at '{move.source}'")
            self.registry.move(move.sample, self.name, "picked")
            self.holding.put(move.sample)
            _take_out(self.stations.get(move.source), move.sample)
        self.at.put("moving")
        self._wait(self.TRAVEL_S, f"carrying '{move.sample}' to '{move.destination}'")
        self.at.put(move.destination)
        self._wait(self.PLACE_S, f"placing '{move.sample}' at '{move.destination}'")
        self.registry.move(move.sample, move.destination, "placed")
        _put_into(self.stations.get(move.destination), move.sample)
        self.holding.put("")


def _put_into(station: Any, sample: str) -> None:
    """The station's sensors follow a placed sample: its ``sample`` signal, or its ``samples`` list (slots)."""
    if station is None:
        return
    if hasattr(station, "samples"):
        inside = list(station.samples.get() or [])
        if sample not in inside:
            station.samples.put([*inside, sample])
    else:
        station.sample.put(sample)


def _take_out(station: Any, sample: str) -> None:
    if station is None:
        return
    if hasattr(station, "samples"):
        station.samples.put([s for s in (station.samples.get() or []) if s != sample])
    elif station.sample.get() == sample:
        station.sample.put("")
