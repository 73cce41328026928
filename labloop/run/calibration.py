"""Device calibration: run a device's calibration plan, check the result, record it (table ``calibrations`` and
the audit log).

A device calibrates when it has a ``calibrator`` (``set(reference) -> Status``, read for the fitted result: see
:func:`labloop.run.plans.calibrate`) and a ``calibration`` dict (id, at, reference, result) it puts in force. It may
declare ``calibration_limits`` (``{result key: (low, high)}``); labloop refuses a result with a NaN or infinite
number, or a value outside those limits, before anything is recorded.

Ages are in the lab's time: a device that keeps its own clock tells its calibration's age (``calibration_age()``,
simulated seconds for a simulator); a real device's age is wall-clock time since ``calibration['at']``. ``max_age``,
the ``calibration_age_s`` of every run's provenance and ``labloop show`` use that one age (:func:`age_s`).

A calibration recorded before a run (``labloop calibrate DEVICE --file``, or by an earlier campaign) is put in force
when the run starts if it is still in force (:func:`restore` with the campaign's policies). A simulated lab's clock
only runs while a lab process runs (its simulators restart their drift at switch-on, gain 1), so seconds an
operator spends typing between processes are not lab time: a recorded calibration is as old there as it was when
recorded. A real device's calibration ages in wall-clock time whatever runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bluesky import RunEngine

from labloop.errors import DeviceError, LabloopError
from labloop.run import plans, provenance
from labloop.store.times import utc


def calibratable(dev: Any) -> bool:
    return dev is not None and hasattr(dev, "calibrator") and hasattr(dev, "calibration")


def calibratable_names(lab: Any) -> list[str]:
    return sorted(n for n, d in lab.devices.items() if calibratable(d))


def check_device(lab: Any, name: str) -> Any:
    """The device ``name`` of ``lab``, or a LabloopError saying which devices can be calibrated."""
    dev = lab.devices.get(name)
    if not calibratable(dev):
        known = ", ".join(calibratable_names(lab)) or "none"
        what = "has no device" if dev is None else "cannot calibrate device"
        raise LabloopError(
            f"the lab {what} '{name}' (devices that calibrate: {known})",
            "name a device that calibrates, e.g. `labloop calibrate probe`",
        )
    return dev


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, Mapping):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _numbers(v)]
    return []


def check_result(name: str, dev: Any, cal: Any) -> dict[str, Any]:
    """Refuse a malformed calibration (not a dict with id, at and result; a NaN/inf number; a value outside the
    device's ``calibration_limits``). Returns a copy."""
    fix = "calibrate again; if it repeats, check the reference sample and the instrument"
    if (
        not isinstance(cal, Mapping)
        or not cal.get("id")
        or not cal.get("at")
        or not isinstance(cal.get("result"), Mapping)
    ):
        raise LabloopError(f"{name}: malformed calibration {cal!r}: needs id, at and a result dict", fix)
    result = dict(cal["result"])
    if not result or any(not math.isfinite(x) for x in _numbers(result)):
        raise LabloopError(
            f"{name}: malformed calibration result {result!r}: empty, or a number is NaN or infinite; nothing recorded",
            fix,
        )
    for key, (lo, hi) in dict(getattr(dev, "calibration_limits", {}) or {}).items():
        v = result.get(key)
        if not isinstance(v, (int, float)) or not lo <= float(v) <= hi:
            raise LabloopError(
                f"{name}: calibration result {key}={v!r} is outside [{lo:g}, {hi:g}]; nothing recorded", fix
            )
    return dict(cal)


def age_s(dev: Any) -> float | None:
    """Seconds since the calibration in force, in the device's own time when it tells (``calibration_age()``),
    else wall-clock time since ``calibration['at']``; None when it cannot tell."""
    fn = getattr(dev, "calibration_age", None)
    if callable(fn):
        return float(fn())
    _, age = provenance.calibration(dev, datetime.now(UTC))
    return age


def run_calibration(
    dev: Any,
    name: str,
    reference: float | None = None,
    RE: RunEngine | None = None,
    md: Mapping[str, Any] | None = None,
    timeout: float | None = None,
) -> tuple[dict[str, Any], str]:
    """Run the calibration plan on a RunEngine; returns (the checked calibration now in force, the run's uid).
    A failed plan or a malformed result raises a LabloopError."""
    RE = RE or RunEngine(context_managers=[])
    uids: list[str] = []
    RE.subscribe(lambda n, d: uids.append(d["uid"]) if n == "start" else None)
    try:
        RE(plans.calibrate(dev, reference, timeout=timeout, md=md))
    except DeviceError:
        raise
    except Exception as exc:  # noqa: BLE001 - the plan failed: a device error inside, said in one line
        cause = exc.__cause__ or exc.__context__ or exc
        if isinstance(cause, LabloopError):
            raise cause from None
        raise LabloopError(
            f"{name}: calibration failed: {type(exc).__name__}: {exc}",
            "check the instrument and the reference, then calibrate again",
        ) from None
    return check_result(name, dev, getattr(dev, "calibration", None)), (uids[-1] if uids else "")


def record(
    store: Any, campaign_id: int | None, name: str, cal: Mapping[str, Any], run_uid: str | None, user: str | None = None
) -> Any:
    at = provenance._parse_time(cal.get("at")) or datetime.now(UTC)
    return store.add_calibration(
        campaign_id,
        name,
        dict(cal.get("reference") or {}),
        dict(cal["result"]),
        at=at,
        ok=True,
        user=user,
        calibration_id=str(cal["id"]),
        run_uid=run_uid or None,
    )


def recorded_age_s(dev: Any, row: Any, now: datetime | None = None) -> float:
    """The lab-time age of a recorded calibration when a lab process puts it back in force: 0 for a device that keeps
    its own clock (a simulated lab's clock stands still between processes), else wall seconds since it was made."""
    if callable(getattr(dev, "calibration_age", None)):
        return 0.0
    at = utc(row.at)
    return max(0.0, ((now or datetime.now(UTC)) - at).total_seconds())


def _put_in_force(fn: Any, row: Any) -> None:
    fn(
        {
            "id": row.calibration_id or f"row-{row.id}",
            "at": row.at.isoformat(),
            "reference": row.reference,
            "result": row.result,
        }
    )


def restore(store: Any, lab: Any, policies: Mapping[str, Any] | None = None) -> list[str]:
    """Put each device's latest recorded calibration in force (``restore_calibration``) when it is not already:
    in a (re)built lab, and in a running one when an operator resumes it after `labloop calibrate`. With
    ``policies`` (a new campaign's ``lab.calibration``, before its first step): only a calibration still in force,
    i.e. no ``max_age`` for the device or its recorded age (:func:`recorded_age_s`) within it; an expired one is left
    to the policy (calibrate or pause before the device's first step). Returns the devices it changed."""
    changed = []
    for name in calibratable_names(lab):
        dev = lab.devices[name]
        fn = getattr(dev, "restore_calibration", None)
        rows = store.calibrations(device=name) if callable(fn) else []
        current = getattr(dev, "calibration", None) or {}
        if not rows or rows[-1].calibration_id == current.get("id"):
            continue
        policy = (policies or {}).get(name)
        if policy is not None and recorded_age_s(dev, rows[-1]) > policy.max_age:
            continue
        _put_in_force(fn, rows[-1])
        changed.append(name)
    return changed
