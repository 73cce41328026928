"""Provenance of a run: which software, which devices (driver, version, serial, calibration), where and for whom.

The executor puts :func:`for_run`'s dict under ``provenance`` in every run's start document, so every reading and
every asset (which reference their run) carry it. Layout (``schema`` 1)::

    {"schema": 1, "labloop_version": "0.1.0", "spec_hash": "<sha256 of the campaign file>", "user": "alice",
     "host": "lab-pc", "process": "lab-pc:4242",
     "devices": {"robot": {"role": "robot", "driver": "pkg.module.Class", "driver_module": "pkg.module",
                           "driver_class": "Class", "driver_version": "1.2.0", "serial": "SIM-1A2B3C4D",
                           "calibration": null, "calibration_age_s": null}, ...}}

``calibration`` is what the device's ``calibration`` attribute says is in force (a dict with at least ``id`` and
``at``, an ISO 8601 time; None for a device that does not calibrate) and ``calibration_age_s`` its age when the
run started. What never changes for a device (driver, version, serial) is computed once per device; the campaign's
part (user, spec hash, host, process) once per campaign and process: a step pays no store query for it.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import socket
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from labloop import __version__
from labloop.errors import LabloopError

SCHEMA = 1


@dataclass(frozen=True)
class Origin:
    """What every run of one campaign run by this process shares."""

    campaign_uid: str
    spec_hash: str
    user: str
    labloop_version: str = __version__
    host: str = ""
    process: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "labloop_version": self.labloop_version,
            "spec_hash": self.spec_hash,
            "user": self.user,
            "host": self.host,
            "process": self.process,
        }


_origins: dict[str, Origin] = {}
_lock = threading.Lock()


def submitter(audit: list[Any]) -> str:
    """The user who submitted the campaign: the ``user`` of its ``campaign.start`` audit entry."""
    for entry in audit:
        if entry.action == "campaign.start":
            return str(entry.user)
    return "unknown"


def register(campaign_uid: str, spec_hash: str, user: str) -> Origin:
    """Note a campaign's origin for this process (done once, when a campaign starts or resumes)."""
    host = socket.gethostname()
    origin = Origin(campaign_uid, spec_hash, user, __version__, host, f"{host}:{os.getpid()}")
    with _lock:
        _origins[campaign_uid] = origin
    return origin


def origin(store: Any, campaign_uid: str, campaign_id: int) -> Origin:
    """The registered origin of a campaign; read from the store (once per process) when nobody registered it."""
    with _lock:
        found = _origins.get(campaign_uid)
    if found is not None:
        return found
    try:
        c = store.campaign(campaign_id)
        spec_hash, user = c.spec_hash, submitter(store.audit_log(campaign_id))
    except LabloopError:  # no such campaign in this store (a bare executor): the runs still say what they can
        spec_hash, user = "unknown", "unknown"
    return register(campaign_uid, spec_hash, user)


@cache
def _distributions() -> dict[str, list[str]]:
    try:
        return dict(md.packages_distributions())
    except Exception:  # noqa: BLE001 - broken metadata of some unrelated package
        return {}


@cache
def driver_version(module: str) -> str:
    """The version of the distribution that provides ``module``; else a ``__version__`` of the module or one of
    its parent packages; else "unknown"."""
    top = module.split(".")[0]
    for dist in _distributions().get(top, []):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        mod = sys.modules.get(".".join(parts[:i]))
        v = getattr(mod, "__version__", None)
        if isinstance(v, str) and v:
            return v
    return "unknown"


def device_static(name: str, dev: Any, role: str) -> dict[str, Any]:
    """What does not change while a device is in the lab: its driver, the driver's version, its serial."""
    cls = type(dev)
    serial = getattr(dev, "serial", None)
    if serial is None:
        serial = getattr(dev, "device_id", None)
    return {
        "role": role,
        "driver": f"{cls.__module__}.{cls.__qualname__}",
        "driver_module": cls.__module__,
        "driver_class": cls.__qualname__,
        "driver_version": driver_version(cls.__module__),
        "serial": None if serial is None else str(serial),
    }


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, str):
        try:
            t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    else:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def calibration(dev: Any, now: datetime) -> tuple[dict[str, Any] | None, float | None]:
    """The calibration in force (a copy of the device's ``calibration`` dict) and its age in seconds at ``now``, in
    the lab's time: the device's own ``calibration_age()`` when it keeps a clock (simulated seconds for a simulator:
    a reading two simulated hours after its calibration is two hours old, not the 0.4 wall seconds it took at
    time_scale 20000), else wall-clock seconds since ``at``."""
    try:
        cal = getattr(dev, "calibration", None)
        if callable(cal):
            cal = cal()
    except Exception as exc:  # noqa: BLE001 - a driver that cannot tell: recorded as such, the run goes on
        return {"error": f"{type(exc).__name__}: {exc}"}, None
    if cal is None:
        return None, None
    if not isinstance(cal, dict):
        return {"id": str(cal)}, None
    cal = dict(cal)
    at = _parse_time(cal.get("at"))
    if isinstance(cal.get("at"), datetime):
        cal["at"] = cal["at"].isoformat()
    clock = getattr(dev, "calibration_age", None)  # the lab's time: a device that keeps a clock tells the age
    if callable(clock):
        try:
            return cal, round(float(clock()), 3)
        except Exception:  # noqa: BLE001 - a driver that cannot tell: wall-clock time since 'at' below
            pass
    return cal, (round((now - at).total_seconds(), 3) if at is not None else None)


class Recorder:
    """Builds a run's provenance for one executor; caches each device's static part."""

    def __init__(self) -> None:
        self._static: dict[tuple[str, int, str], dict[str, Any]] = {}

    def for_run(
        self, origin: Origin, devices: list[tuple[str, Any, str]], now: datetime | None = None
    ) -> dict[str, Any]:
        """``devices``: ``(name, device, role)`` of every device the run uses."""
        now = now or datetime.now(UTC)
        out = origin.as_dict()
        entries: dict[str, Any] = {}
        for name, dev, role in devices:
            if dev is None or name in entries:
                continue
            key = (name, id(dev), role)
            static = self._static.get(key)
            if static is None:
                static = self._static[key] = device_static(name, dev, role)
            cal, age = calibration(dev, now)
            entries[name] = {**static, "calibration": cal, "calibration_age_s": age}
        out["devices"] = entries
        return out
