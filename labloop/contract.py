"""The lab-equipment contract, as structural protocols (like ``bluesky.protocols``), not base classes.

A scheduler needs three roles beyond bluesky's Readable/Movable/Triggerable/Stoppable: a station that holds a sample
and runs a recipe, an instrument that measures the sample it holds, a robot that moves a sample between named
positions. Any object with these attributes works, ophyd or ophyd-async; ``labloop_devices.base`` provides ophyd
base classes that implement them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Health:
    """A device's answer to "can you work now?"."""

    ok: bool
    message: str = "ready"


@dataclass(frozen=True)
class Move:
    """A robot move: take ``sample`` from ``source`` to ``destination`` (both named positions)."""

    sample: str
    source: str
    destination: str


@runtime_checkable
class HasLimits(Protocol):
    limits: Mapping[str, tuple[float, float]]


@runtime_checkable
class LabStation(Protocol):
    """Holds a sample (``sample`` signal) and runs a recipe: ``set(recipe) -> Status``."""

    name: str
    sample: Any
    limits: Mapping[str, tuple[float, float]]

    def set(self, recipe: Mapping[str, Any]) -> Any: ...

    def health(self) -> Health: ...


@runtime_checkable
class LabInstrument(Protocol):
    """Measures the sample it holds: ``trigger() -> Status`` then ``read()``."""

    name: str
    sample: Any

    def trigger(self) -> Any: ...

    def read(self) -> Any: ...

    def health(self) -> Health: ...


@runtime_checkable
class LabRobot(Protocol):
    """Moves samples between the named ``positions``: ``set(Move) -> Status``."""

    name: str
    positions: tuple[str, ...]

    def set(self, move: Move) -> Any: ...

    def health(self) -> Health: ...
