"""Start ``labloop agent`` as a real child process, with fresh keys: for ``labloop devices check --remote``, the
tests and the benchmarks (the same process an operator starts on an instrument's computer).

Why a helper: proving the remote path means a real process boundary (a ``kill -9`` must really kill the agent) and
real CURVE keys on both ends; every caller needs the same few steps to get there.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zmq

from labloop.errors import LabloopError

_SERVING = re.compile(r"on (tcp://\S+) \(CURVE")


def write_key_file(path: Path, *, name: str, role: str, pair: tuple[bytes, bytes], server_public: bytes) -> Path:
    """A key file as ``labloop users add`` writes it (JSON, mode 0600)."""
    data = {
        "name": name,
        "role": role,
        "public_key": pair[0].decode(),
        "secret_key": pair[1].decode(),
        "server_public_key": server_public.decode(),
        "control": None,
        "stream": None,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    return path


class AgentProcess:
    """``labloop agent TARGET --config ... --bind ... --name NAME --key ...`` in a child process.

    ``client`` is the CURVE pair a proxy uses (the agent trusts its public key, as it trusts the daemon's);
    ``agent_public`` the agent's public key. ``kill()`` is a ``kill -9``; ``start()`` again reuses the same keys and
    address, as an operator restarting the agent would."""

    def __init__(
        self,
        target: str,
        config: Mapping[str, Any] | None = None,
        *,
        name: str = "dut",
        bind: str = "tcp://127.0.0.1:*",
        folder: str | Path | None = None,
        client: tuple[bytes, bytes] | None = None,
        key_file: str | Path | None = None,
    ):
        self.target, self.name, self.bind = target, name, bind
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if folder is not None:
            self.folder = Path(folder)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="labloop-agent-")
            self.folder = Path(self._tmp.name)
        if key_file is not None:  # made by `labloop users add NAME --role agent`: it trusts the daemon's key
            self.key_file = Path(key_file)
            self.agent_public = json.loads(self.key_file.read_text())["public_key"].encode()
            self.client = client
        else:
            self.client = client or zmq.curve_keypair()
            pair = zmq.curve_keypair()
            self.agent_public = pair[0]
            self.key_file = write_key_file(
                self.folder / f"{name}.key", name=name, role="agent", pair=pair, server_public=self.client[0]
            )
        self.config_file = self.folder / f"{name}.json"
        self.config_file.write_text(json.dumps(dict(config or {})))
        self.proc: subprocess.Popen[str] | None = None
        self.address: str | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 30.0) -> AgentProcess:
        bind = self.address or self.bind  # a restart listens where the first one did
        cmd = [
            sys.executable,
            "-m",
            "labloop.control.agent",
            self.target,
            "--config",
            str(self.config_file),
            "--bind",
            bind,
            "--name",
            self.name,
            "--key",
            str(self.key_file),
        ]
        env = {**os.environ, "COLUMNS": "400", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        found: dict[str, str] = {}
        ready = threading.Event()

        def pump(proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.output.append(line.rstrip())
                m = _SERVING.search(line)
                if m and not ready.is_set():
                    found["address"] = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=pump, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if time.monotonic() > deadline:
                break
        if "address" not in found:
            self.stop()
            raise LabloopError(
                f"the agent for {self.target} did not start: " + " / ".join(self.output[-8:]),
                "run the same `labloop agent` command by hand to see why",
            )
        self.address = found["address"]
        return self

    def connect(self, **kwargs: Any) -> Any:
        """A :class:`~labloop.control.remote.RemoteDevice` proxy of the served device."""
        from labloop.control.remote import connect

        assert self.address is not None
        return connect(self.address, self.agent_public, name=self.name, keys=self.client, **kwargs)

    def kill(self) -> None:
        """``kill -9``: no goodbye, no cleanup, as when the agent's computer loses power."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
