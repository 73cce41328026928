"""The simulated thin-film lab: a transfer robot, a sputter chamber and a four-point probe sharing one clock, and,
with ``dock: true``, the materials dock (profilometer, UV-vis, XRD, microscope: :mod:`.dock`).

Registered as the ``thinfilm`` entry point of ``labloop.simulators``; a campaign file selects it with
``lab: {simulator: thinfilm, time_scale: 20000, options: {...}}``.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import numpy as np

from labloop.errors import SpecError
from labloop.run.lab import Lab

from ..clock import SimClock
from ..registry import SampleRegistry
from .barcode import SimBarcodeReader
from .devices import SimFourPointProbe, SimSputterChamber, SimTransferRobot
from .dock import DOCK
from .furnace import SimAnnealFurnace

#: Options a campaign may give under lab.options, with their defaults and meaning.
OPTIONS: dict[str, tuple[float, str]] = {
    "noise": (0.03, "relative sd of the probe's multiplicative noise (0.03 = ~3 %)"),
    "fault_rate": (0.0, "probability that a recipe or a measurement fails with a device fault"),
    "chamber_fault_rate": (math.nan, "fault probability of the chamber alone (default: fault_rate)"),
    "probe_fault_rate": (math.nan, "fault probability of the probe alone (default: fault_rate)"),
    "update_interval": (30.0, "simulated seconds between process-stream updates of the chamber"),
    "chambers": (1.0, "number of identical sputter chambers (named chamber, or chamber1..N when more than one)"),
    "chamber_minutes": (math.nan, "fixed deposition run time in simulated minutes (default: the recipe's timeline)"),
    "probe_minutes": (math.nan, "fixed measurement time in simulated minutes (default: about 5 min)"),
    "robot_minutes": (math.nan, "fixed robot move time in simulated minutes (default: about 1 min)"),
    "probe_drift": (
        0.0,
        "relative gain drift of the probe per simulated hour since its last calibration (tip "
        "wear; 0.002 = 0.2 %/h), reset by `labloop calibrate probe` or a calibration step",
    ),
    "uvvis_drift": (
        0.0,
        "relative drop per simulated hour of the UV-vis spectrometer's lamp and detector "
        "throughput since its last calibration (transmittances read low by ~that much; 0.005 = "
        "0.5 %/h; needs dock: true), reset by `labloop calibrate uvvis` or a calibration step",
    ),
    "hang_rate": (0.0, "probability that a recipe or measurement hangs (never finishes) instead of failing"),
    "furnace_slots": (
        0.0,
        "slots of the anneal furnace, device 'furnace' (0: no furnace); it fires every sample inside at once on "
        "one anneal_c, the batch station of lab.batching",
    ),
    "furnace_minutes": (60.0, "hold time of a furnace firing in simulated minutes"),
    "dead_after": (math.nan, "the first chamber dies (every recipe fails) after this many recipes"),
    "dock": (
        0.0,
        "true/1 adds the materials dock: instruments profilometer, uvvis, xrd and microscope (default false)",
    ),
    "barcode": (
        0.0,
        "true/1 gives each chamber a barcode reader, device <chamber>_reader (name it in lab.identity.readers)",
    ),
    "barcode_misread_rate": (0.0, "probability that a barcode read is a no-read or one digit off (needs barcode)"),
    "barcode_swap_rate": (0.0, "probability that a substrate carries another sample's label (needs barcode)"),
    "dock_fault_rate": (math.nan, "fault probability of each dock instrument (default: fault_rate)"),
    "dock_minutes": (
        math.nan,
        "fixed measurement time of each dock instrument in simulated minutes (default: its own, 0.5 to 32 min)",
    ),
}
#: Options that are not numbers.
TEXT_OPTIONS = {
    "state_file": "file that keeps the simulated world (sample locations, films) across restarts "
    "(default: <campaign name>.world.json beside the store)",
    "data_dir": "folder for the dock's HDF5 files (spectra, patterns, images) (default: <campaign "
    "name>-data beside the store)",
}

PLACES = frozenset({"load_lock", "storage", "hotel"})  # hotel: a buffer rack for finished samples


def _option(options: dict[str, Any], key: str, lo: float, hi: float, hi_open: bool = False) -> float:
    value = options.get(key, OPTIONS[key][0])
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"lab.options.{key}: {value!r} is not a number", f"give {OPTIONS[key][1]}") from None
    if math.isnan(v) and key not in options:
        return v
    if not (lo <= v < hi if hi_open else lo <= v <= hi):
        raise SpecError(
            f"lab.options.{key}: {v:g} is outside [{lo:g}, {hi:g}{')' if hi_open else ']'}", f"give {OPTIONS[key][1]}"
        )
    return v


def _writable_file(path: str, what: str, fix: str) -> str:
    """Refuse a world file that cannot be written before anything runs: its folder must exist and be writable."""
    full = os.path.abspath(os.path.expanduser(path))
    folder = os.path.dirname(full)
    if not os.path.isdir(folder):
        raise SpecError(f"{what}: the folder '{folder}' of '{path}' does not exist", fix)
    if os.path.isdir(full):
        raise SpecError(f"{what}: '{path}' is a folder, not a file", fix)
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(full) and not os.access(full, os.R_OK | os.W_OK)):
        raise SpecError(f"{what}: '{path}' is not writable (no permission to write in '{folder}')", fix)
    return full


def world_file(options: dict[str, Any], state_dir: str | None, name: str | None) -> str | None:
    """The file that keeps the simulated world: ``lab.options.state_file``, else ``<name>.world.json`` in
    ``state_dir`` (beside the store), else None (the world lives in memory and a restart forgets it)."""
    state_file = options.get("state_file")
    if state_file is not None:
        if not isinstance(state_file, str) or not state_file.strip():
            raise SpecError(f"lab.options.state_file: {state_file!r} is not a path", "give a file path as text")
        return _writable_file(
            state_file,
            "lab.options.state_file",
            "name a file in an existing, writable folder (create the folder first), or leave "
            "state_file out: the world is then kept beside the store",
        )
    if state_dir is None:
        return None
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name or "thinfilm").strip("-.") or "thinfilm"
    return _writable_file(
        os.path.join(state_dir, f"{stem}.world.json"),
        "the simulated world beside the store",
        "make the store's folder writable, or set lab.options.state_file to a writable file",
    )


def data_folder(options: dict[str, Any], state_dir: str | None, name: str | None) -> str | None:
    """Where the dock writes its files: ``lab.options.data_dir``, else ``<name>-data`` in ``state_dir`` (beside
    the store), else None (a temporary folder, made at the first file)."""
    given = options.get("data_dir")
    if given is not None:
        if not isinstance(given, str) or not given.strip():
            raise SpecError(f"lab.options.data_dir: {given!r} is not a path", "give a folder path as text")
        folder = os.path.abspath(os.path.expanduser(given))
        fix = "name a folder that is writable (it is created if missing), or leave data_dir out"
    elif state_dir is not None:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name or "thinfilm").strip("-.") or "thinfilm"
        folder = os.path.join(state_dir, f"{stem}-data")
        fix = "make the store's folder writable, or set lab.options.data_dir to a writable folder"
    else:
        return None
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise SpecError(f"lab.options.data_dir: '{folder}' is a file, not a folder", fix)
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SpecError(f"the dock's data folder '{folder}' is not writable (no permission in '{existing}')", fix)
    return folder


def build_lab(
    options: dict[str, Any] | None = None,
    time_scale: float = 1.0,
    seed: int = 0,
    state_dir: str | None = None,
    name: str | None = None,
) -> Lab:
    """Devices ``robot``, one or more sputter chambers (``chamber``, or ``chamber1..N``), ``probe``, and places
    ``load_lock`` (fresh substrates) and ``storage``; with ``dock: true`` also ``profilometer``, ``uvvis``, ``xrd``
    and ``microscope``, which the robot reaches, writing their files to :func:`data_folder`.

    ``seed`` makes noise and faults reproducible (each device draws from its own stream of it). The physical world
    (where each sample is, what it is) outlives the orchestrator, as in a real lab: it is kept in
    ``lab.options.state_file`` or, by default, in ``<state_dir>/<name>.world.json`` (labloop passes the store's
    folder and the campaign's name); without either it lives in memory only.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS) - set(TEXT_OPTIONS))
    if unknown:
        known = ", ".join(
            f"{k} ({d})" for k, (_, d) in {**OPTIONS, **{k: (None, v) for k, v in TEXT_OPTIONS.items()}}.items()
        )
        raise SpecError(
            f"lab.options: the thinfilm simulator has no option {unknown}", f"use only known options: {known}"
        )
    noise = _option(options, "noise", 0.0, 1.0, hi_open=True)
    fault = _option(options, "fault_rate", 0.0, 1.0)
    chamber_fault = _option(options, "chamber_fault_rate", 0.0, 1.0)
    probe_fault = _option(options, "probe_fault_rate", 0.0, 1.0)
    interval = _option(options, "update_interval", 1.0, 3600.0)
    n_chambers = _option(options, "chambers", 1, 16)
    if n_chambers != int(n_chambers):
        raise SpecError(f"lab.options.chambers: {n_chambers:g} is not a whole number", "give 1, 2, 3 ...")
    chamber_min = _option(options, "chamber_minutes", 1.0, 24 * 60.0)
    probe_min = _option(options, "probe_minutes", 0.1, 600.0)
    robot_min = _option(options, "robot_minutes", 0.05, 60.0)
    hang = _option(options, "hang_rate", 0.0, 1.0)
    dead_after = _option(options, "dead_after", 0.0, 1e6)
    dock = _option(options, "dock", 0.0, 1.0)
    if dock not in (0.0, 1.0):
        raise SpecError(f"lab.options.dock: {dock:g} is neither true nor false", "give true or false")
    dock_fault = _option(options, "dock_fault_rate", 0.0, 1.0)
    dock_min = _option(options, "dock_minutes", 0.05, 600.0)
    uvvis_drift = _option(options, "uvvis_drift", 0.0, 0.5)
    if uvvis_drift and not dock:
        raise SpecError(
            "lab.options.uvvis_drift: the lab has no UV-vis spectrometer without the dock",
            "add dock: true to lab.options, or drop uvvis_drift",
        )
    data_dir = data_folder(options, state_dir, name) if dock else None
    state_file = world_file(options, state_dir, name)
    try:
        clock = SimClock(time_scale)
    except Exception as exc:  # noqa: BLE001 - reported as a campaign-file problem
        raise SpecError(f"lab.time_scale: {exc}", "give a positive number") from None

    n = int(n_chambers)
    names = ["chamber"] if n == 1 else [f"chamber{i}" for i in range(1, n + 1)]
    seeds = np.random.SeedSequence(int(seed)).spawn(2 + n)
    dock_seeds = np.random.SeedSequence([int(seed), 7]).spawn(len(DOCK))  # apart: the other devices' draws stay
    try:
        registry = SampleRegistry(supply="load_lock", state_file=state_file)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        where = "lab.options.state_file" if "state_file" in options else "the simulated world beside the store"
        raise SpecError(
            f"{where}: cannot read '{state_file}': {type(exc).__name__}: {exc}",
            "restore the file from a backup, or move it away to start with an empty lab (then put "
            "every sample back into storage by hand)",
        ) from None
    chambers = {}
    for i, name in enumerate(names):
        ch = SimSputterChamber(
            name=name,
            clock=clock,
            registry=registry,
            seed=seeds[2 + i],
            fault_rate=fault if math.isnan(chamber_fault) else chamber_fault,
            update_interval=interval,
        )
        ch.hang_rate = hang
        if not math.isnan(chamber_min):
            ch.fixed_seconds = chamber_min * 60.0
        if i == 0 and not math.isnan(dead_after):
            ch.dead_after = int(dead_after)
        chambers[name] = ch
    probe = SimFourPointProbe(
        name="probe",
        clock=clock,
        registry=registry,
        seed=seeds[0],
        noise=noise,
        fault_rate=fault if math.isnan(probe_fault) else probe_fault,
    )
    probe.hang_rate = hang
    probe.drift = _option(options, "probe_drift", 0.0, 0.5)
    if not math.isnan(probe_min):
        probe.time_factor = probe_min * 60.0 / sum(sec for _, sec in probe.STEPS)
    instruments: dict[str, Any] = {}
    if dock:
        folder = _lazy_temp_folder() if data_dir is None else data_dir
        for (dname, cls), dseed in zip(DOCK.items(), dock_seeds):
            kw = {} if cls.arrays_free else {"data_dir": folder}
            dev = cls(
                name=dname,
                clock=clock,
                registry=registry,
                seed=dseed,
                noise=noise,
                fault_rate=fault if math.isnan(dock_fault) else dock_fault,
                **kw,
            )
            dev.hang_rate = hang
            if not math.isnan(dock_min):
                dev.time_factor = dock_min * 60.0 / sum(sec for _, sec in dev.STEPS)
            instruments[dname] = dev
        instruments["uvvis"].drift = uvvis_drift
    furnaces = _furnace(options, clock, registry, seed, fault)
    robot = SimTransferRobot(
        name="robot",
        clock=clock,
        registry=registry,
        seed=seeds[1],
        stations={**chambers, **furnaces, "probe": probe, **instruments},
        positions=("load_lock", *names, *furnaces, "probe", *instruments, "storage", "hotel"),
    )
    if not math.isnan(robot_min):
        robot.fixed_move_seconds = robot_min * 60.0
    devices = {
        "robot": robot,
        **chambers,
        **furnaces,
        "probe": probe,
        **instruments,
        **_readers(options, names, registry, seed),
    }
    for dname, dev in devices.items():
        dev.serial = sim_serial(seed, dname)
    return Lab(devices, set(PLACES))


def _furnace(
    options: dict[str, Any], clock: SimClock, registry: SampleRegistry, seed: int, fault: float
) -> dict[str, Any]:
    """With ``furnace_slots: N`` (N >= 1), the anneal furnace ``furnace`` with N slots; its own seed, so the other
    devices' draws stay as they were."""
    slots = _option(options, "furnace_slots", 0.0, 64.0)
    if slots != int(slots):
        raise SpecError(f"lab.options.furnace_slots: {slots:g} is not a whole number", "give 0, 1, 2, 4 ...")
    if not slots:
        return {}
    furnace = SimAnnealFurnace(
        name="furnace",
        capacity=int(slots),
        minutes=_option(options, "furnace_minutes", 1.0, 48 * 60.0),
        clock=clock,
        registry=registry,
        seed=np.random.SeedSequence([int(seed), 13]),
        fault_rate=fault,
    )
    return {"furnace": furnace}


def _readers(options: dict[str, Any], chambers: list[str], registry: SampleRegistry, seed: int) -> dict[str, Any]:
    """With ``barcode: true``, a reader per chamber (``<chamber>_reader``); its own seeds, so the other devices'
    draws stay as they were."""
    barcode = _option(options, "barcode", 0.0, 1.0)
    misread = _option(options, "barcode_misread_rate", 0.0, 1.0)
    swap = _option(options, "barcode_swap_rate", 0.0, 1.0)
    if barcode not in (0.0, 1.0):
        raise SpecError(f"lab.options.barcode: {barcode:g} is neither true nor false", "give true or false")
    if not barcode:
        if misread or swap:
            raise SpecError("lab.options: barcode fault rates need barcode readers", "add barcode: true")
        return {}
    seeds = np.random.SeedSequence([int(seed), 11]).spawn(len(chambers))
    return {
        f"{c}_reader": SimBarcodeReader(
            name=f"{c}_reader", station=c, registry=registry, seed=s, misread_rate=misread, swap_rate=swap
        )
        for c, s in zip(chambers, seeds)
    }


def sim_serial(seed: int, name: str) -> str:
    """A simulated unit's serial number: stable for a lab seed and device name (as a real unit's is)."""
    import hashlib

    return "SIM-" + hashlib.sha256(f"thinfilm:{int(seed)}:{name}".encode()).hexdigest()[:8].upper()


def _lazy_temp_folder() -> Any:
    """A folder made at the first file written (a lab without a store folder or data_dir: tests, validation)."""
    import tempfile
    import threading

    made: list[str] = []
    lock = threading.Lock()

    def folder() -> str:
        with lock:
            if not made:
                made.append(tempfile.mkdtemp(prefix="labloop-dock-data-"))
            return made[0]

    return folder
