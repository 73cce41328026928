"""A real daemon in a subprocess for tests: its own store, key folder and free ports, and users with keys."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import zmq

from labloop.control.client import Client
from labloop.errors import LabloopError
from labloop.identity.keys import ClientKey, ServerKeys
from labloop.store import Store


def add_user(store_url: str, name: str, role: str, server: ServerKeys) -> ClientKey:
    """A user row with a fresh CURVE pair (what `labloop users add` does), and the key their client needs."""
    public, secret = zmq.curve_keypair()
    st = Store(store_url)
    try:
        st.add_user(name, role, public.decode(), created_by="test")
    finally:
        st.close()
    return ClientKey(
        name=name,
        role=role,
        public_key=public.decode(),
        secret_key=secret.decode(),
        server_public_key=server.public.decode(),
    )


def key_file(tmp: Path, key: ClientKey) -> str:
    """Write ``key`` as its owner's key file (mode 0600, as `labloop users add` writes it); returns its path."""
    path = tmp / f"{key.name}.key"
    path.write_text(key.model_dump_json())
    os.chmod(path, 0o600)
    return str(path)


class DaemonProcess:
    """``labloop serve`` on ports the OS picks; ``client(key)`` talks to it."""

    def __init__(self, tmp_path: Path, store_url: str | None = None):
        self.tmp = tmp_path
        self.store_url = store_url or f"sqlite:///{tmp_path / 'lab.db'}"
        self.keys_dir = tmp_path / "daemon-keys"
        Store(self.store_url).close()
        self.server_keys = ServerKeys.load_or_create(self.keys_dir)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0, http: str | None = None) -> DaemonProcess:
        """Start (or start again, on the same store and keys) the daemon; waits until it listens. ``http``: also
        serve the dashboard (e.g. ``127.0.0.1:0`` for a free port; its URL lands in ``self.http``)."""
        (self.tmp / "daemon.out").write_bytes(b"")
        self.log = open(self.tmp / "daemon.out", "ab")  # noqa: SIM115 - open while the daemon runs; stop() closes it
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "labloop",
                "serve",
                "--store",
                self.store_url,
                "--keys",
                str(self.keys_dir),
                "--control",
                "tcp://127.0.0.1:*",
                "--stream",
                "tcp://127.0.0.1:*",
            ]
            + (["--http", http] if http else []),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
        )  # files its labs write land in tmp
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = (self.tmp / "daemon.out").read_text(errors="replace")
            m = re.search(r"control (\S+)\s+stream (\S+)", text)
            web = re.search(r"dashboard (\S+)", text)
            if m and (http is None or web):
                self.control, self.stream = m.group(1), m.group(2)
                self.http = web.group(1) if web else None
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited: {text}")
            time.sleep(0.05)
        raise RuntimeError("the daemon did not start")

    def client(self, key: ClientKey, timeout: float = 30.0) -> Client:
        return Client(self.control, key, timeout)

    def output(self) -> str:
        return (self.tmp / "daemon.out").read_text(errors="replace")

    def stop(self, campaigns: bool = True) -> None:
        """Stop the daemon; with ``campaigns`` also the campaign processes it started (they outlive a daemon)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if campaigns:
            for pid in self.campaign_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if not self.log.closed:
            self.log.close()

    def kill_host(self) -> list[int]:
        """What a dying machine does to a daemon: SIGKILL to it and to every campaign process it started (they
        outlive a daemon that merely stops). Returns the pids killed."""
        assert self.proc is not None
        victims = [self.proc.pid] + [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.log.close()
        return victims

    def campaign_pids(self) -> list[int]:
        """The campaign processes started for this daemon's store (found by the store in their command line)."""
        out = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmd = proc.info.get("cmdline") or []
            if "labloop.control.child" in cmd and self.store_url in cmd:
                out.append(proc.info["pid"])
        return out


def wait_until(predicate, timeout: float = 60.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except LabloopError:
            value = None
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not reached in time")
