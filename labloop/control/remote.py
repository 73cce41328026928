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
Movable), exactly as the device it stands for. The connection under it (thread, heartbeats, failures) is
:mod:`.remote_link`.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any

from ophyd.status import Status

from labloop.contract import Health
from labloop.errors import DeviceError, LabloopError

from . import wire
from .remote_link import CALL_TIMEOUT_S, CONNECT_TIMEOUT_S, _z85, client_keys, log, start_hint  # noqa: F401 - public here
from .remote_link import Link as _Link


class RemoteSignal:
    """A component signal of a remote device: ``get/put/set/read/describe`` go to the agent; ``subscribe``
    registers a callback that fires (in this process, on the proxy's dispatcher thread) on every value the agent
    pushes, ophyd style (``value=, old_value=, timestamp=, obj=``), so a bluesky ``monitor`` records it."""

    def __init__(self, parent: RemoteDevice, attr: str, name: str, kind: int):
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
            self.parent._dispatch(
                lambda: callback(
                    value=latest["value"], old_value=None, timestamp=latest["timestamp"], sub_type="value", obj=self
                )
            )
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
                cb(
                    value=reading.get("value"),
                    old_value=None if old is None else old.get("value"),
                    timestamp=reading.get("timestamp"),
                    sub_type="value",
                    obj=self,
                )
            except Exception:  # noqa: BLE001 - one bad callback must not stop the others (as in ophyd)
                log.exception("subscription callback of %s failed", self.name)


class _Transport:
    """What the conformance kit needs of a driver transport: its timeout, and a way to cut it (on the agent)."""

    def __init__(self, device: RemoteDevice, timeout: float):
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
        self._dispatcher = threading.Thread(
            target=self._run_callbacks, name=f"remote-{self.name}-callbacks", daemon=True
        )
        self._dispatcher.start()
        link.on_event = self._on_event
        # Its own thread: a subscription callback that calls the agent must not wait behind the restore it blocks.
        link.on_up = lambda restarted: threading.Thread(
            target=self._restore, args=(restarted,), daemon=True, name=f"remote-{self.name}-restore"
        ).start()

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
            except Exception:  # noqa: BLE001 - a subscriber's bug is logged, not the link's
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
        return self._start("set", {"value": value})  # type: ignore[attr-defined]  # a mixin of RemoteDevice


class _Triggerable:
    def trigger(self) -> Status:
        return self._start("trigger", {})  # type: ignore[attr-defined]  # a mixin of RemoteDevice


class _Stoppable:
    def stop(self, *, success: bool = False) -> None:
        self._call("stop", success=success)  # type: ignore[attr-defined]  # a mixin of RemoteDevice


class _Configurable:
    def describe_configuration(self) -> dict[str, Any]:
        return self._call("describe_configuration")  # type: ignore[attr-defined]  # a mixin of RemoteDevice

    def read_configuration(self) -> dict[str, Any]:
        return self._call("read_configuration")  # type: ignore[attr-defined]  # a mixin of RemoteDevice


_MIXINS = {"Movable": _Movable, "Triggerable": _Triggerable, "Stoppable": _Stoppable, "Configurable": _Configurable}
_CLASSES: dict[tuple[str, ...], type] = {}


def _proxy_class(protocols: list[str]) -> type:
    key = tuple(sorted(p for p in protocols if p in _MIXINS))
    if key not in _CLASSES:
        bases = tuple(_MIXINS[p] for p in key) + (RemoteDevice,)
        _CLASSES[key] = type("RemoteDevice", bases, {"__module__": __name__, "__qualname__": "RemoteDevice"})
    return _CLASSES[key]


def connect(
    address: str,
    agent_key: str | bytes,
    *,
    name: str | None = None,
    agent: str | None = None,
    keys: tuple[bytes, bytes] | None = None,
    timeout: float = CONNECT_TIMEOUT_S,
    lost_after: float = wire.LOST_AFTER_S,
) -> RemoteDevice:
    """Connect to the agent at ``address`` (its public key ``agent_key``, Z85) and return the device proxy.

    ``name``: the name the campaign gives the device; the agent must serve it under that name (readings are keyed
    by it). ``keys``: this client's CURVE pair (default :func:`client_keys`). Raises LabloopError naming the address
    and the command to start the agent when it does not answer within ``timeout`` seconds."""
    label = f"agent '{agent}'" if agent else (f"the agent of device '{name}'" if name else "the agent")
    server_key = _z85(agent_key)
    if len(server_key) != 40:
        raise LabloopError(
            f"{label}: {server_key!r} is not a Z85 CURVE public key (40 characters)",
            "copy the agent's public key from `labloop users list`",
        )
    client = keys or client_keys()
    link = _Link(address, server_key, client, label, lost_after)
    try:
        info = link.request("hello", timeout=timeout + 1.0)
    except DeviceError:
        link.close()
        mine = client[0].decode()
        if link.refused:
            raise LabloopError(
                f"{label} at {address} does not admit this runner: {link.refused}",
                f"give the agent a key file made with `labloop users add` on this lab's store (it "
                f"carries the daemon's key), or add this runner's public key {mine} to its "
                "trusted_keys; check the agent_key in the campaign",
            ) from None
        raise LabloopError(
            f"{label} at {address} did not answer within {timeout:g} s: it is not running there, the address is "
            "wrong, or a firewall is in the way",
            f"{start_hint(address, agent)}",
        ) from None
    if not isinstance(info, dict) or not isinstance(info.get("name"), str) or "protocols" not in info:
        link.close()
        raise LabloopError(
            f"{label} at {address} answered hello with {info!r:.200}",
            "point the campaign at a labloop agent of the same version",
        )
    if name is not None and info["name"] != name:
        link.close()
        raise LabloopError(
            f"{label} at {address} serves device '{info['name']}', the campaign calls it '{name}'",
            f"start the agent with --name {name}, or use the agent's name in the campaign",
        )
    return _proxy_class(list(info["protocols"]))(link, info, label)
