"""Collaborative robot arm over TCP: a dashboard server for program control and safety, a command channel for moves.

The protocol is modeled on Universal Robots' dashboard server (TCP port 29999, one ASCII command per line, one reply
line each; replies quoted here are the controller's own) plus a small line-based command channel served by the
robot program the integrator installs on the controller (``labloop.urp``, a URScript socket server on
``command_port``). Both channels are ``\\n``-terminated.

**Dashboard** (greets each client with ``Connected: Universal Robots Dashboard Server``)::

    safetystatus              -> "Safetystatus: NORMAL" | "Safetystatus: PROTECTIVE_STOP" | other safety states
    robotmode                 -> "Robotmode: RUNNING" | "Robotmode: POWER_OFF" | "Robotmode: IDLE" | ...
    programState              -> "PLAYING <program>" | "STOPPED <program>" | "PAUSED <program>"
    load <program>            -> "Loading program: <program>" | "File not found: <program>"
    play                      -> "Starting program" | "Failed to execute: play"
    stop                      -> "Stopped" | "Failed to execute: stop"          (halts any motion)
    unlock protective stop    -> "Protective stop releasing" | "Cannot unlock protective stop..."
    power on / brake release  -> "Powering on" / "Brake releasing"               (never sent by the driver)

**Command channel** (only while the program plays)::

    movej <taught position>   -> "ok" when arrived | "error <text>" (e.g. "error protective stop",
                                 "error program stopped", "error unknown position 'x'")
    gripper open|close        -> "ok" | "error <text>"
    where                     -> "at <position>"
    positions                 -> "positions <name> <name> ..."

Any other reply is malformed and fails the move with the raw reply in the error.

**What the driver does.** ``set(Move(sample, source, destination))`` checks (safetystatus NORMAL, robotmode RUNNING;
loads and plays the program if it is not playing), then ``movej <source>`` (unless already there), ``gripper close``,
``movej <destination>``, ``gripper open``. A protective stop fails the Status with a reason that says what to do;
the driver never releases a protective stop by itself (a person must look first): call
:meth:`RobotArm.unlock_protective_stop` once the cause is cleared. ``stop()`` sends the dashboard ``stop``, which halts
the motion; the move's Status fails and the next move re-starts the program.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from labloop.errors import DeviceError

from .base import Health, Move, Robot
from .tcp import LineTransport, ReplyError, TcpDevice

PROGRAM_STATES = ("PLAYING", "STOPPED", "PAUSED")
PROTECTIVE_STOP_FIX = (
    "find and remove the cause (collision, obstacle, dropped sample), check the sample, then "
    "release the stop on the pendant or with unlock_protective_stop(); the next move restarts the "
    "program"
)


class RobotArm(TcpDevice, Robot):
    """A collaborative arm moving samples between taught ``positions`` (see the module docstring for the protocol)."""

    simulator: ClassVar[str] = "labloop_simulators.endpoints.robot_arm_server:RobotArmServer"

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str,
        host: str,
        dashboard_port: int = 29999,
        command_port: int = 30010,
        positions: tuple[str, ...] | list[str] = ("home", "rack", "chamber", "smu", "load_lock"),
        program: str = "labloop.urp",
        timeout: float = 2.0,
        move_timeout: float = 60.0,
        status_timeout: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(prefix, name=name, **kwargs)
        self.positions = tuple(positions)
        self.program = program
        self.move_timeout = float(move_timeout)
        self.default_timeout = float(status_timeout) if status_timeout else 2 * self.move_timeout + 10 * timeout
        self.dashboard = LineTransport(host, dashboard_port, timeout=timeout, greeting=True, name=f"{name} dashboard")
        self.command = LineTransport(host, command_port, timeout=timeout, name=f"{name} command channel")
        self._transports = (self.dashboard, self.command)
        self._stop = threading.Event()

    # -- labloop role -----------------------------------------------------------------------------------------------
    def set(self, move: Move) -> Any:
        self._stop.clear()
        return super().set(move)

    def do_move(self, move: Move) -> None:
        try:
            self._ensure_running()
            if self.at.get() != move.source:
                self._command(f"movej {move.source}")
                self.at.put(move.source)
            self._command("gripper close")
            self.holding.put(move.sample)
            self._command(f"movej {move.destination}")
            self.at.put(move.destination)
            self._command("gripper open")
            self.holding.put("")
        except DeviceError:
            if self._stop.is_set():
                self.at.put("unknown")
                raise DeviceError(
                    f"{self.name}: move stopped (stop() was called) during {move}",
                    "check where the arm and the sample are, then move again",
                ) from None
            raise

    def stop(self, *, success: bool = False) -> None:
        """Halt any motion now (dashboard ``stop``); a move in progress fails."""
        self._stop.set()
        try:
            self.dashboard.query("stop")
        except DeviceError:
            self.command.abort()  # dashboard unreachable: at least cut the move's channel so its Status fails
        super().stop(success=success)

    def health(self) -> Health:
        try:
            safety = self._dash("safetystatus", "Safetystatus:")
            mode = self._dash("robotmode", "Robotmode:")
        except DeviceError as exc:
            return Health(False, exc.problem)
        if safety != "NORMAL":
            return Health(False, f"{self.name}: safety status {safety}")
        if mode != "RUNNING":
            return Health(False, f"{self.name}: robot mode {mode} (power on and release the brakes)")
        return Health(True, "ready")

    def unlock_protective_stop(self) -> None:
        """Release a protective stop (an operator action: only after the cause was found and cleared)."""
        reply = self.dashboard.query("unlock protective stop")
        if not reply.lower().startswith("protective stop releasing"):
            raise DeviceError(
                f"{self.name}: the controller refused to release the protective stop: {reply!r}",
                "wait a few seconds after the stop and check the pendant for the cause",
            )

    # -- protocol ---------------------------------------------------------------------------------------------------
    def _dash(self, command: str, prefix: str) -> str:
        raw = self.dashboard.query(command)
        if not raw.lower().startswith(prefix.lower()):
            raise ReplyError(self.name, command, raw, repr(prefix + " <value>"))
        return raw[len(prefix) :].strip()

    def _ensure_running(self) -> None:
        safety = self._dash("safetystatus", "Safetystatus:")
        if safety == "PROTECTIVE_STOP":
            raise DeviceError(f"{self.name}: the arm is in protective stop", PROTECTIVE_STOP_FIX)
        if safety != "NORMAL":
            raise DeviceError(f"{self.name}: safety status is {safety}", "clear the safety condition on the pendant")
        mode = self._dash("robotmode", "Robotmode:")
        if mode != "RUNNING":
            raise DeviceError(
                f"{self.name}: robot mode is {mode}, not RUNNING",
                "power the arm on and release the brakes (pendant), then move again",
            )
        raw = self.dashboard.query("programState")
        state, _, loaded = raw.partition(" ")
        if state not in PROGRAM_STATES:
            raise ReplyError(self.name, "programState", raw, "'PLAYING|STOPPED|PAUSED <program>'")
        if state == "PLAYING" and loaded.strip() == self.program:
            return
        if loaded.strip() != self.program:
            reply = self.dashboard.query(f"load {self.program}")
            if not reply.startswith("Loading program"):
                raise DeviceError(
                    f"{self.name}: cannot load {self.program}: controller said {reply!r}",
                    f"install {self.program} on the controller (see labloop_devices.robot_arm)",
                )
        self._check_stopped()
        reply = self.dashboard.query("play")
        if reply != "Starting program":
            raise DeviceError(
                f"{self.name}: cannot start {self.program}: controller said {reply!r}",
                "check the pendant for a popup or a safety condition",
            )

    def _check_stopped(self) -> None:
        if self._stop.is_set():
            raise DeviceError(f"{self.name}: stopped", "move again")

    def _command(self, line: str) -> None:
        self._check_stopped()
        reply = self.command.query(line, timeout=self.move_timeout)
        if reply == "ok":
            return
        if not reply.startswith("error "):
            raise ReplyError(self.name, line, reply, "'ok' or 'error <text>'")
        text = reply[len("error ") :]
        if "protective stop" in text.lower():
            self.at.put("unknown")
            raise DeviceError(
                f"{self.name}: protective stop during {line!r} (controller said {reply!r})", PROTECTIVE_STOP_FIX
            )
        raise DeviceError(
            f"{self.name}: the controller refused {line!r}: {reply!r}",
            "check the taught positions and the program on the controller",
        )
