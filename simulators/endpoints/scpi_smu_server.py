"""A simulated Keithley 2400-style source-measure unit on TCP (SCPI over a raw socket, like port 5025).

The physics is one line: a thin film of sheet resistance ``R_s`` probed by a collinear four-point probe shows
``V = I * R_s / 4.532`` between the inner probes (4.532 = pi / ln 2). In 2-wire mode (``:SYST:RSEN OFF``) the lead
and contact resistance ``contact_ohm`` adds to it, which is why the driver measures 4-wire. The voltage is clipped at
the compliance (``:SENS:VOLT:PROT``) and bit 3 of the status word is set, as on the real instrument.

Supported commands (short or long mnemonics, any case): ``*IDN?``, ``*RST``, ``*CLS``, ``:SOUR:FUNC CURR|VOLT``,
``:SOUR:CURR[:LEV] <A>``, ``:SENS:FUNC "VOLT"``, ``:SENS:VOLT:PROT <V>``, ``:SYST:RSEN ON|OFF``, ``:OUTP ON|OFF``,
``:OUTP?``, ``:READ?`` (``V,I,R,T,STATUS`` with R = 9.91e37 as the instrument sends when resistance is not measured),
``:SYST:ERR?`` (``0,"No error"`` or the oldest queued error). Unknown commands queue ``-113,"Undefined header"``.
"""

from __future__ import annotations

import math
import random
import threading
import time

from .base import FaultPlan, LineServer

IDN = "KEITHLEY INSTRUMENTS INC.,MODEL 2400,4096123,C32   Oct  4 2010 14:20:11/A02  /S/K"
NAN = 9.91e37
COMPLIANCE_BIT = 1 << 3

_LONG = {
    "SOURCE": "SOUR",
    "CURRENT": "CURR",
    "SENSE": "SENS",
    "FUNCTION": "FUNC",
    "VOLTAGE": "VOLT",
    "SYSTEM": "SYST",
    "RSENSE": "RSEN",
    "OUTPUT": "OUTP",
    "ERROR": "ERR",
    "PROTECTION": "PROT",
    "LEVEL": "LEV",
    "STATE": "STAT",
}


def normalize(header: str) -> str:
    """``:source:current:level`` -> ``:SOUR:CURR``: short mnemonics, optional nodes dropped, leading colon."""
    parts = [p for p in header.strip().upper().split(":") if p]
    parts = [_LONG.get(p, p) for p in parts]
    if parts[-1:] in (["LEV"], ["STAT"]):
        parts = parts[:-1]
    return ":" + ":".join(parts) if not header.strip().startswith("*") else header.strip().upper()


class ScpiSmuServer(LineServer):
    """Simulated SMU endpoint. ``sheet_resistance`` (ohm/sq) is the film under the probe; ``read_time`` the
    integration time of one reading (seconds); ``noise`` the relative voltage noise."""

    def __init__(
        self,
        *,
        sheet_resistance: float = 125.0,
        contact_ohm: float = 40.0,
        read_time: float = 0.02,
        noise: float = 0.0,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
    ):
        super().__init__(host=host, port=port, faults=faults)
        self.sheet_resistance = sheet_resistance
        self.contact_ohm = contact_ohm
        self.read_time = read_time
        self.noise = noise
        self._rng = random.Random(seed)
        self._t0 = time.monotonic()
        self._state_lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.output = False
        self.four_wire = False
        self.source_func = "VOLT"
        self.sense_func = "CURR"
        self.source_current = 0.0
        self.compliance = 21.0
        self.errors: list[str] = []

    def _error(self, code: int, text: str) -> None:
        self.errors.append(f'{code},"{text}"')

    def handle(self, line: str) -> str | None:
        with self._state_lock:
            return self._handle(line.strip())

    def _handle(self, line: str) -> str | None:
        if not line:
            return None
        header, _, arg = line.partition(" ")
        cmd = normalize(header)
        arg = arg.strip()
        if cmd == "*IDN?":
            return IDN
        if cmd == "*RST":
            self.reset()
            return None
        if cmd == "*CLS":
            self.errors.clear()
            return None
        if cmd == ":SYST:ERR?" or cmd == ":SYST:ERR:NEXT?":
            return self.errors.pop(0) if self.errors else '0,"No error"'
        if cmd == ":SOUR:FUNC":
            mode = normalize(arg).strip(":")
            if mode not in ("CURR", "VOLT"):
                self._error(-224, "Illegal parameter value")
            else:
                self.source_func = mode
            return None
        if cmd == ":SOUR:CURR":
            try:
                value = float(arg)
            except ValueError:
                self._error(-104, "Data type error")
                return None
            if abs(value) > 1.05:
                self._error(-222, "Data out of range")
            else:
                self.source_current = value
            return None
        if cmd == ":SENS:FUNC":
            func = normalize(arg.strip("'\"").split(":")[0]).strip(":")
            if func not in ("VOLT", "CURR", "RES"):
                self._error(-224, "Illegal parameter value")
            else:
                self.sense_func = func
            return None
        if cmd == ":SENS:VOLT:PROT":
            try:
                self.compliance = min(abs(float(arg)), 210.0)
            except ValueError:
                self._error(-104, "Data type error")
            return None
        if cmd == ":SYST:RSEN":
            self.four_wire = arg.upper() in ("ON", "1")
            return None
        if cmd == ":OUTP":
            self.output = arg.upper() in ("ON", "1")
            return None
        if cmd == ":OUTP?":
            return "1" if self.output else "0"
        if cmd == ":READ?":
            return self._read()
        self._error(-113, "Undefined header")
        return None

    def _read(self) -> str:
        time.sleep(self.read_time)
        t = time.monotonic() - self._t0
        if not self.output:
            self._error(803, "Output disabled")
            return f"{NAN:+.6E},{NAN:+.6E},{NAN:+.6E},{t:+.6E},{0:+.6E}"
        if self.source_func != "CURR" or self.sense_func != "VOLT":
            self._error(-221, "Settings conflict")
        i = self.source_current
        r = self.sheet_resistance / (math.pi / math.log(2))
        if not self.four_wire:
            r += self.contact_ohm
        v = i * r * (1.0 + self.noise * self._rng.gauss(0.0, 1.0))
        status = 0
        if abs(v) > self.compliance:
            v = math.copysign(self.compliance, v)
            status |= COMPLIANCE_BIT
        return f"{v:+.6E},{i:+.6E},{NAN:+.6E},{t:+.6E},{status:+.6E}"


if __name__ == "__main__":  # pragma: no cover - manual use: python -m labloop_simulators.endpoints.scpi_smu_server
    with ScpiSmuServer() as sim:
        print(f"simulated SMU on {sim.host}:{sim.port} (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
