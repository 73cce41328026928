"""The whole simulated solid-state lab: every instrument's protocol server in its own process on 127.0.0.1, sharing
one world file; what ``labloop sim serve solid_state`` runs.

Endpoints: fixed ports by default (``base_port`` + the instrument's index in :data:`INSTRUMENTS`, so a campaign file
can name ``tcp://127.0.0.1:47100`` for furnace1 and keep naming it across restarts, as a lab's instruments keep
their addresses), or free ports with ``base_port=0`` (tests, several labs on one machine). Either way a JSON ports
file says where each instrument is, which description (``file``) or driver describes it, the pid and control port
of its process (to inject faults or kill it), the time scale, the random faults' rates and the world file: a test
or a campaign generator reads it rather than guessing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labloop_simulators.solid_state.faults import FaultRates

from labloop.transports.simulation import SimulatorProcess

from .world import World, initial

PKG = "labloop_simulators.solid_state_lab"
ROBOT_DRIVER = "labloop_devices.solid_state.robot:OpcuaRobot"
DEFAULT_BASE_PORT = 47100
#: ten servers import asyncua/pymodbus/numpy at once: on a loaded machine that takes longer than one does
START_TIMEOUT = 180.0


@dataclass(frozen=True)
class Instrument:
    name: str
    protocol: str
    server: str
    file: str | None = None  # its declarative description (None: a Python driver, see ``driver``)
    options: dict[str, Any] = field(default_factory=dict)
    driver: str | None = None


def instruments(faults: bool | FaultRates = True) -> list[Instrument]:
    """The lab's instruments and their servers' options (fault rates per event: the default ones when ``faults``
    is True, the given ones when it is a :class:`FaultRates`; none when False)."""
    r = faults if isinstance(faults, FaultRates) else FaultRates() if faults else FaultRates.none()
    out = [
        Instrument(
            f"furnace{n}",
            "modbus",
            f"{PKG}.furnace:BoxFurnaceController",
            "furnace.yaml",
            {"furnace": n, "trip_rate": r.furnace_trip, "crack_rate": r.crucible_crack},
        )
        for n in range(1, 5)
    ]
    out += [
        Instrument(
            "dispenser",
            "opcua",
            f"{PKG}.dispenser:PowderDispenser",
            "dispenser.yaml",
            {"jam_rate": r.dispenser_jam, "require_crucible": True},
        ),
        Instrument("balance", "serial", f"{PKG}.serial_instruments:MtSicsLabBalance", "balance.yaml"),
        Instrument(
            "barcode",
            "serial",
            f"{PKG}.serial_instruments:BarcodeScanner",
            "barcode.yaml",
            {"location": "balance", "misread_rate": r.barcode_misread},
        ),
        Instrument("xrd", "visa", f"{PKG}.xrd:Diffractometer", "xrd.yaml", {"require_sample": True}),
    ]
    out += [
        Instrument(f"robot{n}", "opcua", f"{PKG}.robot:RobotArm", None, {"robot": f"robot{n}"}, driver=ROBOT_DRIVER)
        for n in (1, 2)
    ]
    return out


class SolidStateLab:
    """Start, describe and stop the lab's servers. ``start()`` raises (after stopping what started) if any fails."""

    def __init__(
        self,
        *,
        time_scale: float = 60.0,
        base_port: int = DEFAULT_BASE_PORT,
        world: str | Path,
        faults: bool | FaultRates = True,
        fault_rates: list[str] | tuple[str, ...] = (),
        seed: int = 0,
        fresh_world: bool = True,
    ):
        """``fault_rates``: ``NAME=P`` overrides of the default rates (with ``faults``; ValueError if malformed)."""
        self.time_scale, self.base_port, self.seed = float(time_scale), int(base_port), seed
        self.world_path = Path(world).resolve()
        if isinstance(faults, FaultRates):
            self.fault_rates = faults
        else:
            self.fault_rates = FaultRates.parse(fault_rates) if faults else FaultRates.none()
        self.instruments = instruments(self.fault_rates)
        self.fresh_world = fresh_world
        self.procs: dict[str, SimulatorProcess] = {}

    def start(self) -> SolidStateLab:
        if self.fresh_world or not self.world_path.exists():
            self.world_path.parent.mkdir(parents=True, exist_ok=True)
            self.world_path.write_text(json.dumps(initial()))
        World(self.world_path)  # the lock file exists before the servers race for it
        for i, inst in enumerate(self.instruments):
            port = self.base_port + i if self.base_port else 0
            if port and not _port_free(port):
                raise OSError(
                    f"port {port} (for {inst.name}) is in use: another lab is running, or choose "
                    "--base-port (0: free ports)"
                )
            options = {
                "time_scale": self.time_scale,
                "seed": self.seed + i,
                "world": str(self.world_path),
                **inst.options,
            }
            self.procs[inst.name] = SimulatorProcess(inst.server, options, port=port, start_timeout=START_TIMEOUT)
        errors: list[BaseException] = []

        def start_one(p: SimulatorProcess) -> None:
            try:
                p.start()
            except BaseException as exc:  # noqa: BLE001 - reported below, after every start has ended
                errors.append(exc)

        threads = [threading.Thread(target=start_one, args=(p,)) for p in self.procs.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            raise errors[0]
        return self

    def endpoints(self) -> dict[str, Any]:
        devices = {}
        for inst in self.instruments:
            p = self.procs[inst.name]
            entry: dict[str, Any] = {
                "address": p.address,
                "protocol": inst.protocol,
                "server": inst.server,
                "pid": p.pid,
                "control": p.control_port,
            }
            if inst.file:
                entry["file"] = str(devices_folder() / inst.file)
            if inst.driver:
                entry["driver"] = inst.driver
            devices[inst.name] = entry
        return {
            "lab": "solid_state",
            "time_scale": self.time_scale,
            "world": str(self.world_path),
            "faults": dataclasses.asdict(self.fault_rates),  # the random faults' rates (all 0: --no-faults)
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "devices": devices,
        }

    def dead(self) -> list[str]:
        return [n for n, p in self.procs.items() if not p.alive]

    def stop(self) -> None:
        """Stop every server (each exits when its stdin closes; killed after 5 s), in parallel."""
        threads = [threading.Thread(target=p.close) for p in self.procs.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def devices_folder() -> Path:
    """Where the lab's instrument descriptions are (``labloop_devices.solid_state``, installed or not)."""
    import labloop_devices.solid_state as pkg

    return Path(pkg.__file__).resolve().parent


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Attached:
    """A running lab server's control socket, from its ports-file entry: the conformance kit's endpoint (inject,
    clear_faults, drop_clients) and ``state()``, for a process that did not start the server."""

    def __init__(self, entry: dict[str, Any]):
        self.entry = entry
        self._buf = b""
        self._sock = socket.create_connection(("127.0.0.1", int(entry["control"])), timeout=10)

    def _ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._sock.sendall((json.dumps(msg) + "\n").encode())
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"the simulator {self.entry['server']} closed its control socket")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"the simulator refused {msg}: {reply.get('error')}")
        return reply

    def inject(self, kind: str, **kw: Any) -> None:
        self._ask({"op": "inject", "kind": kind, **kw})

    def clear_faults(self) -> None:
        self._ask({"op": "clear"})

    def drop_clients(self) -> None:
        self._ask({"op": "drop"})

    def state(self) -> dict[str, Any]:
        return dict(self._ask({"op": "state"})["state"])

    def close(self) -> None:
        self._sock.close()
