"""The YAML description of an instrument (pydantic): what an integrator writes instead of a Python driver.

A file says which transport and address, the signals (each a transport ``point``: a register, a SCPI query, a
command and reply pattern) with units, type, limits and kind, which recipe fields are setpoints and how a move
completes (readback within tolerance for a time, a done bit, a command's completion), how a measurement is taken,
the role (station or instrument), health (alarm signals), the process signals to monitor, and optionally the
simulator that stands in for the instrument (``simulation:``) and a Python subclass for what YAML cannot say.

Points and commands are validated by the transport's own models (``Transport.Point``/``Command``) when the file is
loaded, so a typo fails ``labloop validate`` before anything connects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from labloop.errors import SpecError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransportSpec(_Model):
    kind: str = Field(description="modbus, visa, serial, ... (labloop.transports.KINDS)")
    address: str = Field(
        description="Where the instrument is, in the transport's own notation "
        "(tcp://HOST:PORT, TCPIP0::HOST::PORT::SOCKET, socket://HOST:PORT, /dev/ttyUSB0, ...)."
    )
    timeout: float = Field(2.0, gt=0, description="Seconds one request may take.")
    connect_timeout: float | None = Field(None, gt=0, description="Seconds a connection may take (default: timeout).")
    options: dict[str, Any] = Field(default_factory=dict, description="Transport options (unit id, baud rate, ...).")


class SimulationSpec(_Model):
    server: str = Field(description="module:Class of the simulated instrument (run by labloop.transports.simhost).")
    options: dict[str, Any] = Field(default_factory=dict)


class SignalSpec(_Model):
    point: dict[str, Any] | None = Field(
        None,
        description="Where the value lives, in the transport's terms; none "
        "for a value a Python subclass computes (e.g. from two readings).",
    )
    dtype: Literal["number", "integer", "boolean", "string"] = "number"
    units: str | None = None
    kind: Literal["hinted", "normal", "config", "omitted"] = "normal"
    limits: tuple[float, float] | None = Field(None, description="Values a write may take (refused otherwise).")
    writable: bool = False
    doc: str = ""


class SetpointSpec(_Model):
    """A recipe field: write ``signal``; the move is complete when the completion rule holds."""

    signal: str | None = Field(
        None,
        description="The (writable) signal the field is written to (none: the value is only passed to the command).",
    )
    limits: tuple[float, float] | None = Field(None, description="Values the field may take (default: the signal's).")
    readback: str | None = Field(None, description="Complete when this signal is within tolerance of the value...")
    tolerance: float | None = Field(None, gt=0)
    settle: float = Field(0.0, ge=0, description="...for this many seconds in a row.")
    done: str | None = Field(None, description="Or: complete when this (boolean) signal is true.")
    command: str | None = Field(None, description="Or: run this command after the write and wait for it.")

    @model_validator(mode="after")
    def _rule(self) -> SetpointSpec:
        if self.readback is not None and self.tolerance is None:
            raise ValueError("a readback rule needs a tolerance")
        if self.signal is None and self.command is None:
            raise ValueError("a setpoint writes a signal or runs a command (or both)")
        return self


class CommandSpec(_Model):
    point: dict[str, Any] = Field(description="The command in the transport's terms.")
    timeout: float | None = Field(None, gt=0, description="Seconds it may take (default: the transport timeout).")
    result: str | None = Field(None, description="Signal that holds the command's result afterwards.")


class MeasureSpec(_Model):
    """What trigger() does on an instrument: run ``command`` (its result lands in its result signal), then read
    the ``read`` signals once; the instrument's read() then gives these values (until the next trigger)."""

    command: str | None = None
    read: list[str] = Field(default_factory=list)


class HealthSpec(_Model):
    alarms: list[str] = Field(default_factory=list, description="Boolean signals that must be false to work.")


class ActionSpec(_Model):
    """Writes (signal -> value) and/or a command: what ``start`` does before each recipe and ``stop`` on stop()."""

    writes: dict[str, Any] = Field(default_factory=dict)
    command: str | None = None


