"""The simulated thin-film lab: a transfer robot, a sputter chamber and a four-point probe sharing one clock.

Registered as the ``thinfilm`` entry point of ``labloop.simulators``; a campaign file selects it with
``lab: {simulator: thinfilm, time_scale: 20000, options: {...}}``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from labloop.errors import SpecError
from labloop.run.lab import Lab

from ..clock import SimClock
from ..registry import SampleRegistry
from .devices import SimFourPointProbe, SimSputterChamber, SimTransferRobot

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
    "hang_rate": (0.0, "probability that a recipe or measurement hangs (never finishes) instead of failing"),
    "dead_after": (math.nan, "the first chamber dies (every recipe fails) after this many recipes"),
}
#: Options that are not numbers.
TEXT_OPTIONS = {"state_file": "file that keeps the simulated world (sample locations, films) across restarts"}

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
        raise SpecError(f"lab.options.{key}: {v:g} is outside [{lo:g}, {hi:g}{')' if hi_open else ']'}",
                        f"give {OPTIONS[key][1]}")
    return v


def build_lab(options: dict[str, Any] | None = None, time_scale: float = 1.0, seed: int = 0) -> Lab:
    """Devices ``robot``, one or more sputter chambers (``chamber``, or ``chamber1..N``), ``probe``, and places
    ``load_lock`` (fresh substrates) and ``storage``.

    ``seed`` makes noise and faults reproducible (each device draws from its own stream of it).
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS) - set(TEXT_OPTIONS))
    if unknown:
        known = ", ".join(f"{k} ({d})" for k, (_, d) in {**OPTIONS, **{k: (None, v) for k, v in TEXT_OPTIONS.items()}}.items())
        raise SpecError(f"lab.options: the thinfilm simulator has no option {unknown}",
                        f"use only known options: {known}")
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
    state_file = options.get("state_file")
    if state_file is not None and not isinstance(state_file, str):
        raise SpecError(f"lab.options.state_file: {state_file!r} is not a path", "give a file path as text")
    try:
        clock = SimClock(time_scale)
    except Exception as exc:  # noqa: BLE001 - reported as a campaign-file problem
        raise SpecError(f"lab.time_scale: {exc}", "give a positive number") from None

    n = int(n_chambers)
    names = ["chamber"] if n == 1 else [f"chamber{i}" for i in range(1, n + 1)]
    seeds = np.random.SeedSequence(int(seed)).spawn(2 + n)
    registry = SampleRegistry(supply="load_lock", state_file=state_file)
    chambers = {}
    for i, name in enumerate(names):
        ch = SimSputterChamber(name=name, clock=clock, registry=registry, seed=seeds[2 + i],
                               fault_rate=fault if math.isnan(chamber_fault) else chamber_fault,
                               update_interval=interval)
        ch.hang_rate = hang
        if not math.isnan(chamber_min):
            ch.fixed_seconds = chamber_min * 60.0
        if i == 0 and not math.isnan(dead_after):
            ch.dead_after = int(dead_after)
        chambers[name] = ch
    probe = SimFourPointProbe(name="probe", clock=clock, registry=registry, seed=seeds[0], noise=noise,
                              fault_rate=fault if math.isnan(probe_fault) else probe_fault)
    probe.hang_rate = hang
    if not math.isnan(probe_min):
        probe.time_factor = probe_min * 60.0 / sum(sec for _, sec in probe.STEPS)
    robot = SimTransferRobot(name="robot", clock=clock, registry=registry, seed=seeds[1],
                             stations={**chambers, "probe": probe},
                             positions=("load_lock", *names, "probe", "storage", "hotel"))
    if not math.isnan(robot_min):
        robot.fixed_move_seconds = robot_min * 60.0
    return Lab({"robot": robot, **chambers, "probe": probe}, set(PLACES))
