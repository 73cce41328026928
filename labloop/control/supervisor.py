"""The daemon's campaign processes: start them, notice when one dies, and act on the campaign's crash policy.

Each campaign runs in ``python -m labloop.control.child``, so a crash touches nothing else. The daemon is the
parent: ``Popen.poll`` tells an exit the moment it happens (no heartbeat to age out), and the main loop polls every
:data:`CHECK_S`, so a ``kill -9`` is noticed well within 3 s. A child that exits while its campaign is still
running or paused died: the death is audited, noted on the campaign, announced on the stream, and the campaign is
resumed (``scheduling.on_crash: resume``, at most ``scheduling.crash_resumes`` times) or left for an operator.

Campaign processes outlive the daemon (their own session): stopping or restarting the daemon stops no campaign. A
daemon that starts adopts the campaigns of its store whose runner is alive on its host (the liveness module: host,
pid, process start time and heartbeat together) and watches those processes through psutil, which sees a ``kill
-9`` as promptly as ``Popen.poll`` does for its own children.

Several daemons may share one (PostgreSQL) store, each on its own machine. A campaign is leased to one runner at a
time (:mod:`labloop.store.leases`); a runner whose host dies stops renewing, and once its lease has expired
:meth:`Supervisor.take_over` (every :data:`TAKEOVER_S`, on any daemon) resumes it in a child of its own. The child's
resume takes the lease atomically, so of two daemons that try at once exactly one child wins; the other child exits
with a refusal that is not a crash. A takeover obeys the same crash policy as a death this daemon saw itself
(``on_crash: wait`` leaves the campaign for an operator; ``crash_resumes`` counts takeovers too).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from labloop.errors import LabloopError
from labloop.run.liveness import ACTIVE_STATES, liveness
from labloop.run.provenance import submitter
from labloop.spec import spec_from_text
from labloop.store import Store
from labloop.store.events import add_events, last_seq

CHECK_S = 0.2
CRASH_ACTION = "daemon.crash"
TAKEOVER_ACTION = "daemon.takeover"
#: Seconds between two looks for campaigns whose runner died elsewhere (their lease expired).
TAKEOVER_S = 1.0
#: Seconds before a campaign whose takeover failed for another reason than a lost race is tried again.
TAKEOVER_RETRY_S = 60.0
SPAWN_TIMEOUT_S = 300.0  # building a real lab (connecting instruments) may take a while


@dataclass
class Child:
    popen: subprocess.Popen[bytes] | None  # None: adopted from an earlier daemon (watched through psutil)
    user: str
    log: Path | None
    campaign_id: int | None = None
    name: str = ""
    started: float = field(default_factory=time.monotonic)
    pid: int = 0
    create_time: float | None = None

    def poll(self) -> int | None:
        """The exit code once the process has ended (an adopted one: -9 when it is gone, as the code is lost)."""
        if self.popen is not None:
            return self.popen.poll()
        try:
            proc = psutil.Process(self.pid)
            if proc.status() == psutil.STATUS_ZOMBIE or (
                self.create_time is not None and abs(proc.create_time() - self.create_time) >= 1.0
            ):
                return -9
        except psutil.NoSuchProcess:
            return -9
        except psutil.AccessDenied:
            return None
        return None


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exited with code {rc}"


class Supervisor:
    """Campaign processes of one daemon. ``spawn`` and ``handle_exit`` block (run them on worker threads);
    ``reap`` only polls (the main loop calls it). ``on_watch(campaign_id, name)`` tells the stream which campaigns
    to publish."""

    def __init__(self, store: Store, store_url: str, logs: Path, on_watch: Callable[[int, str], None]):
        self.store, self.store_url, self.logs = store, store_url, logs
        self.on_watch = on_watch
        self._children: dict[int, Child] = {}  # pid -> child (guarded by _lock)
        self._taking: set[int] = set()  # campaign ids a takeover child is being started for (guarded by _lock)
        self._retry_at: dict[int, float] = {}  # campaign id -> when a failed takeover may be tried again
        self._lock = threading.Lock()
        logs.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------------------- start
    def spawn(
        self,
        user: str,
        *,
        text: str | None = None,
        source: str = "<submitted>",
        time_scale: float | None = None,
        resume: int | None = None,
        takeover_from: str | None = None,
    ) -> dict[str, Any]:
        """Start a child for a new campaign (``text``) or to resume one; returns what the child reported once it
        validated and stored the campaign. Raises :class:`LabloopError` with the child's own refusal."""
        cmd = [
            sys.executable,
            "-m",
            "labloop.control.child",
            "--store",
            self.store_url,
            "--user",
            user,
            "--source",
            source,
        ]
        if time_scale is not None:
            cmd += ["--time-scale", repr(time_scale)]
        if resume is not None:
            cmd += ["--resume", str(resume)]
        if takeover_from is not None:
            cmd += ["--takeover-from", takeover_from]
        r, w = os.pipe()
        log = self.logs / f"child-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns()}.log"
        try:
            with open(log, "wb") as out:
                popen = subprocess.Popen(
                    cmd + ["--report-fd", str(w)],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    pass_fds=(w,),
                    start_new_session=True,
                )
        finally:
            os.close(w)
        child = Child(popen, user, log, pid=popen.pid)
        with self._lock:
            self._children[popen.pid] = child
        try:
            assert popen.stdin is not None
            try:
                popen.stdin.write((text or "").encode("utf-8"))
                popen.stdin.close()
            except BrokenPipeError:
                pass
            report = self._read_report(r, popen)
        finally:
            os.close(r)
        if not report.get("ok"):
            err = report.get("error") or {}
            raise LabloopError(err.get("problem", "the campaign did not start"), err.get("fix", ""))
        child.campaign_id, child.name = int(report["campaign_id"]), str(report["name"])
        self.on_watch(child.campaign_id, child.name)
        return report

    def _read_report(self, fd: int, popen: subprocess.Popen[bytes]) -> dict[str, Any]:
        data = b""
        deadline = time.monotonic() + SPAWN_TIMEOUT_S
        while b"\n" not in data and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                data += chunk
        try:
            return json.loads(data.split(b"\n", 1)[0].decode())
        except ValueError:
            rc = popen.poll()
            how = _describe_exit(rc) if rc is not None else "did not report"
            return {
                "ok": False,
                "error": {
                    "problem": f"the campaign process {how} before the campaign started{self._log_tail(popen.pid)}",
                    "fix": "see the daemon's log folder (--keys DIR/logs) for its whole output",
                },
            }

    def _log_tail(self, pid: int) -> str:
        with self._lock:
            child = self._children.get(pid)
        if child is None or child.log is None:
            return ""
        try:
            lines = child.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f": {lines[-1]}" if lines else ""

    # ------------------------------------------------------------------------------------------- watch
    def reap(self) -> list[tuple[Child, int]]:
        """Children that exited since the last call, with their return codes (never blocks)."""
        out = []
        with self._lock:
            for pid, child in list(self._children.items()):
                rc = child.poll()
                if rc is not None:
                    del self._children[pid]
                    out.append((child, rc))
        return out

    def adopt(self) -> list[str]:
        """Take over the running campaigns of the store whose process lives on this host (an earlier daemon's
        children, or a `labloop run`): their deaths are noticed and handled like our own children's."""
        adopted = []
        for c in self.store.campaigns():
            life = liveness(c)
            if c.state not in ACTIVE_STATES or not life.present or life.host != socket.gethostname() or not life.pid:
                continue
            with self._lock:
                if life.pid in self._children:
                    continue
                self._children[life.pid] = Child(
                    None,
                    submitter(self.store.audit_log(c.id)),
                    None,
                    c.id,
                    c.name,
                    pid=life.pid,
                    create_time=c.runner_started,
                )
            self.on_watch(c.id, c.name)
            adopted.append(f"campaign '{c.name}' (id {c.id}, pid {life.pid})")
        return adopted

    def running(self) -> dict[int, Child]:
        """campaign id -> child, for the campaigns whose process is running now."""
        with self._lock:
            return {c.campaign_id: c for c in self._children.values() if c.campaign_id is not None}

    def handle_exit(self, child: Child, rc: int) -> str | None:
        """Act on a child's exit: nothing when its campaign ended; else record the death and apply the policy.
        Returns what was done (None when the campaign had ended)."""
        if child.campaign_id is None:
            return None
        c = self.store.campaign(child.campaign_id)
        if c.state not in ACTIVE_STATES:
            return None
        how = _describe_exit(rc)
        policy, crashes, limit = self._policy(c)
        resume = policy == "resume" and crashes <= limit
        if resume:
            action = f"resuming it (automatic resume {crashes} of at most {limit})"
        elif policy == "resume":
            action = (
                f"left for an operator: it died {crashes} times, more than scheduling.crash_resumes = {limit}; "
                f"find the cause in the daemon's logs, then `labloop resume --campaign {c.id}`"
            )
        else:
            action = f"left for an operator (scheduling.on_crash: wait): `labloop resume --campaign {c.id}`"
        if child.popen is None:
            how = "ended (an adopted process: its exit code is unknown)"
        message = f"campaign process {child.pid} {how}; {action}"
        self.store.audit(
            c.id,
            CRASH_ACTION,
            {
                "pid": child.pid,
                "returncode": rc,
                "exit": how,
                "crashes": crashes,
                "resume": resume,
                "log": str(child.log) if child.log else None,
            },
            user="labloop-daemon",
        )
        self.store.update_campaign(c.id, note=message)
        self.announce(c.id, "crash", {"pid": child.pid, "exit": how, "resume": resume, "message": message})
        if resume:
            with self._lock:
                self._taking.add(c.id)  # not taken over by this daemon's own takeover loop meanwhile
            try:
                self.spawn(submitter(self.store.audit_log(c.id)), resume=c.id)
            except LabloopError as exc:
                self.announce(c.id, "alert", {"message": f"automatic resume failed: {exc.problem}"})
                self.store.update_campaign(c.id, note=f"{message}; automatic resume failed: {exc.problem}")
            finally:
                with self._lock:
                    self._taking.discard(c.id)
        return message

    def _policy(self, c: Any) -> tuple[str, int, int]:
        """The campaign's crash policy, the number this death would be (deaths seen here and takeovers by any
        daemon both count), and the limit of automatic resumes."""
        spec = spec_from_text(c.spec_text, f"<stored campaign {c.name}>")
        crashes = 1 + sum(1 for a in self.store.audit_log(c.id) if a.action in (CRASH_ACTION, TAKEOVER_ACTION))
        return spec.scheduling.on_crash, crashes, spec.scheduling.crash_resumes

    # ------------------------------------------------------------------------------------------- take over
    def take_over(self) -> list[str]:
        """Resume, each in a child of this daemon, the running or paused campaigns whose lease has expired (their
        runner died: its host, or its process on another daemon's host) and whose crash policy allows it. Returns
        one line per takeover, per lost race and per refusal (for the daemon's output)."""
        lines = []
        now = time.monotonic()
        mine = set(self.running())
        for lease in self.store.takeover_candidates():
            cid = lease.campaign_id
            with self._lock:
                if cid in mine or cid in self._taking or self._retry_at.get(cid, 0.0) > now:
                    continue  # ours (run or adopted here), already being taken, or failed a moment ago
                self._taking.add(cid)
            try:
                line = self._take(cid, lease.holder)
            finally:
                with self._lock:
                    self._taking.discard(cid)
            if line:
                lines.append(line)
        return lines

    def _take(self, cid: int, holder: str) -> str | None:
        c = self.store.campaign(cid)
        if c.state not in ACTIVE_STATES:
            return None
        policy, crashes, limit = self._policy(c)
        if policy != "resume" or crashes > limit:  # left for an operator, on every daemon alike
            self._retry_at[cid] = time.monotonic() + TAKEOVER_RETRY_S  # (an operator's resume takes the lease)
            return None
        try:
            self.spawn(submitter(self.store.audit_log(cid)), resume=cid, takeover_from=holder)
        except LabloopError as exc:  # another daemon won the race (its child holds the lease now), or a refusal
            held = self.store.lease(cid)
            if held is None or held.holder == holder:  # nobody else took it: a real refusal, try again later
                self._retry_at[cid] = time.monotonic() + TAKEOVER_RETRY_S
                return f"could not take over campaign '{c.name}' (id {cid}): {exc.problem}"
            return f"did not take over campaign '{c.name}' (id {cid}): it is held by runner {held.holder} now"
        self._retry_at.pop(cid, None)
        held = self.store.lease(cid)
        by = held.holder if held is not None else "?"
        self.store.audit(
            cid,
            TAKEOVER_ACTION,
            {"from": holder, "to": by, "daemon": _daemon_name(), "crashes": crashes},
            user="labloop-daemon",
        )
        self.store.update_campaign(
            cid, note=f"taken over by daemon {_daemon_name()} (runner {by}) from runner {holder}, whose lease expired"
        )
        return f"took over campaign '{c.name}' (id {cid}) from runner {holder} (lease expired)"

    def announce(self, campaign_id: int, kind: str, body: dict[str, Any]) -> None:
        """A daemon event on a campaign's stream. Only while no child of it runs (the child numbers its own)."""
        add_events(
            self.store,
            [
                {
                    "campaign_id": campaign_id,
                    "seq": last_seq(self.store, campaign_id) + 1,
                    "at": datetime.now(UTC),
                    "kind": kind,
                    "body": body,
                }
            ],
        )


def _daemon_name() -> str:
    """This daemon as named in takeover records: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"
