"""One campaign in its own process, started by the daemon: ``python -m labloop.control.child``.

Why a process per campaign: a crash (a driver's segfault, an out-of-memory kill, ``kill -9``) ends that campaign's
process only; the daemon and the other campaigns go on, and the daemon notices the exit at once (it is the
parent). The child validates the campaign file completely before anything is stored, then tells the daemon on a
pipe (``--report-fd``) one JSON line: ``{"ok": true, "campaign_id": ...}`` or ``{"ok": false, "error": {...}}``;
everything else it says goes to its log. Its stream events go to the store (:mod:`labloop.control.eventlog`).

``--takeover-from HOLDER``: the daemon resumes a campaign whose runner (``HOLDER``, its lease's holder) died
elsewhere; the resume takes the lease atomically, so a child that lost the race to another daemon's child exits
with a refusal before touching anything. A won takeover is announced on the stream (event ``takeover``).

``LABLOOP_LEASE_TTL`` (seconds, inherited from the daemon) sets how long a dead runner's campaign stays leased
before another daemon may take it over (default :data:`labloop.run.lease.DEFAULT_TTL_S`).

``--user`` is the verified submitter: it is recorded as the campaign's starter and so reaches the provenance of
every run's start document.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from labloop.errors import LabloopError
from labloop.run.campaign import CampaignRunner, prepare_text, refuse_second_runner
from labloop.run.lab import state_dir_for
from labloop.spec import spec_from_text
from labloop.store import Store

from .eventlog import EventLog
from .remote_lab import remote_device


def _report(fd: int | None, message: dict[str, Any]) -> None:
    if fd is None:
        return
    try:
        os.write(fd, (json.dumps(message) + "\n").encode())
        os.close(fd)
    except OSError:  # the daemon went away: the campaign runs on, its events are in the store
        pass


def _start(args: argparse.Namespace, store: Store) -> CampaignRunner:
    text = sys.stdin.read()
    prepared = prepare_text(
        text,
        args.source,
        args.time_scale,
        state_dir=state_dir_for(args.store),
        store_url=args.store,  # remote devices' agents are looked up in this store
        remote=remote_device,
    )
    return CampaignRunner.start(prepared, store, user=args.user)


def _resume(args: argparse.Namespace, store: Store) -> tuple[CampaignRunner, list[Any]]:
    c = store.campaign(args.resume)
    refuse_second_runner(
        spec_from_text(c.spec_text, f"<stored campaign {c.name}>"), store, f"campaign '{c.name}'", except_id=c.id
    )
    return CampaignRunner.resume(store, c, args.time_scale, remote=remote_device)


def _lease_ttl() -> None:
    text = os.environ.get("LABLOOP_LEASE_TTL", "").strip()
    if not text:
        return
    try:
        ttl = float(text)
    except ValueError:
        ttl = float("nan")
    if not 0 < ttl < 86400:
        raise LabloopError(
            f"LABLOOP_LEASE_TTL is {text!r}, not a number of seconds between 0 and 86400",
            "set it to e.g. 30 (or unset it) in the daemon's environment and restart the daemon",
        )
    CampaignRunner.lease_ttl = ttl


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="labloop.control.child")
    ap.add_argument("--store", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--source", default="<submitted>")
    ap.add_argument("--time-scale", type=float, default=None)
    ap.add_argument("--resume", default=None, help="campaign id to resume (else: the campaign file on stdin)")
    ap.add_argument("--takeover-from", default=None, help="the dead runner whose campaign is taken over")
    ap.add_argument("--report-fd", type=int, default=None)
    args = ap.parse_args(argv)
    store: Store | None = None
    resumptions: list[Any]  # what a resume settled (none for a new campaign)
    try:
        _lease_ttl()
        store = Store(args.store, create=args.resume is None)
        if args.resume is None:
            runner, resumptions = _start(args, store), []
        else:
            runner, resumptions = _resume(args, store)
    except LabloopError as exc:
        _report(
            args.report_fd, {"ok": False, "error": {"code": "refused", "problem": exc.problem, "fix": exc.fix or ""}}
        )
        if store is not None:
            store.close()
        return 2
    c = runner.campaign
    log = EventLog(store, c.id, runner.spec)
    runner.observer, runner.documents = log.observer, log.document
    log.emit(
        "campaign_start" if args.resume is None else "campaign_resume",
        {
            "name": c.name,
            "uid": c.uid,
            "user": args.user,
            "pid": os.getpid(),
            "trials": [r.trial.number for r in resumptions],
        },
    )
    if args.takeover_from is not None and runner.lease is not None:
        log.emit("takeover", {"from": args.takeover_from, "by": runner.lease.holder, "token": runner.lease.token})
    store.heartbeat(c.id)  # host, pid, start time: from now on a daemon (this one, or a later one) can tell we live
    _report(args.report_fd, {"ok": True, "campaign_id": c.id, "name": c.name, "uid": c.uid, "pid": os.getpid()})
    try:
        runner.run(resumptions)
    finally:
        end = store.campaign(c.id)
        log.emit("campaign_end", {"state": end.state, "stop_reason": end.stop_reason})
        log.close()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
