"""``labloop serve``: the daemon. A ROUTER control socket and a PUB stream, both CURVE with keys the store knows.

One thread (the main loop) owns the control socket: it reads a request, checks its size and shape
(:mod:`~labloop.control.protocol`), identifies the verified user (the ZAP handler put their name in the
connection's User-Id), checks the role, and hands the request to a worker thread; workers send their replies back
through an inproc socket, which the main loop forwards. So a request that waits (a pause waiting for the runner's
acknowledgement, a submit waiting for the campaign to validate) never delays anybody else's, and a malformed
message costs an error reply, never the daemon. ``status`` is answered from a snapshot at most
:data:`STATUS_FRESH_S` old when one exists (a dashboard's polling costs no store reads).

Campaigns run in child processes (:mod:`~labloop.control.supervisor`) that outlive the daemon; a daemon adopts
the running ones of its store when it starts. The stream tails their events (:mod:`~labloop.control.stream`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zmq

from labloop.errors import LabloopError
from labloop.identity.keys import DEFAULT_CONTROL, DEFAULT_KEYS_DIR, DEFAULT_STREAM, ServerKeys, apply_server
from labloop.identity.roles import permitted, refusal
from labloop.store import Store

from . import audit, methods, protocol
from .auth import StoreAuthenticator
from .dispatch import Dispatcher, daemon_dispatcher
from .stream import Publisher
from .supervisor import CHECK_S, TAKEOVER_S, Supervisor

log = logging.getLogger(__name__)

STATUS_FRESH_S = 0.5
#: Requests from a revoked or unknown key are audited as one row per key per this many seconds, with their count:
#: a client looping on a revoked key cannot flood the log.
REFUSAL_WINDOW_S = 60.0
LOG_FILE = "daemon.log"
LOG_BYTES, LOG_BACKUPS = 5 << 20, 5
MAX_WIRE_BYTES = 16 * protocol.MAX_BYTES  # beyond this 0MQ drops the connection before buffering it all
REPLIES = "inproc://labloop-replies"


class Daemon:
    def __init__(
        self,
        store_url: str,
        control: str = DEFAULT_CONTROL,
        stream: str = DEFAULT_STREAM,
        keys_dir: Path | None = None,
        workers: int = 8,
    ):
        self.store_url = store_url
        self.store = Store(store_url)
        self.keys_dir = Path(keys_dir or DEFAULT_KEYS_DIR).expanduser()
        self.keys = ServerKeys.load_or_create(self.keys_dir)
        self.log_file = log_to(self.keys_dir / LOG_FILE)
        self.refusals = RefusalCounter(REFUSAL_WINDOW_S)
        # campaign children inherit it: they connect to remote instruments' agents as the daemon
        # (labloop.control.remote.client_keys), whose key every agent of this lab trusts
        os.environ["LABLOOP_SERVER_KEYS"] = str(self.keys_dir)
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.auth = StoreAuthenticator(self.ctx, self.store, domain="labloop")
        self.auth.start()
        self.control = self.ctx.socket(zmq.ROUTER)
        apply_server(self.control, self.keys)
        self.control.setsockopt(zmq.MAXMSGSIZE, MAX_WIRE_BYTES)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.bind(control)
        self.replies = self.ctx.socket(zmq.PULL)
        self.replies.bind(REPLIES)
        self.publisher = Publisher(self.ctx, self.store, stream, lambda s: apply_server(s, self.keys))
        self.supervisor = Supervisor(self.store, store_url, self.keys_dir / "logs", self.publisher.watch)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labloop-worker")
        self._local = threading.local()
        self._status: dict[str, tuple[float, bytes]] = {}  # campaign ref -> (when, reply result json)
        self._stop = threading.Event()
        self.control_address = self.control.getsockopt_string(zmq.LAST_ENDPOINT)
        self.stream_address = self.publisher.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    # ------------------------------------------------------------------------------------------- main loop
    def serve_forever(self) -> None:
        self.publisher.start()
        for line in self.supervisor.adopt():
            print(f"labloop serve: adopted {line}", flush=True)
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        poller.register(self.replies, zmq.POLLIN)
        next_check = next_takeover = 0.0
        taking: Any = None
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(int(CHECK_S * 1000)):
                    if sock is self.control:
                        self._drain_control()
                    else:
                        self._drain_replies()
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + CHECK_S
                    due = self.refusals.due(now)
                    if due:
                        self.pool.submit(self._guard, self._audit_refusals, due)
                    for child, rc in self.supervisor.reap():
                        if child.campaign_id is not None:
                            self.publisher.unwatch_later(child.campaign_id)
                        self.pool.submit(self._guard, self.supervisor.handle_exit, child, rc)
                if now >= next_takeover and (taking is None or taking.done()):
                    next_takeover = now + TAKEOVER_S  # off this thread: resuming a campaign builds its lab
                    taking = self.pool.submit(self._guard, self._take_over)
        finally:
            self.close()

    def stop(self) -> None:
        self._stop.set()

    def _take_over(self) -> None:
        for line in self.supervisor.take_over():
            print(f"labloop serve: {line}", flush=True)

    def _guard(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s failed", getattr(fn, "__name__", fn))

    def _audit_refusals(self, windows: list[dict[str, Any]]) -> None:
        for w in windows:
            audit.record(
                self.store,
                user=w["key"],
                role=None,
                address=w["address"],
                command="unknown_key",
                args={"methods": w["methods"]},
                outcome="refused",
                detail={
                    "reason": "the connection's key is not a user of this lab, or was revoked",
                    "count": w["count"],
                    "first": w["first"],
                    "last": w["last"],
                    "window_s": self.refusals.window_s,
                },
            )

    def _drain_control(self) -> None:
        for _ in range(1000):  # bounded: the reply socket and the supervisor get their turn too
            try:
                frames = self.control.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._handle(frames)

    def _drain_replies(self) -> None:
        for _ in range(1000):
            try:
                frames = self.replies.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._send(frames)

    def _send(self, frames: list[bytes]) -> None:
        try:
            self.control.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError:  # the client went away or cannot take more: its reply is dropped
            pass

    # ------------------------------------------------------------------------------------------- a request
    def _handle(self, frames: list[Any]) -> None:
        envelope = [frames[0].bytes]
        body = frames[1:]
        if len(body) >= 2 and body[0].bytes == b"":  # a REQ client's delimiter frame
            envelope.append(b"")
            body = body[1:]
        if len(body) != 1:
            self._send(
                envelope
                + [
                    protocol.error(
                        None,
                        "bad_frames",
                        f"a request is one frame, not {len(body)}",
                        "send the JSON request as a single message frame",
                    )
                ]
            )
            return
        try:
            user_id = frames[-1].get("User-Id")
        except zmq.ZMQError:
            user_id = None
        try:
            address = frames[-1].get("Peer-Address")
        except zmq.ZMQError:
            address = None
        try:
            req, params = protocol.parse_request(body[0].bytes)
        except protocol.ProtocolError as exc:
            self._send(envelope + [protocol.from_protocol_error(exc)])
            return
        ident = self.auth.identify(user_id) if user_id else None
        if ident is None:  # revoked since the connection was made (new connections are refused by ZAP)
            if self.refusals.add(user_id or "unknown", req.method, address, time.monotonic()):
                log.warning(
                    "refusing requests from %s (not a user of this lab, or revoked); they are audited as "
                    "one row per key per %g s",
                    user_id or "an unknown key",
                    self.refusals.window_s,
                )
            self._send(
                envelope
                + [
                    protocol.error(
                        req.id,
                        "unknown_key",
                        f"the key of this connection ({user_id or 'none'}) is not a user of this lab, or was revoked",
                        "ask an admin for a key file (`labloop users add`) and pass it with --key",
                    )
                ]
            )
            return
        if not permitted(ident.role, req.method):
            no = refusal(ident.name, ident.role, req.method)  # the one wording, as the dashboard and the docs give it
            self._reply_later(envelope, req, params, ident, address, refused=("forbidden", no.problem, no.fix or ""))
            return
        if req.method == "status" and isinstance(params, protocol.StatusParams):  # (the status method's params)
            key = json.dumps(params.campaign)
            hit = self._status.get(key)
            if hit is not None and time.monotonic() - hit[0] < STATUS_FRESH_S:
                self._send(
                    envelope
                    + [b'{"v": 1, "id": ' + json.dumps(req.id).encode() + b', "ok": true, "result": ' + hit[1] + b"}"]
                )
                return
        self._reply_later(envelope, req, params, ident, address)

    def _reply_later(
        self,
        envelope: list[bytes],
        req: protocol.Request,
        params: Any,
        ident: Any,
        address: str | None,
        refused: tuple[str, str, str] | None = None,
    ) -> None:
        try:
            self.pool.submit(self._work, envelope, req, params, ident, address, refused)
        except RuntimeError:  # shutting down
            pass

    def _work(
        self,
        envelope: list[bytes],
        req: protocol.Request,
        params: Any,
        ident: Any,
        address: str | None,
        refused: tuple[str, str, str] | None,
    ) -> None:
        user, role = ident.name, ident.role
        call = None
        try:
            args = methods.audit_args(req.method, params)
            if refused is not None:
                reply = protocol.error(req.id, *refused)
                self._audit(user, role, address, req.method, args, "refused", refused[1])
            else:
                call = methods.Call(user, role, self.store, self.supervisor)
                if req.method not in methods.READS:
                    call.accepted = audit.entry(
                        user=user, role=role, address=address, command=req.method, args=args, outcome="accepted"
                    )
                try:
                    result = methods.HANDLERS[req.method](call, params)
                    encoded = json.dumps(result, default=str).encode()
                except LabloopError as exc:
                    reply = protocol.error(req.id, "refused", exc.problem, exc.fix or "")
                    call.settle("refused", exc.problem)
                else:
                    if req.method == "status":
                        self._status[json.dumps(params.campaign)] = (time.monotonic(), encoded)
                    reply = (
                        b'{"v": 1, "id": ' + json.dumps(req.id).encode() + b', "ok": true, "result": ' + encoded + b"}"
                    )
                    call.settle("accepted")
        except Exception as exc:  # noqa: BLE001 - a bug in one method answers that request, the daemon goes on
            reply = self._internal_error(req, exc, call)
        self._reply_socket().send_multipart(envelope + [reply])

    def _internal_error(self, req: protocol.Request, exc: Exception, call: methods.Call | None) -> bytes:
        """A bug: logged with its traceback under a short id (log file and stderr), audited as failed, and the
        client's error quotes the id so the operator's report and the log meet."""
        error_id = uuid.uuid4().hex[:8]
        log.error("internal error %s in %s: %s: %s", error_id, req.method, type(exc).__name__, exc, exc_info=exc)
        if call is not None:
            try:
                call.settle("failed", f"{type(exc).__name__}: {exc} (error id {error_id})")
            except Exception:
                log.exception("could not audit the failed %s (error id %s)", req.method, error_id)
        return protocol.error(
            req.id,
            "internal",
            f"{req.method} failed: internal error {error_id} ({type(exc).__name__})",
            f"this is a labloop bug: report error id {error_id}; the daemon's log ({self.log_file}) has its traceback",
        )

    def _audit(
        self,
        user: str,
        role: str,
        address: str | None,
        command: str,
        args: dict[str, Any],
        outcome: str,
        detail: str | None,
    ) -> None:
        audit.record(
            self.store,
            user=user,
            role=role,
            address=address,
            command=command,
            args=args,
            outcome=outcome,
            detail=None if detail is None else {"reason": detail},
        )

    def _reply_socket(self) -> Any:
        sock = getattr(self._local, "sock", None)
        if sock is None:
            sock = self._local.sock = self.ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 1000)
            sock.connect(REPLIES)
        return sock

    def close(self) -> None:
        """Stop serving; the campaigns' processes run on (a daemon started later adopts them)."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        try:
            self._audit_refusals(self.refusals.due(float("inf")))
        except Exception:
            log.exception("could not audit the refused requests counted so far")
        self.publisher.close()
        self.auth.stop()
        self.control.close(0)
        self.replies.close(0)
        self.store.close()


