"""``RemoteDevice``: an ophyd-looking proxy of a device served by ``labloop agent`` on another computer.

The scheduler, the plans and the conformance kit cannot tell it from a local device: ``name``, ``describe``,
``read``, ``set -> Status``, ``trigger -> Status``, ``stop``, ``limits``, ``health()``, component signals with
``get/put/set/read/describe/subscribe``. What it adds is the network's failure modes, each turned into something
an operator can read:

* heartbeats both ways (:data:`~.wire.HEARTBEAT_S`): after :data:`~.wire.LOST_AFTER_S` of silence every call and
  every running Status fails with "lost contact with agent ... at ADDR", so a killed agent fails the step within
  seconds instead of hanging it; when the agent answers again (same or restarted process) the proxy carries on
  and re-subscribes the monitored signals, and the scheduler retries the step per its policy;
* a reply that is not the protocol (garbage) fails what was waiting, quoting the raw bytes;
* requests are never queued for a connection that is not up (``ZMQ_IMMEDIATE``): a ``set`` sent while the agent
  was down can never reach it minutes later.

The proxy class is composed per device (:func:`connect`): a proxy of an instrument has no ``set`` (it is not
Movable), exactly as the device it stands for.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import zmq

from ophyd.status import Status

from labloop.contract import Health
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
    :func:`labloop.control.keys.load_client_key`)."""
    keys_dir = os.environ.get("LABLOOP_SERVER_KEYS")
    if keys_dir:
        from pathlib import Path

        from labloop.control.keys import SERVER_KEY_FILE, ServerKeys

        if not (Path(keys_dir) / SERVER_KEY_FILE).is_file():
            raise LabloopError(f"LABLOOP_SERVER_KEYS names {keys_dir}, which holds no {SERVER_KEY_FILE}",
                               "point it at the daemon's --keys folder, or unset it and use LABLOOP_KEY")
        keys = ServerKeys.load_or_create(Path(keys_dir))
        return _z85(keys.public), _z85(keys.secret)
    key_file = os.environ.get("LABLOOP_KEY")
    if key_file:
        from labloop.control.keys import load_client_key

        key = load_client_key(key_file)
        return _z85(key.public_key), _z85(key.secret_key)
    raise LabloopError("no client key to talk to remote instruments (the lab names a remote device)",
                       "set LABLOOP_KEY to your key file (`labloop users add NAME --role operator --out FILE`), or "
                       "submit the campaign to a daemon (`labloop submit FILE --server ADDR`): it uses its own key")


def _z85(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def start_hint(address: str, agent: str | None) -> str:
    """The command an operator runs to start the agent a campaign names (shown when it cannot be reached)."""
    port = address.rsplit(":", 1)[-1]
    who = agent or "AGENT"
    return (f"on the instrument's computer run `labloop agent DRIVER_MODULE:CLASS --config FILE --bind "
            f"tcp://0.0.0.0:{port} --name DEVICE --key {who}.key`")


class _Link:
    """One DEALER connection to an agent, driven by its own thread: requests, replies, events, heartbeats."""

    def __init__(self, address: str, server_key: bytes, keys: tuple[bytes, bytes], label: str,
                 lost_after: float = wire.LOST_AFTER_S):
        self.address, self.label, self.lost_after = address, label, lost_after
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)  # never queue a request for a connection that is not up
        self.sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_BYTES)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 100)
        self.sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        self.sock.curve_serverkey = server_key
        self.sock.curve_publickey, self.sock.curve_secretkey = keys
        # Handshake failures tell "the agent refuses this key" apart from "nobody answers" (see connect()).
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
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
    def request(self, method: str, args: Mapping[str, Any] | None = None, status: Status | None = None,
                timeout: float = CALL_TIMEOUT_S, restoring: bool = False) -> Any:
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
            raise DeviceError(f"{self.label} at {self.address}: no answer to {method} within {timeout:g} s",
                              self.fix) from None

    @property
    def fix(self) -> str:
        return ("check that the agent runs and the network between the computers works; "
                f"{start_hint(self.address, None)}")

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
                    self._go_down(f"lost contact with {self.label} at {self.address}: no heartbeat for "
                                  f"{now - self.last_rx:.1f} s (the agent stopped, its computer is down, or the "
                                  "network broke)")
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
            fut.set_exception(DeviceError(f"{self.label}: {method} arguments cannot travel as JSON: {exc}",
                                          "send numbers, text, lists and mappings"))
            return
        if not sent and method != "hello":
            fut.set_exception(DeviceError(f"{self.label} at {self.address} is not connected: {self.down_reason}",
                                          self.fix))
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
        if rid == 0 or rid is None and msg.get("ok") is False and not self.pending:
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
        err = DeviceError(f"{self.label} at {self.address} answered something that is not the agent protocol: "
                          f"raw reply {wire.raw_excerpt(raw)}",
                          "check that the address is a labloop agent of the same version; restart the agent")
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
        self._fail_waiting(DeviceError(reason, "the step is retried per its retry policy; check the instrument "
                                       "before going on if it keeps happening"))
        self.early.clear()

    def _go_down(self, reason: str, quiet: bool = False) -> None:
        was_up, self.up = self.up, False
        self.down_reason = reason
        if was_up and not quiet:
            self.lost += 1
            log.warning(reason)
        self._fail_running(reason)


