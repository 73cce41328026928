"""A simulated collaborative arm: a dashboard server and a line command channel, as documented in
``labloop_devices.robot_arm`` (modeled on Universal Robots' dashboard server, port 29999).

Two TCP listeners share one arm: ``dashboard`` (program control, modes, safety status; greets each client with
``Connected: Universal Robots Dashboard Server``) and ``command`` (``movej <position>``, ``gripper open|close``,
``where``, ``positions``; replies ``ok`` / ``error <text>`` / a value). A ``movej`` takes ``move_time`` seconds and
can be cut short by the dashboard's ``stop`` (reply ``error program stopped``) or by a protective stop.

Faults: everything :class:`~labloop_simulators.endpoints.base.LineServer` injects (``slow``, ``garbage``,
``silent``, ``disconnect``; they apply to the next matching request on either channel), plus
``inject("protective_stop")``: the next ``movej`` stops half-way, ``safetystatus`` turns ``PROTECTIVE_STOP`` and the
program stops, as when the arm hits something. :meth:`RobotArmServer.protective_stop` does it at once.
"""

from __future__ import annotations

import threading
from typing import Any

from .base import GARBAGE, Fault, FaultPlan, LineServer

BANNER = "Connected: Universal Robots Dashboard Server"
DEFAULT_POSITIONS = ("home", "rack", "chamber", "smu", "load_lock")


class RobotArmServer:
    """The simulated arm. ``positions`` are the taught positions; ``move_time`` seconds per ``movej``."""

    def __init__(
        self,
        *,
        positions: tuple[str, ...] | list[str] = DEFAULT_POSITIONS,
        move_time: float = 0.05,
        gripper_time: float = 0.01,
        program: str = "labloop.urp",
        playing: bool = True,
        host: str = "127.0.0.1",
    ):
        self.faults = FaultPlan()
        self.taught = tuple(positions)
        self.move_time = move_time
        self.gripper_time = gripper_time
        self.programs = {program}
        self.loaded: str | None = program
        self.program_state = "PLAYING" if playing else "STOPPED"
        self.mode = "RUNNING"
        self.safety = "NORMAL"
        self.position = "home"
        self.gripper = "open"
        self.moves: list[str] = []
        self._lock = threading.RLock()
        self._abort = threading.Event()
        self.dashboard = _Dashboard(self, host=host, faults=self.faults)
        self.command = _Command(self, host=host, faults=self.faults)

    # -- lifecycle, faults (same surface as LineServer) -------------------------------------------------------------
    def start(self) -> RobotArmServer:
        self.dashboard.start()
        self.command.start()
        return self

    def close(self) -> None:
        self._abort.set()
        self.dashboard.close()
        self.command.close()

    def __enter__(self) -> RobotArmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def host(self) -> str:
        return self.dashboard.host

    def connection_kwargs(self) -> dict[str, Any]:
        return {"host": self.host, "dashboard_port": self.dashboard.port, "command_port": self.command.port}

    @property
    def requests(self) -> list[str]:
        return self.dashboard.requests + self.command.requests

    def inject(
        self, kind: str, *, count: int | None = 1, delay: float = 1.0, on: str | None = None, text: str = GARBAGE
    ) -> None:
        if kind == "protective_stop":
            self.faults.add(Fault(kind, count, delay, on or "movej", text))
        else:
            self.dashboard.inject(kind, count=count, delay=delay, on=on, text=text)

    def clear_faults(self) -> None:
        self.faults.clear()

    def drop_clients(self) -> None:
        self.dashboard.drop_clients()
        self.command.drop_clients()

    def protective_stop(self) -> None:
        """The arm hit something: protective stop now (the program stops, any motion halts)."""
        with self._lock:
            self.safety = "PROTECTIVE_STOP"
            self._stop_program()

    def _stop_program(self) -> None:
        self.program_state = "STOPPED"
        self._abort.set()

    # -- dashboard --------------------------------------------------------------------------------------------------
    def dashboard_reply(self, line: str) -> str:
        cmd = line.strip()
        low = cmd.lower()
        with self._lock:
            if low.startswith("load "):
                prog = cmd[5:].strip()
                if prog not in self.programs:
                    return f"File not found: {prog}"
                self.loaded, self.program_state = prog, "STOPPED"
                return f"Loading program: {prog}"
            if low == "play":
                if self.safety != "NORMAL" or self.mode != "RUNNING" or not self.loaded:
                    return "Failed to execute: play"
                self.program_state = "PLAYING"
                self._abort.clear()
                return "Starting program"
            if low == "stop":
                if self.program_state != "PLAYING":
                    return "Failed to execute: stop"
                self._stop_program()
                return "Stopped"
            if low == "pause":
                return "Pausing program" if self.program_state == "PLAYING" else "Failed to execute: pause"
            if low == "programstate":
                return f"{self.program_state} {self.loaded or '<unnamed>'}"
            if low == "robotmode":
                return f"Robotmode: {self.mode}"
            if low == "safetystatus":
                return f"Safetystatus: {self.safety}"
            if low == "unlock protective stop":
                if self.safety != "PROTECTIVE_STOP":
                    return "Cannot unlock protective stop: robot is not in protective stop"
                self.safety = "NORMAL"
                return "Protective stop releasing"
            if low == "power on":
                self.mode = "IDLE" if self.mode in ("POWER_OFF", "IDLE") else self.mode
                return "Powering on"
            if low == "power off":
                self.mode = "POWER_OFF"
                self._stop_program()
                return "Powering off"
            if low == "brake release":
                if self.mode == "IDLE":
                    self.mode = "RUNNING"
                return "Brake releasing"
            if low == "quit":
                return "Disconnected"
        return f"Could not understand: '{cmd}'"

    # -- command channel --------------------------------------------------------------------------------------------
    def command_reply(self, line: str) -> str:
        words = line.strip().split()
        if not words:
            return "error empty command"
        verb, args = words[0].lower(), words[1:]
        if verb == "where":
            return f"at {self.position}"
        if verb == "positions":
            return "positions " + " ".join(self.taught)
        with self._lock:
            if self.program_state != "PLAYING":
                return "error program not running"
            if self.safety != "NORMAL":
                return f"error safety status {self.safety}"
        if verb == "movej" and len(args) == 1:
            return self._movej(args[0], line)
        if verb == "gripper" and args in (["open"], ["close"]):
            if self._abort.wait(self.gripper_time):
                return "error program stopped"
            self.gripper = args[0]
            return "ok"
        return f"error unknown command '{line.strip()}'"

    def _movej(self, target: str, line: str) -> str:
        if target not in self.taught:
            return f"error unknown position '{target}' (taught: {' '.join(self.taught)})"
        self._abort.clear()
        crash = self.faults.take(("protective_stop",), line)
        if crash is not None:
            self._abort.wait(self.move_time / 2)
            self.protective_stop()
            self.position = "between"
            return "error protective stop"
        if self._abort.wait(self.move_time):
            self.position = "between"
            return "error program stopped" if self.safety == "NORMAL" else "error protective stop"
        self.position = target
        self.moves.append(target)
        return "ok"


class _Dashboard(LineServer):
    greeting = BANNER

    def __init__(self, arm: RobotArmServer, **kwargs: Any):
        super().__init__(**kwargs)
        self.arm = arm

    def handle(self, line: str) -> str | None:
        return self.arm.dashboard_reply(line)


class _Command(LineServer):
    def __init__(self, arm: RobotArmServer, **kwargs: Any):
        super().__init__(**kwargs)
        self.arm = arm

    def handle(self, line: str) -> str | None:
        return self.arm.command_reply(line)
