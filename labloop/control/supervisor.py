"""The daemon's campaign processes: start them, notice when one dies, and act on the campaign's crash policy.

Each campaign runs in ``python -m labloop.control.child``, so a crash touches nothing else. The daemon is the
parent: ``Popen.poll`` tells an exit the moment it happens (no heartbeat to age out), and the main loop polls every
:data:`CHECK_S`, so a ``kill -9`` is noticed well within 3 s. A child that exits while its campaign is still
running or paused died: the death is audited, noted on the campaign, announced on the stream, and the campaign is
resumed (``scheduling.on_crash: resume``, at most ``scheduling.crash_resumes`` times) or left for an operator.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from labloop.errors import LabloopError
from labloop.run.liveness import ACTIVE_STATES
from labloop.run.provenance import submitter
from labloop.spec import spec_from_text
from labloop.store import Store
from labloop.store.events import add_events, last_seq

CHECK_S = 0.2
CRASH_ACTION = "daemon.crash"
SPAWN_TIMEOUT_S = 300.0  # building a real lab (connecting instruments) may take a while


@dataclass
class Child:
    popen: subprocess.Popen[bytes]
    user: str
    log: Path
    campaign_id: int | None = None
    name: str = ""
    started: float = field(default_factory=time.monotonic)


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
        self._lock = threading.Lock()
        logs.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------------------- start
    def spawn(self, user: str, *, text: str | None = None, source: str = "<submitted>",
              time_scale: float | None = None, resume: int | None = None) -> dict[str, Any]:
        """Start a child for a new campaign (``text``) or to resume one; returns what the child reported once it
        validated and stored the campaign. Raises :class:`LabloopError` with the child's own refusal."""
        cmd = [sys.executable, "-m", "labloop.control.child", "--store", self.store_url, "--user", user,
               "--source", source]
        if time_scale is not None:
            cmd += ["--time-scale", repr(time_scale)]
        if resume is not None:
            cmd += ["--resume", str(resume)]
        r, w = os.pipe()
        log = self.logs / f"child-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns()}.log"
        try:
            with open(log, "wb") as out:
                popen = subprocess.Popen(cmd + ["--report-fd", str(w)], stdin=subprocess.PIPE, stdout=out,
                                         stderr=subprocess.STDOUT, pass_fds=(w,), start_new_session=True)
        finally:
            os.close(w)
        child = Child(popen, user, log)
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
            popen.poll()
            tail = self._log_tail(popen.pid)
            return {"ok": False, "error": {
                "problem": f"the campaign process {_describe_exit(popen.returncode) if popen.returncode is not None else 'did not report'} before the campaign started{tail}",
                "fix": "see the daemon's log folder for the whole output"}}

    def _log_tail(self, pid: int) -> str:
        with self._lock:
            child = self._children.get(pid)
        if child is None:
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
                rc = child.popen.poll()
                if rc is not None:
                    del self._children[pid]
                    out.append((child, rc))
        return out

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
        spec = spec_from_text(c.spec_text, f"<stored campaign {c.name}>")
        crashes = 1 + sum(1 for a in self.store.audit_log(c.id) if a.action == CRASH_ACTION)
        policy, limit = spec.scheduling.on_crash, spec.scheduling.crash_resumes
        resume = policy == "resume" and crashes <= limit
        if resume:
            action = f"resuming it (automatic resume {crashes} of at most {limit})"
        elif policy == "resume":
            action = (f"left for an operator: it died {crashes} times, more than scheduling.crash_resumes = {limit}; "
                      f"find the cause in the daemon's logs, then `labloop resume --campaign {c.id}`")
        else:
            action = f"left for an operator (scheduling.on_crash: wait): `labloop resume --campaign {c.id}`"
        message = f"campaign process {child.popen.pid} {how}; {action}"
        self.store.audit(c.id, CRASH_ACTION, {"pid": child.popen.pid, "returncode": rc, "exit": how,
                                              "crashes": crashes, "resume": resume, "log": str(child.log)},
                         user="labloop-daemon")
        self.store.update_campaign(c.id, note=message)
        self.announce(c.id, "crash", {"pid": child.popen.pid, "exit": how, "resume": resume, "message": message})
        if resume:
            try:
                self.spawn(submitter(self.store.audit_log(c.id)), resume=c.id)
            except LabloopError as exc:
                self.announce(c.id, "alert", {"message": f"automatic resume failed: {exc.problem}"})
                self.store.update_campaign(c.id, note=f"{message}; automatic resume failed: {exc.problem}")
        return message

    def announce(self, campaign_id: int, kind: str, body: dict[str, Any]) -> None:
        """A daemon event on a campaign's stream. Only while no child of it runs (the child numbers its own)."""
        add_events(self.store, [{"campaign_id": campaign_id, "seq": last_seq(self.store, campaign_id) + 1,
                                 "at": datetime.now(timezone.utc), "kind": kind, "body": body}])

    def stop_all(self, timeout: float = 5.0) -> None:
        """The daemon is shutting down: end its campaign processes (their campaigns can be resumed)."""
        with self._lock:
            children = list(self._children.values())
        for child in children:
            if child.popen.poll() is None:
                child.popen.terminate()
        deadline = time.monotonic() + timeout
        for child in children:
            try:
                child.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.popen.kill()
                child.popen.wait()