# -- the proxy --------------------------------------------------------------------------------------------------------
class RemoteSignal:
    """A component signal of a remote device: ``get/put/set/read/describe`` go to the agent; ``subscribe``
    registers a callback that fires (in this process, on the proxy's dispatcher thread) on every value the agent
    pushes, ophyd style (``value=, old_value=, timestamp=, obj=``), so a bluesky ``monitor`` records it."""

    def __init__(self, parent: "RemoteDevice", attr: str, name: str, kind: int):
        self.parent, self.attr_name, self.name, self.kind = parent, attr, name, kind
        self.dotted_name = attr
        self._subs: dict[int, Callable[..., Any]] = {}
        self._cids = itertools.count(1)
        self._latest: dict[str, Any] | None = None
        self._lock = threading.Lock()
        #: The last value this process wrote (``(value,)``), put back when the agent restarts: what the runner
        #: told the device (which sample it holds) is still true of the instrument, not of the fresh process.
        self.written: tuple[Any, ...] = ()

    def __repr__(self) -> str:
        return f"RemoteSignal({self.name!r})"

    def _rpc(self, method: str, restoring: bool = False, **args: Any) -> Any:
        return self.parent._link.request(method, {"signal": self.attr_name, **args}, restoring=restoring)

    def get(self, **_kw: Any) -> Any:
        return self._rpc("signal_get")

    def put(self, value: Any, **_kw: Any) -> None:
        self._rpc("signal_put", value=value)
        self.written = (value,)

    def set(self, value: Any, **_kw: Any) -> Status:
        status = self.parent._start("signal_set", {"signal": self.attr_name, "value": value})
        status.add_callback(lambda st: setattr(self, "written", (value,)) if st.success else None)
        return status

    def read(self) -> dict[str, Any]:
        with self._lock:
            latest = self._latest if self._subs else None
        if latest is not None:  # monitored: the value the agent pushed last (bluesky reads it in the callback)
            return {self.name: dict(latest)}
        return self._rpc("signal_read")

    def describe(self) -> dict[str, Any]:
        return self._rpc("signal_describe")

    def describe_configuration(self) -> dict[str, Any]:
        return {}

    def read_configuration(self) -> dict[str, Any]:
        return {}

    def subscribe(self, callback: Callable[..., Any], event_type: str | None = None, run: bool = True) -> int:
        with self._lock:
            first = not self._subs
            cid = next(self._cids)
            self._subs[cid] = callback
            latest = self._latest
        if first:
            self._rpc("subscribe")  # the agent answers with the current value at once (run=True there)
        elif run and latest is not None:
            self.parent._dispatch(lambda: callback(value=latest["value"], old_value=None,
                                                   timestamp=latest["timestamp"], sub_type="value", obj=self))
        return cid

    def clear_sub(self, callback: Callable[..., Any], event_type: str | None = None) -> None:
        with self._lock:
            for cid, cb in list(self._subs.items()):
                if cb == callback:
                    self._subs.pop(cid)
            last = not self._subs
        if last:
            self._unsubscribe_remote()

    def unsubscribe(self, cid: int) -> None:
        with self._lock:
            self._subs.pop(cid, None)
            last = not self._subs
        if last:
            self._unsubscribe_remote()

    def _unsubscribe_remote(self) -> None:
        with self._lock:
            self._latest = None
        try:
            self._rpc("unsubscribe")
        except DeviceError:
            pass  # the agent is gone: it forgets the subscription by itself

    def _pushed(self, reading: dict[str, Any]) -> None:
        with self._lock:
            old = self._latest
            self._latest = reading
            subs = list(self._subs.values())
        for cb in subs:
            try:
                cb(value=reading.get("value"), old_value=None if old is None else old.get("value"),
                   timestamp=reading.get("timestamp"), sub_type="value", obj=self)
            except Exception:  # noqa: BLE001 - one bad callback must not stop the others (as in ophyd)
                log.exception("subscription callback of %s failed", self.name)


