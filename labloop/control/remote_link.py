"""The wire half of a remote device: one CURVE DEALER connection to a ``labloop agent`` (:class:`Link`), driven by
its own thread: requests and their replies, pushed events, heartbeats both ways, garbage and lost contact.

Kept apart from :mod:`.remote` (the ophyd-looking proxy objects built on it) because the two change for different
reasons: this one when the protocol or its failure handling changes, the proxy when the device contract does.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import zmq
from ophyd.status import Status

from labloop.errors import DeviceError, LabloopError

from . import wire

log = logging.getLogger("labloop.remote")

CONNECT_TIMEOUT_S = 3.0
CALL_TIMEOUT_S = 30.0  # a device call (read, health) that takes longer than this is a hung agent


def client_keys() -> tuple[bytes, bytes]:
    """Which CURVE key pair the runner uses as a client of agents (public, secret), Z85 bytes.

    The one place that answers it, so the daemon can plug in: ``LABLOOP_SERVER_KEYS`` (the folder of the daemon's
    own key pair, ``serve --keys DIR``, which the daemon sets for the campaign processes it starts: the agents trust
    the daemon's key), else ``LABLOOP_KEY`` (a person's or a runner's key file,
    :func:`labloop.identity.keys.load_client_key`)."""
    keys_dir = os.environ.get("LABLOOP_SERVER_KEYS")
    if keys_dir:
        from pathlib import Path

        from labloop.identity.keys import SERVER_KEY_FILE, ServerKeys

        if not (Path(keys_dir) / SERVER_KEY_FILE).is_file():
            raise LabloopError(
                f"LABLOOP_SERVER_KEYS names {keys_dir}, which holds no {SERVER_KEY_FILE}",
                "point it at the daemon's --keys folder, or unset it and use LABLOOP_KEY",
            )
        keys = ServerKeys.load_or_create(Path(keys_dir))
        return _z85(keys.public), _z85(keys.secret)
    key_file = os.environ.get("LABLOOP_KEY")
    if key_file:
        from labloop.identity.keys import load_client_key

        key = load_client_key(key_file)
        return _z85(key.public_key), _z85(key.secret_key)
    raise LabloopError(
        "no client key to talk to remote instruments (the lab names a remote device)",
        "set LABLOOP_KEY to your key file (`labloop users add NAME --role operator --out FILE`), or "
        "submit the campaign to a daemon (`labloop submit FILE --server ADDR`): it uses its own key",
    )


def _z85(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def start_hint(address: str, agent: str | None) -> str:
    """The command an operator runs to start the agent a campaign names (shown when it cannot be reached)."""
    port = address.rsplit(":", 1)[-1]
    who = agent or "AGENT"
    return (
        f"on the instrument's computer run `labloop agent DRIVER_MODULE:CLASS --config FILE --bind "
        f"tcp://0.0.0.0:{port} --name DEVICE --key {who}.key`"
    )


class Link:
    """One DEALER connection to an agent, driven by its own thread: requests, replies, events, heartbeats."""

    def __init__(
        self,
        address: str,
        server_key: bytes,
        keys: tuple[bytes, bytes],
        label: str,
        lost_after: float = wire.LOST_AFTER_S,
    ):
        self.address, self.label, self.lost_after = address, label, lost_after
        self.ctx: zmq.Context[Any] = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)  # never queue a request for a connection that is not up
        self.sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_BYTES)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 100)
        self.sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        self.sock.curve_serverkey = server_key
        self.sock.curve_publickey, self.sock.curve_secretkey = keys
        # Handshake failures tell "the agent refuses this key" apart from "nobody answers" (see connect()).
        self.monitor = self.sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        )
        self.refused: str | None = None
        self.sock.connect(address)
        self.outbox = wire.Outbox(self.ctx, "remote")
        self._ids = itertools.count(1)
        self.pending: dict[int, tuple[Future[Any], Status | None, float]] = {}
        self.statuses: dict[int, Status] = {}
        self.early: dict[int, dict[str, Any]] = {}  # status events that came before the reply naming them
        self.up = False
        self.boot: str | None = None
        self.last_rx = 0.0
        self.down_reason = f"not connected yet to {label} at {address}"
        self.on_event: Callable[[dict[str, Any]], None] = lambda _e: None
        self.on_up: Callable[[bool], None] = lambda _new: None
        self.unsent: dict[int, dict[str, Any]] = {}
        self.ready = threading.Event()  # cleared while the proxy restores its state on a restarted agent
        self.ready.set()
        self.rx = 0  # messages received (benchmarks: heartbeat load)
        self.lost = 0  # times contact was lost
        self.garbage: list[bytes] = []  # raw replies that were not the protocol (the last few)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"remote-{label}", daemon=True)
        self._thread.start()

    # calls from any thread --------------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        args: Mapping[str, Any] | None = None,
        status: Status | None = None,
        timeout: float = CALL_TIMEOUT_S,
        restoring: bool = False,
    ) -> Any:
        """Send a request and wait for its result; DeviceError when the agent refuses, fails or is unreachable.
        After the agent restarted, requests wait until the proxy has restored its state there (``restoring``: a
        request that does the restoring)."""
        if not restoring:
            self.ready.wait(timeout)
        if not self.up and method != "hello":
            raise DeviceError(self.down_reason, self.fix)
        fut: Future[Any] = Future()
        self.outbox.put(method, dict(args or {}), fut, status)
        try:
            return fut.result(timeout)
        except FutureTimeout:
            raise DeviceError(
                f"{self.label} at {self.address}: no answer to {method} within {timeout:g} s", self.fix
            ) from None

    @property
    def fix(self) -> str:
        return (
            f"check that the agent runs and the network between the computers works; {start_hint(self.address, None)}"
        )

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(2)

    # the loop ---------------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        pump = wire.Pump(self.sock, self.outbox)
        next_ping = 0.0
        try:
            while not self._stop.is_set():
                pump.round(self._on_frames, self._send_request)
                self._check_monitor()
                now = time.monotonic()
                if now >= next_ping:
                    next_ping = now + wire.HEARTBEAT_S
                    self._send_raw({"v": wire.VERSION, "id": 0, "method": "ping"})
                if self.up and now - self.last_rx > self.lost_after:
                    self._go_down(
                        f"lost contact with {self.label} at {self.address}: no heartbeat for "
                        f"{now - self.last_rx:.1f} s (the agent stopped, its computer is down, or the "
                        "network broke)"
                    )
                for rid, message in list(self.unsent.items()):
                    if rid not in self.pending or self._send_raw(message):
                        self.unsent.pop(rid, None)
                for rid, (fut, _st, deadline) in list(self.pending.items()):
                    if not self.up and now > deadline:  # hello while connecting
                        self.pending.pop(rid, None)
                        fut.set_exception(DeviceError(self.down_reason, self.fix))
        finally:
            self._go_down(f"the connection to {self.label} at {self.address} was closed", quiet=True)
            self.outbox.close()
            self.sock.disable_monitor()
            self.monitor.close(0)
            self.sock.close(0)

    def _check_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                return
            if event.get("event") == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.refused = "it refused this runner's key (the CURVE handshake was denied)"
            else:
                self.refused = "the CURVE handshake failed (wrong agent public key, or not a labloop agent there)"

    def _send_raw(self, message: dict[str, Any]) -> bool:
        try:
            self.sock.send(wire.encode(message), zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def _send_request(self, method: str, args: dict[str, Any], fut: Future[Any], status: Status | None) -> None:
        rid = next(self._ids)
        try:
            sent = self._send_raw({"v": wire.VERSION, "id": rid, "method": method, "args": args})
        except (TypeError, ValueError) as exc:
            fut.set_exception(
                DeviceError(
                    f"{self.label}: {method} arguments cannot travel as JSON: {exc}",
                    "send numbers, text, lists and mappings",
                )
            )
            return
        if not sent and method != "hello":
            fut.set_exception(
                DeviceError(f"{self.label} at {self.address} is not connected: {self.down_reason}", self.fix)
            )
            return
        # A hello that could not go out yet (connecting) is re-sent by the loop until connected or its deadline.
        self.pending[rid] = (fut, status, time.monotonic() + CONNECT_TIMEOUT_S)
        if not sent:
            self.unsent[rid] = {"v": wire.VERSION, "id": rid, "method": method, "args": args}

    def _on_frames(self, frames: list[bytes]) -> None:
        raw = b"".join(frames) if len(frames) != 1 else frames[0]
        try:
            msg = wire.decode(raw)
            if len(frames) != 1:
                raise wire.WireError(f"{len(frames)} frames in one message", "")
        except wire.WireError:
            self._garbage(raw)
            return
        self.last_rx = time.monotonic()
        self.rx += 1
        boot, result = msg.get("boot"), msg.get("result")
        if boot is None and isinstance(result, dict):
            boot = result.get("boot")
        if isinstance(boot, str) and boot != self.boot:
            restarted = self.boot is not None
            if restarted:
                self._fail_running(f"{self.label} at {self.address} restarted (its running actions were lost)")
            self.boot = boot
            if restarted or not self.up:
                self.up = True
                if restarted:
                    self.ready.clear()  # set again by on_up once the proxy's state is back on the agent
                self.on_up(restarted)
        elif not self.up and self.boot is not None:
            self.up = True
            self.on_up(False)
        if "event" in msg:
            self._on_event(msg, raw)
        elif "id" in msg and "ok" in msg:
            self._on_reply(msg, raw)
        else:
            self._garbage(raw)

    def _on_event(self, msg: dict[str, Any], raw: bytes) -> None:
        kind = msg.get("event")
        if kind == "heartbeat":
            return
        if kind == "status" and isinstance(msg.get("sid"), int):
            st = self.statuses.pop(msg["sid"], None)
            if st is None:
                self.early[msg["sid"]] = msg
                return
            self._finish(st, msg)
            return
        if kind == "signal" and isinstance(msg.get("signal"), str) and isinstance(msg.get("reading"), dict):
            self.on_event(msg)
            return
        self._garbage(raw)

    def _on_reply(self, msg: dict[str, Any], raw: bytes) -> None:
        rid = msg.get("id")
        if rid == 0 or (rid is None and msg.get("ok") is False and not self.pending):
            return  # a pong, or the agent refusing something nobody waits for
        entry = self.pending.pop(rid, None) if isinstance(rid, int) else None
        if entry is None:
            if rid is None:  # the agent could not read one of our requests: fail what waits
                self._fail_waiting(wire.error_from(msg.get("error"), f"{self.label} at {self.address}"))
            return
        fut, status, _ = entry
        if msg.get("ok") is True:
            result = msg.get("result")
            if status is not None:
                sid = result.get("sid") if isinstance(result, dict) else None
                if not isinstance(sid, int):
                    self._garbage(raw, [(fut, status)])
                    return
                early = self.early.pop(sid, None)
                if early is not None:
                    self._finish(status, early)
                else:
                    self.statuses[sid] = status
            fut.set_result(result)
        elif msg.get("ok") is False:
            fut.set_exception(wire.error_from(msg.get("error"), f"{self.label} at {self.address}"))
        else:
            self._garbage(raw, [(fut, status)])

    def _finish(self, status: Status, msg: dict[str, Any]) -> None:
        if status.done:
            return
        if msg.get("ok") is True:
            status.set_finished()
        else:
            status.set_exception(wire.error_from(msg.get("error"), f"{self.label} at {self.address}"))

    def _garbage(self, raw: bytes, extra: list[tuple[Future[Any], Status | None]] | None = None) -> None:
        """A message that is not the protocol: everything waiting on the agent fails, quoting it."""
        self.garbage = [*self.garbage[-4:], raw[: wire.RAW_SHOWN]]
        err = DeviceError(
            f"{self.label} at {self.address} answered something that is not the agent protocol: "
            f"raw reply {wire.raw_excerpt(raw)}",
            "check that the address is a labloop agent of the same version; restart the agent",
        )
        for fut, st in extra or []:
            if not fut.done():
                fut.set_exception(err)
            if st is not None and not st.done:
                st.set_exception(err)
        self._fail_waiting(err)

    def _fail_waiting(self, err: DeviceError) -> None:
        for rid, (fut, st, _d) in list(self.pending.items()):
            self.pending.pop(rid, None)
            if not fut.done():
                fut.set_exception(err)
            if st is not None and not st.done:
                st.set_exception(err)
        for sid, st in list(self.statuses.items()):
            self.statuses.pop(sid, None)
            if not st.done:
                st.set_exception(err)

    def _fail_running(self, reason: str) -> None:
        self._fail_waiting(
            DeviceError(
                reason,
                "the step is retried per its retry policy; check the instrument before going on if it keeps happening",
            )
        )
        self.early.clear()

    def _go_down(self, reason: str, quiet: bool = False) -> None:
        was_up, self.up = self.up, False
        self.down_reason = reason
        if was_up and not quiet:
            self.lost += 1
            log.warning(reason)
        self._fail_running(reason)


# -- the proxy --------------------------------------------------------------------------------------------------------
