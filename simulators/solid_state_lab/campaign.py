"""Point a campaign file at a running solid-state lab: what ``labloop demo --lab solid_state`` and the tests do when
the lab serves on free ports (``--base-port 0``) rather than the fixed ones experiments/solid_state.yaml names.

Why a rewrite and not a lookup at run time: the campaign file stays the record of which instrument was where (the
store keeps its text); the rewritten copy names the addresses the run really used.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from labloop.errors import LabloopError


def point_at(campaign: dict[str, Any], endpoints: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``campaign`` whose ``lab.devices.NAME.config.address`` is the ports file's address of NAME; the
    described instruments (a ``file`` in the ports file) also get the served lab's ``time_scale``, so their
    completion timeouts (in the instrument's own seconds: a furnace's is the longest firing) scale with it."""
    out = json.loads(json.dumps(campaign))
    served = endpoints["devices"]
    for name, dev in out.get("lab", {}).get("devices", {}).items():
        if name in served:
            config = dev.setdefault("config", {})
            config["address"] = served[name]["address"]
            if "file" in served[name] and endpoints.get("time_scale"):
                config["time_scale"] = float(endpoints["time_scale"])
    return out


def point_text_at(text: str, endpoints: dict[str, Any]) -> str:
    return yaml.safe_dump(point_at(yaml.safe_load(text), endpoints), sort_keys=False)


class ServedLab:
    """``labloop sim serve solid_state`` in a child process (the same command an operator runs), on free ports; the
    context manager waits for its ports file and stops it (SIGTERM: every server exits with it)."""

    def __init__(
        self,
        folder: Path,
        time_scale: float = 20000.0,
        faults: bool = False,
        start_timeout: float = 400.0,
        fault_rates: dict[str, float] | None = None,
        seed: int = 0,
    ):
        """``fault_rates``: rates (``FaultRates`` field -> probability) overriding the defaults, with ``faults``;
        ``seed``: the servers' random draws (which faults happen when)."""
        # absolute: the child runs in the folder, and a relative ports file would be read there (the demo's default
        # directory is relative: the parent would wait for a file the child wrote one folder deeper)
        self.folder = Path(folder).resolve()
        self.time_scale, self.faults, self.start_timeout = time_scale, faults, start_timeout
        self.fault_rates, self.seed = dict(fault_rates or {}), seed
        self.ports = self.folder / "solid_state_lab.json"
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoints: dict[str, Any] = {}

    def __enter__(self) -> ServedLab:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ports.unlink(missing_ok=True)
        cmd = self.command()
        with open(self.folder / "serve.log", "wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder, env=dict(os.environ)
            )
        deadline = time.monotonic() + self.start_timeout
        while not self.ports.exists():
            exited = self.proc.poll()
            if exited is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                last = [line for line in self.log().splitlines() if line.strip()][-3:]
                raise LabloopError(
                    "the solid-state lab's instrument servers "
                    + (
                        f"exited (code {exited})"
                        if exited is not None
                        else f"did not start in {self.start_timeout:g} s"
                    )
                    + (": " + " | ".join(last) if last else ""),
                    f"read {self.folder / 'serve.log'}; run `labloop sim serve solid_state` alone to see it start",
                )
            time.sleep(0.2)
        self.endpoints = json.loads(self.ports.read_text())
        return self

    def command(self) -> list[str]:
        """``labloop sim serve solid_state`` with this lab's options."""
        cmd = [sys.executable, "-m", "labloop", "sim", "serve", "solid_state", "--time-scale", str(self.time_scale)]
        cmd += ["--ports-file", str(self.ports), "--base-port", "0", "--faults" if self.faults else "--no-faults"]
        cmd += ["--seed", str(self.seed)]
        for name, rate in self.fault_rates.items():
            cmd += ["--fault-rate", f"{name}={rate}"]
        return cmd

    def log(self) -> str:
        path = self.folder / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __exit__(self, *exc: Any) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def demo(folder: Path, time_scale: float | None = None, faults: bool = True) -> Iterator[tuple[str, str]]:
    """``labloop demo --lab solid_state``: the lab served on free ports at a high time scale (5000: a 20-hour
    firing in about 15 s, long beside an optimizer's proposal, so the four furnaces fill) while the caller runs the
    bundled campaign pointed at it; yields (campaign text, label). ``faults``: the lab's random faults at their
    default rates (on, as a real lab has them)."""
    from importlib import resources

    text = resources.files("labloop_experiments").joinpath("solid_state.yaml").read_text(encoding="utf-8")
    with ServedLab(Path(folder) / "lab", time_scale=time_scale or 5000.0, faults=faults) as lab:
        yield point_text_at(text, lab.endpoints), "experiments/solid_state.yaml"