class _Transport:
    """What the conformance kit needs of a driver transport: its timeout, and a way to cut it (on the agent)."""

    def __init__(self, device: "RemoteDevice", timeout: float):
        self.device, self.timeout = device, timeout

    def sever(self) -> None:
        self.device._link.request("sever")


class RemoteDevice:
    """Proxy of a device served by an agent; build it with :func:`connect`."""

    role: str | None = None

    def __init__(self, link: _Link, info: dict[str, Any], label: str):
        self._link, self._info, self._label = link, info, label
        self.name: str = info["name"]
        self.role = info.get("role")
        self.limits = {k: (float(v[0]), float(v[1])) for k, v in (info.get("limits") or {}).items()}
        self.positions = tuple(info.get("positions") or ())
        self.process_signals = tuple(info.get("process_signals") or ())
        self.default_timeout = info.get("default_timeout")
        self.serial = info.get("serial")
        self.hints = info.get("hints") or {}
        self.agent_class = info.get("class")
        self.parent = None
        self._signals: dict[str, RemoteSignal] = {}
        for attr, meta in (info.get("signals") or {}).items():
            sig = RemoteSignal(self, attr, str(meta.get("name", attr)), int(meta.get("kind", 0)))
            self._signals[attr] = sig
            setattr(self, attr, sig)
        self.component_names = tuple(self._signals)
        self._callbacks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._dispatcher = threading.Thread(target=self._run_callbacks, name=f"remote-{self.name}-callbacks",
                                            daemon=True)
        self._dispatcher.start()
        link.on_event = self._on_event
        # Its own thread: a subscription callback that calls the agent must not wait behind the restore it blocks.
        link.on_up = lambda restarted: threading.Thread(target=self._restore, args=(restarted,), daemon=True,
                                                        name=f"remote-{self.name}-restore").start()

    def __repr__(self) -> str:
        return f"RemoteDevice({self.name!r} at {self._link.address})"

    # plumbing ---------------------------------------------------------------------------------------------------
    def _dispatch(self, fn: Callable[[], None]) -> None:
        self._callbacks.put(fn)

    def _run_callbacks(self) -> None:
        while True:
            fn = self._callbacks.get()
            if fn is None:
                return
            try:
                fn()
            except Exception:  # noqa: BLE001
                log.exception("remote %s: callback failed", self.name)

    def _on_event(self, msg: dict[str, Any]) -> None:
        sig = self._signals.get(msg["signal"])
        if sig is not None:
            reading = msg["reading"]
            self._dispatch(lambda: sig._pushed(reading))

    def _restore(self, restarted: bool) -> None:
        """Back in contact: a restarted agent gets the values this process wrote to its signals again (before any
        other request goes out), and the monitored signals are subscribed again."""
        try:
            for sig in self._signals.values():
                try:
                    if restarted and sig.written:
                        sig._rpc("signal_put", restoring=True, value=sig.written[0])
                    if sig._subs:
                        sig._rpc("subscribe", restoring=True)
                except DeviceError as exc:
                    log.warning("remote %s: could not restore %s: %s", self.name, sig.name, exc.problem)
        finally:
            self._link.ready.set()

    def _start(self, method: str, args: dict[str, Any]) -> Status:
        """An action on the agent: the Status ends when the agent's Status ends, or fails when contact is lost."""
        status = Status(obj=self)
        self._link.request(method, args, status=status)
        return status

    def _call(self, method: str, **args: Any) -> Any:
        return self._link.request(method, args)

    # the ophyd surface --------------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return self._call("describe")

    def read(self) -> dict[str, Any]:
        return self._call("read")

    def health(self) -> Health:
        try:
            h = self._call("health")
        except DeviceError as exc:
            return Health(False, exc.problem)
        return Health(bool(h.get("ok")), str(h.get("message")))

    @property
    def calibration(self) -> Any:
        return self._call("calibration")

    def locate(self, sample: str) -> Any:
        return self._call("locate", sample=sample)

    def transports(self) -> list[_Transport]:
        return [_Transport(self, t) for t in self._info.get("transports") or []]

    def conformance_hints(self) -> dict[str, Any]:
        hints = dict(self._info.get("conformance") or {})
        if self._info.get("prepare"):
            hints["prepare"] = lambda dev: dev._call("prepare")
        return hints

    @property
    def connected(self) -> bool:
        return self._link.up

    def disconnect(self) -> None:
        """Close the connection (the agent forgets this client after its heartbeat timeout)."""
        self._link.close()
        self._callbacks.put(None)