class InstrumentSpec(_Model):
    model: str = Field(description="What the instrument is (maker and model), shown in errors and provenance.")
    role: Literal["station", "instrument"] = "station"
    transport: TransportSpec
    simulation: SimulationSpec | None = None
    signals: dict[str, SignalSpec]
    setpoints: dict[str, SetpointSpec] = Field(default_factory=dict, description="Recipe field -> how it is set.")
    commands: dict[str, CommandSpec] = Field(default_factory=dict)
    measure: MeasureSpec | None = None
    health: HealthSpec = Field(default_factory=HealthSpec)
    start: ActionSpec = Field(
        default_factory=ActionSpec, description="Done before each recipe or measurement (e.g. run mode, output on)."
    )
    stop: ActionSpec = Field(default_factory=ActionSpec, description="Done by stop() (e.g. standby).")
    process: list[str] = Field(default_factory=list, description="Signals monitored while a recipe runs.")
    poll: float = Field(0.1, gt=0, description="Seconds between reads while waiting for a completion rule.")
    timeout: float = Field(600.0, gt=0, description="Seconds a set/trigger may take in all.")
    python: str | None = Field(
        None, description="module:Class subclassing the declarative base, for what YAML cannot say."
    )
    conformance: dict[str, Any] = Field(
        default_factory=dict, description="Hints for the conformance kit (setpoint: a quick safe recipe)."
    )

    @model_validator(mode="after")
    def _references(self) -> InstrumentSpec:
        from labloop.declarative.names import reserved_names

        bad = sorted(set(self.signals) & reserved_names(self.role))
        if bad:
            raise ValueError(f"signal names {bad} are taken by the device itself: rename them")
        for name in self.signals:
            if not name.isidentifier():
                raise ValueError(f"signal name {name!r} must be a Python identifier (letters, digits, _)")
        known = set(self.signals)

        def need(ref: str | None, where: str, writable: bool = False) -> None:
            if ref is None:
                return
            if ref not in known:
                raise ValueError(f"{where} names signal '{ref}', which is not among signals {sorted(known)}")
            if writable and not self.signals[ref].writable:
                raise ValueError(f"{where}: signal '{ref}' is written, so it must say 'writable: true'")

        for field, sp in self.setpoints.items():
            need(sp.signal, f"setpoints.{field}.signal", writable=True)
            need(sp.readback, f"setpoints.{field}.readback")
            need(sp.done, f"setpoints.{field}.done")
            if sp.command is not None and sp.command not in self.commands:
                raise ValueError(f"setpoints.{field}.command '{sp.command}' is not among commands")
            if sp.limits is None and (sp.signal is None or self.signals[sp.signal].limits is None):
                raise ValueError(
                    f"setpoints.{field} needs limits (its own or its signal's: safety lives in the "
                    "driver, every setpoint is checked against them)"
                )
        for name, cmd in self.commands.items():
            need(cmd.result, f"commands.{name}.result")
        if self.measure is not None:
            if self.measure.command is not None and self.measure.command not in self.commands:
                raise ValueError(f"measure.command '{self.measure.command}' is not among commands")
            for s in self.measure.read:
                need(s, "measure.read")
        for s in self.health.alarms + self.process:
            need(s, "health.alarms / process")
        for what, action in (("start", self.start), ("stop", self.stop)):
            for s in action.writes:
                need(s, f"{what}.writes", writable=True)
            if action.command is not None and action.command not in self.commands:
                raise ValueError(f"{what}.command '{action.command}' is not among commands")
        if self.role == "station" and not self.setpoints:
            raise ValueError("a station needs setpoints (the recipe fields it takes)")
        if self.role == "instrument" and self.measure is None:
            raise ValueError("an instrument needs 'measure' (what trigger() does)")
        return self


def load_spec(source: str | Path | dict[str, Any], where: str | None = None) -> InstrumentSpec:
    """Read and validate an instrument description (a file path or an already-parsed mapping)."""
    label = where or (str(source) if not isinstance(source, dict) else "the instrument description")
    if isinstance(source, dict):
        data: Any = source
    else:
        path = Path(source)
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise SpecError(
                f"instrument file {path} does not exist",
                "check the path (in a campaign file, a relative path is resolved from the campaign file's folder)",
            ) from None
        except yaml.YAMLError as exc:
            raise SpecError(f"{path} is not valid YAML: {exc}", "fix the file's syntax") from None
    if not isinstance(data, dict):
        raise SpecError(f"{label}: expected a mapping of instrument fields", "see docs/drivers.md")
    try:
        spec = InstrumentSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            f"{label}: " + _short(exc), "fix these fields (docs/drivers.md, 'describe an instrument in YAML')"
        ) from None
    _check_points(spec, label)
    return spec


def _check_points(spec: InstrumentSpec, label: str) -> None:
    from labloop.transports import transport_class

    try:
        cls = transport_class(spec.transport.kind)
    except Exception as exc:  # noqa: BLE001 - LabloopError: unknown kind or library missing
        raise SpecError(f"{label}: transport: {getattr(exc, 'problem', exc)}", getattr(exc, "fix", None)) from None
    for name, sig in spec.signals.items():
        if sig.point is None:
            if sig.writable:
                raise SpecError(f"{label}: signals.{name}: a writable signal needs a point", "add its point")
            continue
        try:
            cls.Point.model_validate(sig.point)
        except ValidationError as exc:
            raise SpecError(
                f"{label}: signals.{name}.point: {_short(exc)}",
                f"see the {spec.transport.kind} point fields in docs/drivers.md",
            ) from None
    for name, cmd in spec.commands.items():
        if cls.Command is None:
            raise SpecError(
                f"{label}: commands.{name}: the {spec.transport.kind} transport has no commands", "use signals"
            )
        try:
            cls.Command.model_validate(cmd.point)
        except ValidationError as exc:
            raise SpecError(
                f"{label}: commands.{name}.point: {_short(exc)}",
                f"see the {spec.transport.kind} command fields in docs/drivers.md",
            ) from None


def _short(exc: ValidationError) -> str:
    """Each error as ``field: message``, without pydantic's "Value error, " prefix (it says nothing to a user)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    )
