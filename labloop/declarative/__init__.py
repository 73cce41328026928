"""Declarative devices: an instrument described in YAML (transport, signals, setpoints, completion rules), built
into an ophyd device that passes the conformance kit like a hand-written driver. See docs/drivers.md."""

from .builder import DeclarativeInstrument, DeclarativeStation, PointSignal, build_class, device
from .schema import InstrumentSpec, load_spec

__all__ = [
    "DeclarativeInstrument",
    "DeclarativeStation",
    "InstrumentSpec",
    "PointSignal",
    "build_class",
    "device",
    "load_spec",
]
