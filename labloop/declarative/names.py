"""Names a described instrument's signals may not take: attributes of the device class the builder makes (read,
stop, set, ...), its own fields, and names bluesky looks up on any device (``position``: a signal called so would
make bluesky take the device for a positioner and crash inside ophyd instead of failing the description)."""

from __future__ import annotations

from labloop.device_base import Instrument, Station

#: looked up by bluesky's plans and callbacks on any object, whatever its class
BLUESKY_NAMES = {
    "position",
    "hints",
    "read_configuration",
    "describe_configuration",
    "kickoff",
    "complete",
    "collect",
    "pause",
    "resume",
    "check_value",
    "locate",
}


def reserved_names(role: str) -> set[str]:
    base = Station if role == "station" else Instrument
    return {n for n in dir(base) if not n.startswith("__")} | {"transport", "spec", "model"} | BLUESKY_NAMES