class RefusalCounter:
    """Requests from revoked or unknown keys, counted per key in windows of ``window_s`` seconds; a window is
    audited once, when it closes (:meth:`due`), with the count, the methods asked and the first and last time."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.open: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add(self, key: str, method: str, address: str | None, now: float) -> bool:
        """Count one request; True when it opens a window (the first of this key for a while)."""
        at = datetime.now(UTC).isoformat(timespec="seconds")
        with self._lock:
            w = self.open.get(key)
            first = w is None
            if w is None:
                w = self.open[key] = {
                    "key": key[:80],
                    "address": address,
                    "opened": now,
                    "count": 0,
                    "methods": {},
                    "first": at,
                }
            w["count"] += 1
            w["last"] = at
            if len(w["methods"]) < 20 or method in w["methods"]:
                m = str(method)[:40]
                w["methods"][m] = w["methods"].get(m, 0) + 1
            return first

    def due(self, now: float) -> list[dict[str, Any]]:
        """The windows that have closed by ``now`` (all of them with ``now=inf``), removed."""
        with self._lock:
            keys = [k for k, w in self.open.items() if now - w["opened"] >= self.window_s]
            return [self.open.pop(k) for k in keys]


def log_to(path: Path) -> Path:
    """Send labloop's log (warnings and up; tracebacks of internal errors) to a rotating file at ``path`` and to
    stderr, once per process."""
    root = logging.getLogger("labloop")
    path = path.resolve()
    if not any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
        from logging.handlers import RotatingFileHandler

        fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        path.parent.mkdir(parents=True, exist_ok=True)
        file = RotatingFileHandler(path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
        file.setFormatter(fmt)
        root.addHandler(file)
        if not any(type(h) is logging.StreamHandler for h in root.handlers):
            err = logging.StreamHandler()
            err.setLevel(logging.WARNING)  # the file keeps the INFO lines too
            err.setFormatter(fmt)
            root.addHandler(err)
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)
    return path


#: ``(store url, "HOST:PORT", dispatcher, feed) -> started server`` (with ``.url`` and ``.stop()``): starts the
#: dashboard beside the daemon. Passed in by whoever wires the two (the CLI's ``serve --http``:
#: :func:`labloop.web.server.start_dashboard`); the daemon never imports the web layer above it. ``feed(publish)``
#: makes the daemon's live stream reach the dashboard in-process.
DashboardFactory = Callable[[str, str, Dispatcher, Callable[[Callable[..., Any]], None]], Any]


def serve(
    store_url: str,
    control: str,
    stream: str,
    keys_dir: Path | None,
    http: str | None = None,
    dashboard: DashboardFactory | None = None,
) -> None:
    """Run the daemon until SIGTERM or Ctrl-C; prints where it listens and its public key. ``http``
    (``HOST:PORT``): also serve the dashboard there (started by ``dashboard``), fed by this daemon's stream and
    acting through its methods."""
    if http is not None and dashboard is None:
        raise LabloopError(
            "the daemon was asked to serve the dashboard but was given no way to start it",
            "start it with `labloop serve --http HOST:PORT`, which wires the dashboard in",
        )
    d = Daemon(store_url, control, stream, keys_dir)
    web = None
    if http is not None and dashboard is not None:
        try:
            web = dashboard(store_url, http, daemon_dispatcher(d.supervisor), d.publisher.also)
        except BaseException:
            d.close()
            raise
    signal.signal(signal.SIGTERM, lambda *_: d.stop())
    signal.signal(signal.SIGINT, lambda *_: d.stop())
    print(
        f"labloop serve: control {d.control_address}  stream {d.stream_address}  store {store_url}\n"
        f"server public key {d.keys.public_z85()}  (keys and logs in {d.keys_dir})"
        + (f"\ndashboard {web.url}" if web else ""),
        flush=True,
    )
    try:
        d.serve_forever()
    finally:
        if web is not None:
            web.stop()
