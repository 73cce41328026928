"""The lab a campaign runs in: named ophyd devices, built from a simulator and/or real drivers.

Core never imports a simulator or a driver: both are plugins (``labloop.simulators`` / ``labloop.devices`` entry
points or ``module:attr``). A simulator plugin is a callable ``build(options: dict, time_scale: float, seed: int)
-> dict[str, Device]``; a driver plugin is a device class (or factory) called with ``name=`` and its config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import plugins
from .errors import SpecError
from .spec import (
    CampaignSpec,
    CategoricalParameter,
    CompositionParameter,
    ContinuousParameter,
    DiscreteParameter,
    FixedParameter,
    IntegerParameter,
    LabSpec,
)


@dataclass
class Lab:
    """The devices of a lab by name. ``places`` are extra robot positions that are not devices (racks, load lock)."""

    devices: dict[str, Any]
    places: set[str] = field(default_factory=set)
    entry: str | None = None  # where new samples appear; default 'load_lock' if it is a place

    @property
    def sample_entry(self) -> str:
        if self.entry:
            return self.entry
        if "load_lock" in self.places:
            return "load_lock"
        return sorted(self.places)[0] if self.places else "load_lock"

    def __getitem__(self, name: str) -> Any:
        try:
            return self.devices[name]
        except KeyError:
            raise SpecError(
                f"the lab has no device '{name}' (it has {sorted(self.devices)})",
                "name a device of the lab in the workflow",
            ) from None

    def stop_all(self) -> None:
        """Emergency stop: ask every device that can stop to stop now."""
        for dev in self.devices.values():
            stop = getattr(dev, "stop", None)
            if callable(stop):
                try:
                    stop()
                except Exception:  # noqa: BLE001 - one stubborn device must not keep the others running
                    pass


def build_lab(spec: LabSpec, seed: int = 0) -> Lab:
    """Instantiate the lab's devices (simulated and real). Constructors must not block on hardware."""
    devices: dict[str, Any] = {}
    places: set[str] = set()
    entry: str | None = None
    if spec.simulator:
        factory = plugins.load(spec.simulator, "labloop.simulators")
        built = factory(options=dict(spec.options), time_scale=spec.time_scale, seed=seed)
        if isinstance(built, Lab):
            devices.update(built.devices)
            places |= built.places
            entry = built.entry
        else:
            devices.update(built)
    for name, dspec in spec.devices.items():
        cls = plugins.load(dspec.driver, "labloop.devices")
        try:
            devices[name] = cls(name=name, **dspec.config)
        except TypeError as exc:
            raise SpecError(f"lab.devices.{name}: the driver rejects its config: {exc}",
                            "check the driver's documented options") from None
    return Lab(devices, places, entry)


def _parameter_bounds(spec: CampaignSpec) -> Mapping[str, tuple[float, float] | None]:
    out: dict[str, tuple[float, float] | None] = {}
    for p in spec.parameters:
        if isinstance(p, (ContinuousParameter, IntegerParameter)):
            out[p.name] = (float(p.lower), float(p.upper))
        elif isinstance(p, DiscreteParameter):
            out[p.name] = (min(p.values), max(p.values))
        elif isinstance(p, FixedParameter):
            out[p.name] = (float(p.value), float(p.value)) if isinstance(p.value, (int, float)) else None
        elif isinstance(p, CompositionParameter):
            for c in p.components:
                out[c] = (0.0, p.total)
        elif isinstance(p, CategoricalParameter):
            out[p.name] = None
    return out


def setpoint_targets(spec: CampaignSpec) -> dict[str, tuple[str, str]]:
    """Parameter name -> (device, field) it is sent to (default: the first synthesis step's device, same name)."""
    synth = next((s.device for s in spec.workflow if s.kind == "synthesize"), None)
    targets: dict[str, tuple[str, str]] = {}
    for p in spec.parameters:
        names = p.components if isinstance(p, CompositionParameter) else [p.name]
        for n in names:
            if p.setpoint:
                dev, _, fld = p.setpoint.partition(".")
                targets[n] = (dev, fld or n)
            elif synth:
                targets[n] = (synth, n)
    return targets


def check_against_lab(spec: CampaignSpec, lab: Lab, source: str) -> None:
    """Check the workflow and parameter bounds against what the lab's devices declare, before anything moves."""
    problems: list[str] = []
    for i, step in enumerate(spec.workflow):
        for attr in ("device", "robot") if step.kind == "transfer" else ("device",):
            name = getattr(step, attr)
            if name and name not in lab.devices:
                problems.append(f"{source}: workflow[{i}].{attr}: the lab has no device '{name}' "
                                f"(it has {sorted(lab.devices)})")
        if step.kind == "transfer" and step.robot in lab.devices:
            reach = tuple(getattr(lab.devices[step.robot], "positions", ()))
            if step.to not in reach:
                problems.append(f"{source}: workflow[{i}].to: robot '{step.robot}' cannot reach '{step.to}' "
                                f"(reaches {list(reach)})")
    bounds = _parameter_bounds(spec)
    index = {n: i for i, n in enumerate(p.name for p in spec.parameters)}
    for pname, (dev, fld) in setpoint_targets(spec).items():
        where = f"{source}: parameters[{index.get(pname, '?')}]"
        device = lab.devices.get(dev)
        if device is None:
            problems.append(f"{where}.setpoint: the lab has no device '{dev}'")
            continue
        limits = getattr(device, "limits", {}) or {}
        if fld not in limits:
            problems.append(f"{where}: device '{dev}' has no setpoint '{fld}' (it has {sorted(limits)})")
            continue
        b = bounds.get(pname)
        lo, hi = limits[fld]
        if b is not None and (b[0] < lo or b[1] > hi):
            problems.append(
                f"{where}: bounds [{b[0]:g}, {b[1]:g}] of '{pname}' exceed the limits of {dev}.{fld} "
                f"[{lo:g}, {hi:g}] (fix: keep the bounds within the device limits)"
            )
    if problems:
        raise SpecError("\n".join(problems))
