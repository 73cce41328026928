"""What ``labloop agent`` serves: the device built from its target and config, and the description a remote proxy
needs to look like it (shape, limits, role, signals, hints).

Kept apart from :mod:`.agent` (the socket loop, heartbeats, workers) because this half only knows the device
contract and the driver's config, and is what an integrator debugging "my driver will not serve" reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labloop import plugins
from labloop.errors import LabloopError

from . import wire

#: Constructor options that configure the agent, not the device.
AGENT_OPTIONS = ("trusted_keys",)


# -- building the device ---------------------------------------------------------------------------------------------
def _built(value: Any) -> Any:
    """Config values may build helper objects: ``{"$call": "module:attr", "args": [...], "kwargs": {...}}`` (e.g. a
    simulator's clock, ``labloop_simulators.clock:SimClock``). Only what the operator's config names is called."""
    if isinstance(value, Mapping) and "$call" in value:
        extra = sorted(set(value) - {"$call", "args", "kwargs"})
        if extra or not isinstance(value["$call"], str):
            raise LabloopError(
                f"config: a '$call' entry takes only '$call', 'args' and 'kwargs' (got {extra})",
                'write {"$call": "module:attr", "args": [...], "kwargs": {...}}',
            )
        fn = plugins.load(value["$call"], "labloop.devices")
        return fn(
            *[_built(a) for a in value.get("args", [])],
            **{k: _built(v) for k, v in dict(value.get("kwargs", {})).items()},
        )
    if isinstance(value, Mapping):
        return {k: _built(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_built(v) for v in value]
    return value


def build_device(target: str, config: Mapping[str, Any], name: str) -> Any:
    """The device ``target`` (``module:attr`` or a ``labloop.devices`` entry point) built with ``config``."""
    factory = plugins.load(target, "labloop.devices")
    kwargs = {k: _built(v) for k, v in config.items() if k not in AGENT_OPTIONS}
    try:
        built = factory(name=name, **kwargs)
    except LabloopError:
        raise
    except TypeError as exc:
        raise LabloopError(
            f"{target}: the driver rejects its config: {exc}",
            "check the config keys against the driver's documented options",
        ) from None
    # A simulated lab's builder (``labloop_simulators.thinfilm.lab:build_lab``) gives many devices: serve ``name``.
    devices = getattr(built, "devices", built)
    if isinstance(devices, Mapping):
        if name not in devices:
            raise LabloopError(
                f"{target} builds devices {sorted(devices)}, none called '{name}'", "pass --name with one of them"
            )
        return devices[name]
    return built


# -- what a client may ask ---------------------------------------------------------------------------------------------
def _signals(dev: Any) -> dict[str, Any]:
    """Top-level ophyd signals of the device by attribute name (sub-devices are not served)."""
    out = {}
    for attr in getattr(dev, "component_names", ()) or ():
        sig = getattr(dev, attr, None)
        if (
            sig is not None
            and callable(getattr(sig, "get", None))
            and callable(getattr(sig, "read", None))
            and not getattr(sig, "component_names", None)
        ):
            out[attr] = sig
    return out


def _jsonable(value: Any) -> Any:
    """``value`` if it survives the wire (JSON), else None: hints may hold callables that stay on this side."""
    try:
        wire.encode({"x": value})
    except (TypeError, ValueError):
        return None
    return value


def _protocols(dev: Any) -> list[str]:
    from bluesky import protocols as bp

    pairs = (
        ("Readable", bp.Readable),
        ("Movable", bp.Movable),
        ("Triggerable", bp.Triggerable),
        ("Stoppable", bp.Stoppable),
        ("Configurable", bp.Configurable),
    )
    return [n for n, p in pairs if isinstance(dev, p)]


def describe_device(dev: Any, boot: str) -> dict[str, Any]:
    """What a proxy needs to look like the device: its shape, limits, role, signals and hints."""
    hints_fn = getattr(dev, "conformance_hints", None)
    hints = dict(hints_fn()) if callable(hints_fn) else {}
    sent = {k: v for k, v in hints.items() if k != "prepare" and _jsonable(v) is not None}
    limits = getattr(dev, "limits", None)
    transports = getattr(dev, "transports", None)
    return {
        "name": dev.name,
        "boot": boot,
        "class": f"{type(dev).__module__}.{type(dev).__qualname__}",
        "protocols": _protocols(dev),
        "role": getattr(dev, "role", None),
        "limits": {k: [float(lo), float(hi)] for k, (lo, hi) in dict(limits).items()}
        if isinstance(limits, Mapping)
        else None,
        "positions": list(getattr(dev, "positions", ()) or ()),
        "process_signals": list(getattr(dev, "process_signals", ()) or ()),
        "default_timeout": getattr(dev, "default_timeout", None),
        "serial": _jsonable(getattr(dev, "serial", None)),
        "hints": _jsonable(getattr(dev, "hints", None)),
        "signals": {
            attr: {"name": sig.name, "kind": int(getattr(sig, "kind", 0))} for attr, sig in _signals(dev).items()
        },
        "health": callable(getattr(dev, "health", None)),
        "conformance": sent,
        "prepare": callable(hints.get("prepare")),
        "transports": [
            float(t.timeout)
            for t in (transports() if callable(transports) else [])
            if isinstance(getattr(t, "timeout", None), (int, float))
        ],
        "heartbeat": wire.HEARTBEAT_S,
    }
