"""The parent side of a simulated instrument: start its protocol server in its own process, steer its faults,
kill it and bring it back (the instrument losing power and rebooting), stop it.

Why a process: the device under test must reach its simulator through the real client library over a real socket,
exactly as it reaches the instrument, and a killed server must look like a dead instrument (connections reset), not
like a Python object that raised. The child is :mod:`labloop.transports.simhost`; it binds 127.0.0.1 only, on free
ports, and exits when this object closes (or when the process that started it dies: it watches its stdin).

The object has the conformance kit's endpoint interface (``inject``, ``clear_faults``, ``drop_clients``,
``connection_kwargs``, ``close``), so ``labloop devices check FILE.yaml --simulated`` runs the same fault checks
as for a hand-written driver.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from labloop.errors import LabloopError

START_TIMEOUT = 30.0


class SimulatorProcess:
    def __init__(
        self, ref: str, options: dict[str, Any] | None = None, *, port: int = 0, start_timeout: float = START_TIMEOUT
    ):
        self.ref = ref
        self.start_timeout = float(start_timeout)
        self.options = dict(options or {})
        self.port = port  # 0 until started; kept across restarts so clients find the instrument where it was
        self.address = ""
        self.direct = ""
        self._control_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctl: socket.socket | None = None
        self._ctl_buf = b""
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - stderr of every (re)start; freed with this object
        self.proxied = True

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> SimulatorProcess:
        if self.alive:
            return self
        cmd = [
            sys.executable,
            "-m",
            "labloop.transports.simhost",
            self.ref,
            "--options",
            json.dumps(self.options),
            "--port",
            str(self.port),
        ]
        self._stderr.seek(0)
        self._stderr.truncate()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        assert self._proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._proc.stdout], [], [], max(left, 0))
            if not ready:
                self.close()
                raise LabloopError(
                    f"the simulator {self.ref} did not start within {self.start_timeout:g} s",
                    "run it by hand: python -m labloop.transports.simhost " + self.ref,
                )
            chunk = os.read(self._proc.stdout.fileno(), 4096)
            if not chunk:
                err = self._stderr_tail()
                self.close()
                raise LabloopError(
                    f"the simulator {self.ref} exited before it was ready: {err}",
                    "check the simulation block's 'server' and 'options'",
                )
            line += chunk
        info = json.loads(line)
        self.address, self.direct, self.port = info["address"], info["direct"], int(info["port"])
        #: whether faults on the wire (garbage, late replies, hang-ups) can be injected: a fault proxy stands in
        #: front of the server; not for protocols that announce their own ports (EPICS CA)
        self.proxied = bool(info.get("proxied", True))
        self._control_port = int(info["control"])
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def control_port(self) -> int:
        """The control socket's port (faults, state): what another process needs to steer this simulator."""
        return self._control_port

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """Kill the server process (SIGKILL: no goodbye on any connection), as a power cut would."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
        self._drop_control()

    def restart(self) -> SimulatorProcess:
        """Start again on the same client port (the instrument rebooted; its state is the power-on state)."""
        self.kill()
        return self.start()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        self._drop_control()
        if proc is not None and proc.poll() is None:
            try:
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(5)
            except (subprocess.TimeoutExpired, OSError):
                proc.kill()
                proc.wait(5)
        if proc is not None and proc.stdout:
            proc.stdout.close()

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the conformance kit's endpoint interface -------------------------------------------------------------------
    def connection_kwargs(self) -> dict[str, Any]:
        return {"address": self.address}

    def inject(self, kind: str, **kw: Any) -> None:
        self._ask({"op": "inject", "kind": kind, **kw})

    def clear_faults(self) -> None:
        if self.alive:
            self._ask({"op": "clear"})

    def drop_clients(self) -> None:
        self._ask({"op": "drop"})

    def state(self) -> dict[str, Any]:
        """The simulated instrument's model (for tests: what did the instrument see?)."""
        return dict(self._ask({"op": "state"})["state"])

    # -- internals ----------------------------------------------------------------------------------------------
    def _ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        if not self.alive:
            raise LabloopError(f"the simulator {self.ref} is not running", "start() it first")
        if self._ctl is None:
            self._ctl = socket.create_connection(("127.0.0.1", self._control_port), timeout=10)
        self._ctl.sendall((json.dumps(msg) + "\n").encode())
        while b"\n" not in self._ctl_buf:
            chunk = self._ctl.recv(65536)
            if not chunk:
                self._drop_control()
                raise LabloopError(f"the simulator {self.ref} closed its control socket", "restart it")
            self._ctl_buf += chunk
        line, _, self._ctl_buf = self._ctl_buf.partition(b"\n")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise LabloopError(f"the simulator {self.ref} refused {msg}: {reply.get('error')}")
        return reply

    def _drop_control(self) -> None:
        if self._ctl is not None:
            self._ctl.close()
        self._ctl, self._ctl_buf = None, b""

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip().splitlines()
        return " / ".join(text[-3:]) or "(no output)"