class _Movable:
    def set(self, value: Any, **_kw: Any) -> Status:
        return self._start("set", {"value": value})  # type: ignore[attr-defined]


class _Triggerable:
    def trigger(self) -> Status:
        return self._start("trigger", {})  # type: ignore[attr-defined]


class _Stoppable:
    def stop(self, *, success: bool = False) -> None:
        self._call("stop", success=success)  # type: ignore[attr-defined]


class _Configurable:
    def describe_configuration(self) -> dict[str, Any]:
        return self._call("describe_configuration")  # type: ignore[attr-defined]

    def read_configuration(self) -> dict[str, Any]:
        return self._call("read_configuration")  # type: ignore[attr-defined]


_MIXINS = {"Movable": _Movable, "Triggerable": _Triggerable, "Stoppable": _Stoppable, "Configurable": _Configurable}
_CLASSES: dict[tuple[str, ...], type] = {}


def _proxy_class(protocols: list[str]) -> type:
    key = tuple(sorted(p for p in protocols if p in _MIXINS))
    if key not in _CLASSES:
        bases = tuple(_MIXINS[p] for p in key) + (RemoteDevice,)
        _CLASSES[key] = type("RemoteDevice", bases, {"__module__": __name__, "__qualname__": "RemoteDevice"})
    return _CLASSES[key]


def connect(address: str, agent_key: str | bytes, *, name: str | None = None, agent: str | None = None,
            keys: tuple[bytes, bytes] | None = None, timeout: float = CONNECT_TIMEOUT_S,
            lost_after: float = wire.LOST_AFTER_S) -> RemoteDevice:
    """Connect to the agent at ``address`` (its public key ``agent_key``, Z85) and return the device proxy.

    ``name``: the name the campaign gives the device; the agent must serve it under that name (readings are keyed
    by it). ``keys``: this client's CURVE pair (default :func:`client_keys`). Raises LabloopError naming the address
    and the command to start the agent when it does not answer within ``timeout`` seconds."""
    label = f"agent '{agent}'" if agent else (f"the agent of device '{name}'" if name else "the agent")
    server_key = _z85(agent_key)
    if len(server_key) != 40:
        raise LabloopError(f"{label}: {server_key!r} is not a Z85 CURVE public key (40 characters)",
                           "copy the agent's public key from `labloop users list`")
    client = keys or client_keys()
    link = _Link(address, server_key, client, label, lost_after)
    try:
        info = link.request("hello", timeout=timeout + 1.0)
    except DeviceError:
        link.close()
        mine = client[0].decode()
        if link.refused:
            raise LabloopError(f"{label} at {address} does not admit this runner: {link.refused}",
                               f"give the agent a key file made with `labloop users add` on this lab's store (it "
                               f"carries the daemon's key), or add this runner's public key {mine} to its "
                               "trusted_keys; check the agent_key in the campaign") from None
        raise LabloopError(
            f"{label} at {address} did not answer within {timeout:g} s: it is not running there, the address is "
            "wrong, or a firewall is in the way",
            f"{start_hint(address, agent)}") from None
    if not isinstance(info, dict) or not isinstance(info.get("name"), str) or "protocols" not in info:
        link.close()
        raise LabloopError(f"{label} at {address} answered hello with {info!r:.200}",
                           "point the campaign at a labloop agent of the same version")
    if name is not None and info["name"] != name:
        link.close()
        raise LabloopError(f"{label} at {address} serves device '{info['name']}', the campaign calls it '{name}'",
                           f"start the agent with --name {name}, or use the agent's name in the campaign")
    return _proxy_class(list(info["protocols"]))(link, info, label)
