"""Instrument transports (issue 22): what labloop adds to a read and a set, beside the protocol library itself.

For each transport, against the same simulator process (its direct port, not the fault proxy), in the same run and
interleaved call by call (so machine load hits both alike), one read and one set (write) round trip made:

* ``raw``: with the library alone (pymodbus client, pyvisa resource, pyserial port, asyncua sync client, caproto
  threading client);
* ``transport``: through labloop's transport (``Transport.read/write``: lock, reconnect check, typed values, errors);
* ``device``: through the declarative device's signal (``signal.get()`` / ``signal.put()``: limits, ophyd callbacks);
* ``agent``: through a ``labloop agent`` process serving the device, via its proxy (``signal.get()``/``put``).

Prints JSON lines ``{"bench": "transport_round_trip", "transport", "op", "path", "n", "p50_ms", "p90_ms",
"overhead_ms"}`` where ``overhead_ms`` is the path's p50 minus raw's p50. Target: device read overhead <= 1 ms.

Run: ``python benchmarks/transports.py [--n 300] [--transports modbus,visa,serial,opcua,epics,sila] [--no-agent]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "devices" / "examples"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))]


# -- the raw library calls, per transport: (read, write) made with the library alone ---------------------------------
def raw_modbus(address: str) -> tuple[Callable[[], Any], Callable[[float], Any], Callable[[], None]]:
    from urllib.parse import urlparse

    from pymodbus.client import ModbusTcpClient

    u = urlparse(address)
    c = ModbusTcpClient(u.hostname, port=u.port, timeout=2, retries=0)
    c.connect()
    f32 = c.DATATYPE.FLOAT32

    def read() -> Any:
        return c.convert_from_registers(c.read_input_registers(0, count=2, device_id=1).registers, f32)

    def write(v: float) -> Any:
        return c.write_registers(2, c.convert_to_registers(v, f32), device_id=1)

    return read, write, c.close


def raw_visa(address: str) -> tuple[Callable[[], Any], Callable[[float], Any], Callable[[], None]]:
    import pyvisa

    rm = pyvisa.ResourceManager("@py")
    inst = rm.open_resource(address, read_termination="\n", write_termination="\n", timeout=2000)

    def write(v: float) -> Any:
        inst.write(f":OUTP {int(v)}")
        return inst.query(":SYST:ERR?")  # what the transport does after each write (check_errors)

    def close() -> None:
        inst.close()
        rm.close()

    return (lambda: inst.query(":OUTP?")), write, close


def raw_serial(address: str) -> tuple[Callable[[], Any], Callable[[float], Any], Callable[[], None]]:
    import serial

    port = serial.serial_for_url(address, timeout=2)

    def ask(line: str) -> bytes:
        port.write(line.encode() + b"\r\n")
        return port.read_until(b"\r\n")

    return (lambda: ask("SI")), (lambda v: ask("TAC")), port.close


def raw_opcua(address: str) -> tuple[Callable[[], Any], Callable[[float], Any], Callable[[], None]]:
    from asyncua import ua
    from asyncua.sync import Client

    c = Client(address, timeout=2)
    c.connect()
    t = c.get_node("ns=2;s=Reactor.Temperature")
    sp = c.get_node("ns=2;s=Reactor.TemperatureSetpoint")

    def write(v: float) -> Any:
        return sp.write_value(ua.DataValue(ua.Variant(float(v), ua.VariantType.Double)))

    return t.read_value, write, c.disconnect


def raw_epics(address: str) -> tuple[Callable[[], Any], Callable[[float], Any], Callable[[], None]]:
    import os

    from caproto.threading.client import Context, SharedBroadcaster

    os.environ["EPICS_CA_ADDR_LIST"] = address.removeprefix("ca://")
    os.environ["EPICS_CA_AUTO_ADDR_LIST"] = "NO"
    ctx = Context(SharedBroadcaster())
    t, sp = ctx.get_pvs("SIM:TC1:T", "SIM:TC1:T:SP")
    for pv in (t, sp):
        pv.wait_for_connection(timeout=5)

    def close() -> None:
        ctx.disconnect()
        ctx.broadcaster.disconnect()

    return (lambda: t.read(timeout=2).data[0]), (lambda v: sp.write([v], wait=True, timeout=2)), close


def raw_sila(address: str) -> tuple[Callable[[], Any], Callable[[float], Any], Callable[[], None]]:
    from sila2.client import SilaClient

    host, _, port = address.removeprefix("sila://").rpartition(":")
    c = SilaClient(host, int(port), insecure=True)
    f = c.PlateReaderControl
    return f.Temperature.get, (lambda v: f.SetTemperature(Temperature=float(v))), c.close


# transport -> (example file, raw factory, read signal, (write signal, values to alternate))
CASES: dict[str, tuple[str, Any, str, tuple[str, tuple[float, float]]]] = {
    "modbus": ("furnace_modbus.yaml", raw_modbus, "temperature", ("setpoint", (30.0, 31.0))),
    "visa": ("smu_visa.yaml", raw_visa, "output", ("output", (0, 1))),
    "serial": ("balance_mtsics.yaml", raw_serial, "weight_now", ("", (0, 0))),
    "opcua": ("reactor_opcua.yaml", raw_opcua, "temperature", ("temperature_setpoint", (30.0, 31.0))),
    "epics": ("temperature_epics.yaml", raw_epics, "temperature", ("setpoint", (30.0, 31.0))),
    "sila": ("platereader_sila.yaml", raw_sila, "temperature", ("temperature", (30.0, 31.0))),
}


def bench(kind: str, n: int, agent: bool) -> list[dict]:
    from labloop.declarative import device, load_spec
    from labloop.transports.simulation import SimulatorProcess

    file, raw_factory, read_sig, (write_sig, values) = CASES[kind]
    spec = load_spec(EXAMPLES / file)
    assert spec.simulation is not None
    rows: list[dict] = []
    with SimulatorProcess(spec.simulation.server, spec.simulation.options) as sim:
        raw_read, raw_write, raw_close = raw_factory(sim.direct)
        dev = device("dut", file=EXAMPLES / file, address=sim.direct)
        t = dev.transport
        paths: dict[str, tuple[Callable[[], Any], Callable[[float], Any] | None]] = {
            "raw": (raw_read, raw_write),
            "transport": (
                lambda: t.read(dev.points[read_sig]),
                (lambda v: t.write(dev.points[write_sig], v)) if write_sig else None,
            ),
            "device": (getattr(dev, read_sig).get, getattr(dev, write_sig).put if write_sig else None),
        }
        proc = None
        if agent:
            from labloop.control.agent_process import AgentProcess

            proc = AgentProcess(
                "labloop.declarative:device", {"file": str(EXAMPLES / file), "address": sim.direct}, name="dut"
            ).start()
            proxy = proc.connect()
            paths["agent"] = (getattr(proxy, read_sig).get, getattr(proxy, write_sig).put if write_sig else None)
        try:
            for op in ("read", "set"):
                times: dict[str, list[float]] = {p: [] for p in paths}
                for i in range(n + 10):
                    for p, (rd, wr) in paths.items():
                        if op == "set" and (wr is None or paths["raw"][1] is None):
                            continue
                        t0 = time.perf_counter()
                        rd() if op == "read" else wr(values[i % 2])  # type: ignore[misc]  # wr is not None here
                        if i >= 10:  # the first calls connect and warm up
                            times[p].append(time.perf_counter() - t0)
                base = pct(times["raw"], 0.5) if times["raw"] else None
                for p, xs in times.items():
                    if not xs:
                        continue
                    rows.append(
                        {
                            "bench": "transport_round_trip",
                            "transport": kind,
                            "op": op,
                            "path": p,
                            "n": len(xs),
                            "p50_ms": round(1000 * pct(xs, 0.5), 3),
                            "p90_ms": round(1000 * pct(xs, 0.9), 3),
                            "overhead_ms": round(1000 * (pct(xs, 0.5) - base), 3) if base is not None else None,
                        }
                    )
        finally:
            raw_close()
            dev.disconnect()
            if proc is not None:
                proxy.disconnect()
                proc.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--transports", default="modbus,visa,serial,opcua,epics,sila")
    ap.add_argument("--no-agent", action="store_true")
    args = ap.parse_args()
    for kind in args.transports.split(","):
        for row in bench(kind, args.n, not args.no_agent):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
