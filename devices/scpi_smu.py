"""Keithley 2400-style source-measure unit over TCP: four-point sheet resistance of a thin film.

Wire protocol: SCPI over a raw TCP socket (one command per line, ``\\n``-terminated; Keithley's LAN adapters and
2450-class instruments listen on port 5025). The driver uses the instrument's real command set::

    *IDN?                      identify (checked: 4 comma-separated fields)
    *RST / *CLS                reset to defaults / clear the error queue (on every new connection)
    :SYST:RSEN ON              4-wire (remote) sensing: lead and contact resistance drop out
    :SOUR:FUNC CURR            source current ...
    :SENS:FUNC "VOLT"          ... measure voltage
    :SENS:VOLT:PROT <V>        voltage compliance
    :SOUR:CURR <A>             source level
    :OUTP ON / :OUTP OFF       output on only while reading
    :READ?                     -> "V,I,R,TIME,STATUS" (five floats; status bit 3 = in compliance)
    :SYST:ERR?                 -> '0,"No error"' or the oldest error (checked after configuring and reading)

The sheet resistance of a thin film measured with a collinear, equally spaced four-point probe (film much thinner
than the probe spacing, sample much wider) is ``R_s = (pi / ln 2) * V / I = 4.532 * V / I`` in ohm per square;
``geometric_factor`` takes another factor for finite samples.

Safety lives here: ``limits`` bound the source current and the voltage compliance, and ``set`` refuses anything
outside them. A malformed reply fails the measurement's Status with the raw reply in the error.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from ophyd import Component as Cpt
from ophyd import Signal

from labloop.errors import DeviceError

from .base import Health, Instrument, check_limits
from .tcp import LineTransport, ReplyError, TcpDevice, parse_fields

#: pi / ln 2: collinear four-point probe on an infinite thin sheet.
FOUR_POINT_FACTOR = math.pi / math.log(2)
OVERFLOW = 9.9e37  # the instrument's "no number" (9.91e37)
COMPLIANCE_BIT = 1 << 3


class ScpiSmu(TcpDevice, Instrument):
    """A Keithley 2400-style SMU measuring sheet resistance with a four-point probe.

    ``trigger()`` sources ``source_current`` (A), reads the voltage 4-wire, and sets ``sheet_resistance``
    (ohm/sq), ``voltage`` (V) and ``current`` (A). ``set({"source_current": A, "voltage_compliance": V})`` changes
    the source settings within ``limits``.
    """

    simulator: ClassVar[str] = "labloop_simulators.endpoints.scpi_smu_server:ScpiSmuServer"

    sheet_resistance = Cpt(Signal, value=math.nan, kind="hinted", doc="Sheet resistance (ohm/sq).")
    voltage = Cpt(Signal, value=math.nan, kind="normal", doc="Voltage between the inner probes (V).")
    current = Cpt(Signal, value=math.nan, kind="normal", doc="Measured source current (A).")
    source_current = Cpt(Signal, value=1e-3, kind="config", doc="Source current setpoint (A).")
    voltage_compliance = Cpt(Signal, value=2.0, kind="config", doc="Voltage compliance (V).")

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str,
        host: str,
        port: int = 5025,
        source_current: float = 1e-3,
        voltage_compliance: float = 2.0,
        max_current: float = 0.01,
        max_compliance: float = 21.0,
        geometric_factor: float = FOUR_POINT_FACTOR,
        timeout: float = 2.0,
        status_timeout: float = 10.0,
        **kwargs: Any,
    ):
        super().__init__(prefix, name=name, **kwargs)
        self.limits = {
            "source_current": (-float(max_current), float(max_current)),
            "voltage_compliance": (0.0, float(max_compliance)),
        }
        check_limits(self.limits, {"source_current": source_current, "voltage_compliance": voltage_compliance}, name)
        self.source_current.put(float(source_current))
        self.voltage_compliance.put(float(voltage_compliance))
        self.geometric_factor = float(geometric_factor)
        self.default_timeout = float(status_timeout)
        self.transport = LineTransport(host, port, timeout=timeout, name=name)
        self._transports = (self.transport,)
        self._configured = 0  # transport generation the instrument was last configured on
        self.idn = ""
        self._stop = threading.Event()

    # -- labloop roles ----------------------------------------------------------------------------------------------
    def set(self, settings: Mapping[str, Any]) -> Any:
        """Change source settings (refused at once outside ``limits``); the Status ends once the SMU took them."""
        check_limits(self.limits, settings, self.name)
        settings = {k: float(v) for k, v in settings.items()}
        self._stop.clear()

        def apply() -> None:
            for key, value in settings.items():
                getattr(self, key).put(value)
            self._guarded(self._configure)

        return self._run_status(apply)

    def trigger(self) -> Any:
        self._stop.clear()
        return super().trigger()

    def measure(self) -> None:
        self._guarded(self._measure)

    def stop(self, *, success: bool = False) -> None:
        """Abort a reading in progress and switch the output off."""
        self._stop.set()
        self.transport.abort()
        try:
            self.transport.write(":OUTP OFF")
        except DeviceError:
            pass  # unreachable: the output is off anyway once the instrument's connection drops or it is reset
        super().stop(success=success)

    def health(self) -> Health:
        try:
            self._identify()
        except DeviceError as exc:
            return Health(False, str(exc.problem))
        return Health(True, f"ready: {self.idn}")

    def conformance_hints(self) -> dict[str, Any]:
        """For the conformance kit: a safe source setting; faults and stop() are exercised on a reading."""
        return {
            "setpoint": {"source_current": min(1e-3, self.limits["source_current"][1])},
            "action": "trigger",
            "stop_action": "trigger",
        }

    # -- SCPI -------------------------------------------------------------------------------------------------------
    def _guarded(self, work: Any) -> None:
        try:
            work()
        except DeviceError:
            if self._stop.is_set():
                raise DeviceError(f"{self.name}: stopped (stop() was called)", "trigger again to re-measure") from None
            raise

    def _write(self, line: str) -> None:
        self._check_stopped()
        self.transport.write(line)

    def _query(self, line: str) -> str:
        self._check_stopped()
        return self.transport.query(line)

    def _check_stopped(self) -> None:
        if self._stop.is_set():
            raise DeviceError(f"{self.name}: stopped (stop() was called)", "trigger again to re-measure")

    def _identify(self) -> str:
        raw = self.transport.query("*IDN?")
        fields = [f.strip() for f in raw.split(",")]
        if len(fields) != 4 or not fields[0]:
            raise ReplyError(self.name, "*IDN?", raw, "'MANUFACTURER,MODEL,SERIAL,FIRMWARE'")
        self.idn = f"{fields[0]} {fields[1]}"
        return raw

    def _configure(self) -> None:
        """Reset and configure on a new connection; (re)send the source settings every time."""
        self.transport.connect()
        if self._configured != self.transport.generation:
            self._check_stopped()
            self._identify()
            for line in ("*RST", "*CLS", ":SYST:RSEN ON", ":SOUR:FUNC CURR", ':SENS:FUNC "VOLT"'):
                self._write(line)
        self._write(f":SENS:VOLT:PROT {self.voltage_compliance.get():.6g}")
        self._write(f":SOUR:CURR {self.source_current.get():.6g}")
        self._check_errors("configuring")
        self._configured = self.transport.generation

    def _check_errors(self, during: str) -> None:
        raw = self._query(":SYST:ERR?")
        code_text = raw.split(",", 1)
        try:
            code = int(code_text[0])
        except ValueError:
            raise ReplyError(self.name, ":SYST:ERR?", raw, "'<code>,\"<message>\"'") from None
        if code != 0:
            raise DeviceError(
                f"{self.name}: the instrument reports error {raw} while {during}",
                "check the source settings against the instrument's ranges; the error text is the instrument's own",
            )

    def _measure(self) -> None:
        for sig in (self.sheet_resistance, self.voltage, self.current):
            sig.put(math.nan)  # a failed reading must not leave the previous sample's values looking fresh
        self._configure()
        try:
            self._write(":OUTP ON")
            raw = self._query(":READ?")
        finally:
            if not self._stop.is_set():
                try:
                    self.transport.write(":OUTP OFF")
                except DeviceError:
                    pass
        v, i, _r, _t, status = parse_fields(self.name, ":READ?", raw, 5)
        if not all(math.isfinite(x) for x in (v, i, status)) or abs(v) >= OVERFLOW or abs(i) >= OVERFLOW:
            raise ReplyError(
                self.name,
                ":READ?",
                raw,
                "finite voltage and current (overflow: is the probe down?)",
                "lower the probe onto the film and check the contacts; then measure again",
            )
        if int(status) & COMPLIANCE_BIT:
            raise DeviceError(
                f"{self.name}: the reading hit the voltage compliance ({self.voltage_compliance.get():g} V): "
                f"raw reply {raw!r}",
                "lower source_current or raise voltage_compliance (within the limits), or check the probe contacts",
            )
        if i == 0:
            raise DeviceError(
                f"{self.name}: the source current is 0 A: no resistance can be computed",
                "set source_current to a non-zero value",
            )
        self._check_errors("reading")
        self.voltage.put(v)
        self.current.put(i)
        self.sheet_resistance.put(self.geometric_factor * v / i)
