"""Is a campaign's runner alive? Host + pid + process start time + a recent heartbeat, together.

Why all four: a pid alone is reused by the OS after a crash (a stranger's process would count as our runner); a
heartbeat alone cannot tell a runner that is hung (alive, not beating: do not start a second one beside it) from
one that is gone. On the runner's own host all four are checked; from another host only the heartbeat can be.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psutil

from labloop.store.times import utc

#: The runner beats every second; this many seconds of silence mean it no longer answers.
STALE_AFTER_S = 10.0
ACTIVE_STATES = ("running", "paused")
#: A campaign in one of these states is over: resuming it would reopen it.
ENDED_STATES = ("finished", "stopped")


@dataclass(frozen=True)
class Liveness:
    state: str  # alive | hung | dead | ended
    host: str | None
    pid: int | None
    heartbeat_age: float | None

    @property
    def alive(self) -> bool:
        return self.state == "alive"

    @property
    def present(self) -> bool:
        """A process that still exists (alive or hung): nobody may start a second runner beside it."""
        return self.state in ("alive", "hung")

    def describe(self) -> str:
        where = f"{self.host}:{self.pid}" if self.host else "unknown process"
        beat = f"last heartbeat {self.heartbeat_age:.0f} s ago" if self.heartbeat_age is not None else "no heartbeat"
        if self.state == "alive":
            return f"runner {where} is alive ({beat})"
        if self.state == "hung":
            return (
                f"runner {where} still exists but does not answer ({beat}); stop it (kill {self.pid}) and run "
                f"`labloop resume`"
            )
        if self.state == "dead":
            return f"no runner: {where} is gone ({beat}); run `labloop resume` to continue the campaign"
        return "the campaign has ended"


def heartbeat_age(beat: datetime | None, now: datetime | None = None) -> float | None:
    if beat is None:
        return None
    beat = utc(beat)
    return ((now or datetime.now(UTC)) - beat).total_seconds()


def _same_process(pid: int, started: float | None) -> bool | None:
    """True/False when this host can tell; None when it cannot (no start time recorded)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = proc.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return None
    if started is None:
        return None
    return abs(created - started) < 1.0


def liveness(campaign: Any, now: datetime | None = None) -> Liveness:
    """The liveness of ``campaign``'s runner (``runner`` = host:pid, ``runner_started``, ``heartbeat_at``)."""
    host, _, pid_s = (campaign.runner or "").rpartition(":")
    pid = int(pid_s) if pid_s.isdigit() else None
    age = heartbeat_age(campaign.heartbeat_at, now)
    if campaign.state not in ACTIVE_STATES:
        return Liveness("ended", host or None, pid, age)
    fresh = age is not None and age < STALE_AFTER_S
    if host == socket.gethostname() and pid is not None:
        same = _same_process(pid, getattr(campaign, "runner_started", None))
        if same is False:
            return Liveness("dead", host, pid, age)
        if same is True:
            return Liveness("alive" if fresh else "hung", host, pid, age)
    return Liveness("alive" if fresh else "dead", host or None, pid, age)


def process_gone(host: str, pid: int, started: float | None) -> bool:
    """Is the process ``pid`` (started at ``started``) of ``host`` certainly gone? Only this host can tell; from
    another one the answer is False (not known)."""
    return host == socket.gethostname() and _same_process(pid, started) is False
