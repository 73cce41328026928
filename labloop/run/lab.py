"""The lab a campaign runs in: named ophyd devices, built from a simulator and/or real drivers.

Core never imports a simulator or a driver: both are plugins (``labloop.simulators`` / ``labloop.devices`` entry
points or ``module:attr``). A simulator plugin is a callable ``build(options: dict, time_scale: float, seed: int)
-> dict[str, Device]``; a driver plugin is a device class (or factory) called with ``name=`` and its config.

A simulator that keeps its physical world across restarts may also accept ``state_dir`` (the folder to keep it in:
beside the store, see :func:`state_dir_for`) and ``name`` (the campaign's name); they are passed only to a factory
that declares them.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labloop import plugins
from labloop.errors import SpecError
from labloop.spec import (
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
    #: devices that are real (a driver, or a remote device served by an agent), not simulated: their times
    #: (timeouts, retry backoffs) are real seconds, never divided by the simulator's ``time_scale``
    real: set[str] = field(default_factory=set)

    def time_scale(self, device: str | None, scale: float) -> float:
        """How much faster than real time ``device``'s times run: ``scale`` for a simulated device, 1 for a real
        one (a remote instrument's 10 s backoff stays 10 s, so a retry can wait for its agent to come back)."""
        return 1.0 if device in self.real else scale

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

    def locate(self, sample: str) -> str | None:
        """Where the lab itself says ``sample`` is; None when no device can tell.

        Devices that track samples answer first (``locate(sample)``: a robot that tracks what it carries, a barcode
        reader); then the sensors: a station or instrument whose ``sample`` signal reads ``sample`` holds it, a
        robot whose ``holding`` signal reads it has it in its gripper (the answer is the robot's name), a station with
        slots whose ``samples`` list names it holds it."""
        for dev in self.devices.values():
            fn = getattr(dev, "locate", None)
            if callable(fn):
                try:
                    where = fn(sample)
                except Exception:  # noqa: BLE001 - a device that cannot answer just does not know
                    where = None
                if where:
                    return str(where)
        for name, dev in self.devices.items():
            for sensor in ("sample", "holding"):
                if sample and _reads(getattr(dev, sensor, None)) == sample:
                    return name
            slots = _reads(getattr(dev, "samples", None))  # a station with slots (a furnace): one of its samples
            if sample and isinstance(slots, (list, tuple)) and sample in slots:
                return name
        return None

    def program_of(self, device: str, samples: list[str]) -> str | None:
        """Whether station ``device`` runs (``"running"``) or ran (``"done"``) the program a client started for
        exactly ``samples`` (a station with ``program_of``: a furnace's controller that latches its client's tag);
        None when it cannot say or did not. Resume reattaches a step cut by a crash when it says so."""
        fn = getattr(self.devices.get(device), "program_of", None)
        if not callable(fn):
            return None
        try:
            state = fn(list(samples))
        except Exception:  # noqa: BLE001 - a station that cannot answer did not say it runs the program
            return None
        return str(state) if state in ("running", "done") else None

    def stop_all(self, timeout: float = 2.0) -> list[tuple[str, str]]:
        """Emergency stop: ask every device that can stop to stop now, all at once (one short-lived thread each),
        so a device whose ``stop()`` is slow or hangs delays no other. Returns the devices whose ``stop()`` raised
        or did not return within ``timeout`` seconds, with why: the caller must alert and audit them (never
        swallowed)."""
        results: dict[str, str | None] = {}

        def call(name: str, stop: Any) -> None:
            try:
                stop()
                results[name] = None
            except Exception as exc:  # noqa: BLE001 - one stubborn device must not keep the others running
                results[name] = f"{type(exc).__name__}: {exc}"

        threads = []
        for name, dev in self.devices.items():
            stop = getattr(dev, "stop", None)
            if callable(stop):
                th = threading.Thread(target=call, args=(name, stop), name=f"estop-{name}", daemon=True)
                th.start()
                threads.append((name, th))
        deadline = time.monotonic() + timeout
        for _, th in threads:
            th.join(max(0.0, deadline - time.monotonic()))
        failures = [(name, error) for name, error in results.items() if error is not None]
        failures += [(name, f"stop() did not return within {timeout:g} s") for name, th in threads if th.is_alive()]
        return failures


def _reads(signal: Any) -> Any:
    """A sensor's current value (a synchronous ophyd signal); None when it cannot be read without waiting."""
    get = getattr(signal, "get", None)
    if not callable(get):
        return None
    try:
        value = get()
    except Exception:  # noqa: BLE001 - a sensor that cannot answer just does not know
        return None
    return None if inspect.isawaitable(value) else value


def state_dir_for(store_url: str | None) -> str | None:
    """Where a simulated lab keeps its physical world by default: the folder of a SQLite store file, the current
    working directory for a server store, None for an in-memory store (nothing outlives the process there)."""
    if not store_url:
        return None
    from labloop.errors import LabloopError
    from labloop.store.connection import normalize_url, sqlite_path

    try:
        path = sqlite_path(normalize_url(store_url), store_url)  # understands file: URIs (mode=ro, ...)
    except LabloopError:  # a malformed or in-memory URL: the store itself reports it
        return None
    if path is None:
        return os.getcwd()
    return str(path.parent)


def _accepted(factory: Any, **extra: Any) -> dict[str, Any]:
    """The keyword arguments of ``extra`` that ``factory`` declares (all of them if it takes ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return extra
    return {k: v for k, v in extra.items() if k in params}


def with_files_from(spec: LabSpec, source: str) -> LabSpec:
    """``lab.devices.NAME.file`` relative paths resolved from the folder of the campaign file ``source``."""
    folder = os.path.dirname(os.path.abspath(source)) if os.path.exists(source) else os.getcwd()
    devices = {
        n: d.model_copy(update={"file": os.path.join(folder, d.file)})
        if d.file is not None and not os.path.isabs(d.file)
        else d
        for n, d in spec.devices.items()
    }
    return spec.model_copy(update={"devices": devices})


#: Connects a remote lab device: ``(name, device spec, store url) -> proxy``. Given by the caller (the CLI, the
#: daemon's campaign child: :func:`labloop.control.remote_lab.remote_device`): the network layer sits above ``run``.
RemoteConnector = Callable[[str, Any, "str | None"], Any]


def build_lab(
    spec: LabSpec,
    seed: int = 0,
    state_dir: str | None = None,
    name: str | None = None,
    store_url: str | None = None,
    remote: RemoteConnector | None = None,
) -> Lab:
    """Instantiate the lab's devices (simulated and real). Constructors must not block on hardware.

    ``state_dir`` and ``name`` go to a simulator that declares them: it keeps its physical world in that folder
    (beside the store), in a file named after ``name`` (the campaign), unless its options say otherwise. A remote
    device (``remote: ADDR``) is a proxy connected to its agent now by ``remote`` (``store_url``: where its key is
    looked up); without ``remote`` a lab with remote devices is refused."""
    devices: dict[str, Any] = {}
    places: set[str] = set()
    entry: str | None = None
    if spec.simulator:
        factory = plugins.load(spec.simulator, "labloop.simulators")
        extra = _accepted(factory, state_dir=state_dir, name=name) if state_dir is not None else {}
        built = factory(options=dict(spec.options), time_scale=spec.time_scale, seed=seed, **extra)
        if isinstance(built, Lab):
            devices.update(built.devices)
            places |= built.places
            entry = built.entry
        else:
            devices.update(built)
    for name, dspec in spec.devices.items():
        if dspec.remote is not None:
            if remote is None:
                raise SpecError(
                    f"lab.devices.{name} is remote ({dspec.remote}), but this process cannot reach remote devices",
                    "run the campaign with `labloop run` or on a daemon "
                    "(`labloop submit`), which connect remote devices",
                )
            devices[name] = remote(name, dspec, store_url)
            continue
        if dspec.file is not None or dspec.spec is not None:  # an instrument described in YAML
            from labloop.declarative import device

            described = {"file": dspec.file} if dspec.file is not None else {"spec": dspec.spec}
            devices[name] = device(name, **described, **dspec.config)
            continue
        cls = plugins.load(dspec.driver or "", "labloop.devices")
        try:
            devices[name] = cls(name=name, **dspec.config)
        except TypeError as exc:
            raise SpecError(
                f"lab.devices.{name}: the driver rejects its config: {exc}", "check the driver's documented options"
            ) from None
    return Lab(devices, places, entry, real=set(spec.devices))


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


def station_kinds(spec: CampaignSpec, lab: Lab) -> dict[str, list[str]]:
    """Station kind -> interchangeable devices: the lab section's ``stations``, plus every device as its own kind."""
    kinds: dict[str, list[str]] = {name: [name] for name in lab.devices}
    if spec.lab is not None:
        for kind, devices in spec.lab.stations.items():
            kinds[kind] = list(devices)
    return kinds


def check_against_lab(spec: CampaignSpec, lab: Lab, source: str) -> None:
    """Check the workflow and parameter bounds against what the lab's devices declare, before anything moves:
    unknown devices or station kinds, unreachable positions, a workflow that revisits a station kind (a cycle that
    can deadlock a full lab), contradictory policies, and bounds outside device limits."""
    problems: list[str] = []
    kinds = station_kinds(spec, lab)
    if spec.lab is not None:
        for kind, devices in spec.lab.stations.items():
            for d in devices:
                if d not in lab.devices:
                    problems.append(
                        f"{source}: lab.stations.{kind}: the lab has no device '{d}' (it has {sorted(lab.devices)})"
                    )
    if spec.lab is not None:
        # a batch station puts several samples into one device: the device must say which it holds (a `samples`
        # list), or the walk's moves and a resume could not tell the batch's samples apart
        targets = setpoint_targets(spec)
        for kind, batch in spec.lab.batching.items():
            if batch.capacity <= 1:
                continue
            unshared = sorted(n for n, (dev, _) in targets.items() if dev == kind and n not in batch.batch_key)
            if unshared:  # one firing has one recipe: a field the members may differ in would take the leader's
                problems.append(
                    f"{source}: lab.batching.{kind}: parameters {unshared} are sent to '{kind}' but are not in its "
                    "batch_key (one run of the station has one recipe for every sample); add them to batch_key"
                )
            for d in kinds.get(kind, []):
                if d in lab.devices and not hasattr(lab.devices[d], "samples"):
                    problems.append(
                        f"{source}: lab.batching.{kind}: capacity {batch.capacity}, but device '{d}' holds one "
                        "sample at a time (it has no `samples` signal); set capacity: 1, or use a station with "
                        "slots"
                    )
    if spec.lab is not None:
        robots = {s.robot for s in spec.workflow if s.kind == "transfer"}
        for i, place in enumerate(spec.lab.buffers):
            for r in sorted(robots):
                reach = tuple(getattr(lab.devices.get(r), "positions", ()))
                if place not in reach:
                    problems.append(
                        f"{source}: lab.buffers[{i}]: robot '{r}' cannot reach '{place}' (reaches {list(reach)})"
                    )
    if spec.lab is not None:
        for i, sus in enumerate(spec.lab.suspenders):
            dev, _, comp = sus.signal.partition(".")
            if dev not in lab.devices:
                problems.append(f"{source}: lab.suspenders[{i}].signal: the lab has no device '{dev}'")
            elif not hasattr(getattr(lab.devices[dev], comp, None), "subscribe"):
                problems.append(
                    f"{source}: lab.suspenders[{i}].signal: device '{dev}' has no signal '{comp}' "
                    f"(fix: name a component signal, e.g. '{dev}.{_first_signal(lab.devices[dev])}')"
                )
    if spec.lab is not None:
        for dname in spec.lab.calibration:
            cal_dev = lab.devices.get(dname)
            if cal_dev is None or not (hasattr(cal_dev, "calibrator") and hasattr(cal_dev, "calibration")):
                able = sorted(n for n, d in lab.devices.items() if hasattr(d, "calibrator"))
                what = "has no device" if cal_dev is None else "cannot calibrate device"
                problems.append(
                    f"{source}: lab.calibration.{dname}: the lab {what} '{dname}' (fix: name a device "
                    f"that calibrates: {able or 'none'})"
                )
    if spec.lab is not None and spec.lab.identity is not None:
        for station, reader in spec.lab.identity.readers.items():
            dev, _, signal = reader.partition(".")
            where = f"{source}: lab.identity.readers.{station}"
            if station not in lab.devices:
                problems.append(f"{where}: the lab has no station '{station}' (it has {sorted(lab.devices)})")
            if dev not in lab.devices:
                problems.append(
                    f"{where}: the reader '{dev}' is not a device of the lab (it has {sorted(lab.devices)})"
                )
            elif not hasattr(getattr(lab.devices[dev], signal or "code", None), "get"):
                problems.append(f"{where}: device '{dev}' has no signal '{signal or 'code'}' holding the code read")
    visits: list[tuple[frozenset[str], int]] = []
    current: frozenset[str] = frozenset()
    for i, step in enumerate(spec.workflow):
        target = step.to if step.kind == "transfer" else step.device
        where = "to" if step.kind == "transfer" else "device"
        if step.kind != "transfer" and target not in kinds:
            problems.append(
                f"{source}: workflow[{i}].device: the lab has no device or station kind '{target}' "
                f"(devices: {sorted(lab.devices)}; kinds: {sorted(spec.lab.stations) if spec.lab else []})"
            )
            continue
        if step.kind == "transfer":
            robot = lab.devices.get(step.robot)
            if robot is None:
                problems.append(f"{source}: workflow[{i}].robot: the lab has no device '{step.robot}'")
                continue
            reach = tuple(getattr(robot, "positions", ()))
            for pos in kinds.get(target or "", [target]):
                if pos not in reach:
                    problems.append(
                        f"{source}: workflow[{i}].to: robot '{step.robot}' cannot reach '{pos}' "
                        f"(reaches {list(reach)}) (fix: teach the position or change the workflow)"
                    )
        if target in kinds:  # a visit to a station group (places, such as storage, never cycle)
            group = frozenset(kinds[target])
            if group != current:
                earlier = next((j for g, j in visits if g & group), None)
                if earlier is not None:
                    problems.append(
                        f"{source}: workflow[{i}].{where}: the workflow returns to '{target}' (already "
                        f"used at step {earlier}): a cycle can deadlock a full lab (fix: use another "
                        f"station kind for the second visit)"
                    )
                visits.append((group, i))
                current = group
        if step.retries and step.retries + 1 >= spec.scheduling.quarantine_after and step.kind != "transfer":
            problems.append(
                f"{source}: workflow[{i}].retries ({step.retries}) + 1 attempt must stay below "
                f"scheduling.quarantine_after ({spec.scheduling.quarantine_after}): otherwise one bad "
                f"sample's attempts take the station out of service"
            )
    if spec.scheduling.mode == "batch" and spec.strategy.batch_size < 2:
        problems.append(
            f"{source}: scheduling.mode is 'batch' but strategy.batch_size is "
            f"{spec.strategy.batch_size} (fix: set batch_size to the batch you want, or use 'sequential')"
        )
    bounds = _parameter_bounds(spec)
    index = {n: i for i, n in enumerate(p.name for p in spec.parameters)}
    for pname, (dev, fld) in setpoint_targets(spec).items():
        where = f"{source}: parameters[{index.get(pname, '?')}]"
        members = kinds.get(dev)
        if not members:
            problems.append(f"{where}.setpoint: the lab has no device '{dev}'")
            continue
        for dname in members:
            device = lab.devices.get(dname)
            if device is None:
                continue
            limits = getattr(device, "limits", {}) or {}
            if fld not in limits:
                problems.append(f"{where}: device '{dname}' has no setpoint '{fld}' (it has {sorted(limits)})")
                continue
            b = bounds.get(pname)
            lo, hi = limits[fld]
            if b is not None and (b[0] < lo or b[1] > hi):
                problems.append(
                    f"{where}: bounds [{b[0]:g}, {b[1]:g}] of '{pname}' exceed the limits of {dname}.{fld} "
                    f"[{lo:g}, {hi:g}] (fix: keep the bounds within the device limits)"
                )
    if problems:
        raise SpecError("\n".join(problems))


def _first_signal(device: Any) -> str:
    names = getattr(device, "component_names", ()) or ("<signal>",)
    return names[0]
