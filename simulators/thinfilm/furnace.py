"""A simulated box furnace with slots: anneals several coated samples at once on one profile (``anneal_c`` for a
fixed time), the batch station of the thin-film lab (``lab.options.furnace_slots``).

Why it exists: a batch station (``lab.batching``, :mod:`labloop.run.batching`) must be tested against a device that
behaves like one. Like a real furnace it heats everything inside it: so it says which samples it holds (the
``samples`` list the robot keeps in step, not the one-sample ``sample`` signal), refuses a recipe whose ``samples``
are not exactly what it holds (firing a crucible nobody asked to fire is a ruined sample, not a detail), and takes
at most ``capacity`` samples (the robot refuses to place one more).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from labloop_devices.base import Station, check_limits
from ophyd import Component as Cpt
from ophyd import Signal

from labloop.errors import DeviceError

from ..clock import SimClock
from ..registry import SampleRegistry
from .devices import Quantity, _Simulated


class SimAnnealFurnace(_Simulated, Station):
    """Up to ``capacity`` samples fired together: ramp to ``anneal_c``, hold ``minutes``, cool; each sample's
    record notes the anneal (``anneal_c``, ``firing``: the batch id the recipe gave)."""

    limits = {"anneal_c": (100.0, 700.0)}
    samples = Cpt(Signal, value=[], kind="config", doc="Ids of the samples in the furnace (one per occupied slot).")
    furnace_temperature = Cpt(Quantity, value=25.0, units="degC", kind="normal", doc="Furnace thermocouple.")
    process_signals = ("furnace_temperature",)

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str,
        capacity: int = 4,
        minutes: float = 60.0,
        clock: SimClock | None = None,
        registry: SampleRegistry | None = None,
        seed: int | np.random.SeedSequence | None = None,
        fault_rate: float = 0.0,
        **kwargs: Any,
    ):
        super().__init__(prefix, name=name, **kwargs)
        self._sim_setup(clock, registry, fault_rate, seed)
        self.capacity = int(capacity)
        self.minutes = float(minutes)
        self.firings: list[dict[str, Any]] = []  # every recipe it ran: what a test counts

    def set(self, recipe: Mapping[str, Any]) -> Any:
        """Refuse a recipe that is out of limits or does not name exactly the samples inside (nothing heats)."""
        if not isinstance(recipe, Mapping) or "anneal_c" not in recipe:
            raise DeviceError(f"{self.name}: recipe lacks anneal_c", "send {anneal_c: <degC>, samples: [...]}")
        check_limits(self.limits, {k: v for k, v in recipe.items() if k not in ("samples", "batch")}, self.name)
        inside = list(self.samples.get() or [])
        if not inside:
            raise DeviceError(f"{self.name}: no sample loaded", "transfer samples into the furnace first")
        told = list(recipe.get("samples", inside))
        if sorted(told) != sorted(inside):
            raise DeviceError(
                f"{self.name}: holds {sorted(inside)} but the recipe fires {sorted(told)}",
                "take out the samples that are not part of this firing, or fire them together",
            )
        self._claim("a firing")
        recipe = dict(recipe)
        try:
            return self._run_status(lambda: self.run_recipe(recipe))
        except BaseException:
            self._release()
            raise

    def run_recipe(self, recipe: dict[str, Any]) -> None:
        try:
            self._fire(recipe)
        finally:
            self._release()

    def _fire(self, recipe: dict[str, Any]) -> None:
        inside = list(self.samples.get() or [])
        self.firings.append({**recipe, "samples": inside})
        peak = float(recipe["anneal_c"])
        self.furnace_temperature.put(peak)
        self._wait(self.minutes * 60.0, f"annealing {inside} at {peak:g} degC")
        self.furnace_temperature.put(25.0)
        if self._draw_fault():
            raise DeviceError(
                f"{self.name}: thermocouple open circuit during the hold; {inside} were not annealed as asked",
                "the samples are consumed: run the trials again; replace the thermocouple if it repeats",
            )
        for s in inside:
            if self.registry.get(s) is not None:
                self.registry.update(s, f"annealed at {peak:g} degC", anneal_c=peak, firing=recipe.get("batch"))

    def conformance_hints(self) -> dict[str, Any]:
        """For labloop's driver conformance kit: a short firing of one sample put in by hand."""

        def prepare(dev: SimAnnealFurnace) -> None:
            dev.samples.put(["conformance-sample"])

        return {"setpoint": {"anneal_c": 300.0}, "prepare": prepare}
