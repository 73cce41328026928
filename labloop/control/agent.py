"""``labloop agent``: serve one ophyd device from the computer it is plugged into, over 0MQ with CURVE.

Why an agent: an instrument's driver (vendor DLL, serial port, USB) often only works on the PC beside it. The agent
builds the device there and answers a remote proxy (:mod:`labloop.control.remote`) that the runner uses as an
ordinary ophyd device. Design choices, each for a failure seen in peers:

* CURVE on the socket, and a ZAP check that admits only the keys it was told to trust (the daemon's, from its key
  file, plus ``trusted_keys`` in its config): nobody else can move the instrument.
* JSON only (:mod:`.wire`), 1 MiB cap, one frame per message: random bytes, truncated or multi-frame messages get an
  error reply or are dropped; the loop never crashes on them.
* Device calls run in worker threads, never in the socket loop: a slow driver cannot stop the heartbeats, so the
  runner can tell "busy" from "dead".
* Heartbeats both ways: the agent pushes one every 0.5 s to each client it heard from recently; it forgets the
  subscriptions of a client silent for longer than :data:`~.wire.LOST_AFTER_S`.

Building the served device from its config and describing it to the proxy is :mod:`.agent_device`.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.auth.thread

from labloop.errors import DeviceError, LabloopError

from . import wire
from .agent_device import AGENT_OPTIONS, _jsonable, _signals, build_device, describe_device  # noqa: F401 - AGENT_OPTIONS: public here too

log = logging.getLogger("labloop.agent")


def trusted_keys(config: Mapping[str, Any], key: Any) -> set[bytes]:
    """Public keys (Z85) the agent admits: the daemon's (``server_public_key`` of its key file) and the config's."""
    listed = config.get("trusted_keys", [])
    if not isinstance(listed, list) or not all(isinstance(k, str) for k in listed):
        raise LabloopError(
            "config: trusted_keys must be a list of Z85 public keys (40 characters each)",
            "list the public keys of the runners allowed to use this agent",
        )
    out = set()
    for k in [*listed, getattr(key, "server_public_key", None)]:
        if not k:
            continue
        if len(k) != 40:
            raise LabloopError(
                f"config: {k!r} is not a Z85 CURVE public key (40 characters)",
                "copy the key from `labloop users list` or the daemon's key file",
            )
        out.add(k.encode())
    if not out:
        raise LabloopError(
            "the agent trusts no client key: nobody could use it",
            "make its key file with `labloop users add NAME --role agent --out FILE` on the store "
            "(it carries the daemon's key), or list trusted_keys in --config",
        )
    return out


@dataclass
class _Client:
    last_seen: float
    subscriptions: dict[str, int] = field(default_factory=dict)  # signal attr -> ophyd subscription id


class Agent:
    """Serves ``device`` on ``bind`` to the clients whose public keys are ``trusted`` (Z85 bytes).

    ``keys``: the agent's own CURVE pair ``(public, secret)`` as Z85 bytes. ``start()`` runs the loop in a thread
    (tests, benchmarks); ``serve_forever()`` runs it in the caller (the CLI)."""

    def __init__(self, device: Any, bind: str, keys: tuple[bytes, bytes], trusted: set[bytes], workers: int = 8):
        self.device, self.bind, self.trusted = device, bind, set(trusted)
        self.boot = uuid.uuid4().hex
        self.ctx = zmq.Context()
        self._auth = zmq.auth.thread.ThreadAuthenticator(self.ctx, log=logging.getLogger("labloop.agent.zap"))
        self._auth.start()
        self._auth.configure_curve_callback("labloop-agent", credentials_provider=self)
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_BYTES)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a proxy that reconnects with the same id takes over
        self.sock.curve_server = True
        self.sock.curve_publickey, self.sock.curve_secretkey = keys
        self.sock.zap_domain = b"labloop-agent"
        try:
            self.sock.bind(bind)
        except zmq.ZMQError as exc:
            self.close()
            raise LabloopError(
                f"cannot listen on {bind}: {exc}",
                "give a free address like tcp://0.0.0.0:7600 (is another agent running there?)",
            ) from None
        self.address = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.outbox = wire.Outbox(self.ctx, "agent")
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"agent-{device.name}")
        self.clients: dict[bytes, _Client] = {}
        self.signals = _signals(device)
        self._status_ids = itertools.count(1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refused = 0  # malformed messages answered with an error or dropped

    # ZAP: admit only trusted keys ------------------------------------------------------------------------------------
    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.trusted
        if not ok:
            log.warning("refused a client with an unknown key %s", key.decode(errors="replace"))
        return ok

    # the loop -------------------------------------------------------------------------------------------------------
    def start(self) -> Agent:
        self._thread = threading.Thread(target=self.serve_forever, name=f"agent-{self.device.name}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        pump = wire.Pump(self.sock, self.outbox)
        next_beat = time.monotonic()
        try:
            while not self._stop.is_set():
                pump.round(self._on_message, self._send)
                now = time.monotonic()
                if now >= next_beat:
                    next_beat = now + wire.HEARTBEAT_S
                    self._heartbeat(now)
        finally:
            self._shutdown()

    def _send(self, ident: bytes, message: Mapping[str, Any]) -> None:
        try:
            payload = wire.encode(message)
            if len(payload) > wire.MAX_BYTES:  # the client would drop the connection: say why instead
                raise ValueError(
                    f"{len(payload)} bytes, over the {wire.MAX_BYTES} byte limit (large data belongs "
                    "in files: describe it as external 'STREAM:' assets)"
                )
            self.sock.send_multipart([ident, payload], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the client is gone or not reading: it notices by the missing heartbeat
        except (TypeError, ValueError) as exc:  # a reading that is not JSON, or too big: tell the client, live on
            if "id" in message:
                self._send(
                    ident,
                    {
                        "id": message["id"],
                        "ok": False,
                        "error": wire.error_body(
                            DeviceError(f"{self.device.name}: the reply cannot travel to the runner: {exc}")
                        ),
                    },
                )
            elif message.get("event") == "status":
                self._send(
                    ident,
                    {
                        "event": "status",
                        "sid": message.get("sid"),
                        "ok": False,
                        "error": wire.error_body(
                            DeviceError(f"{self.device.name}: the action's result cannot travel to the runner: {exc}")
                        ),
                    },
                )

    def _heartbeat(self, now: float) -> None:
        for ident, client in list(self.clients.items()):
            if now - client.last_seen > wire.LOST_AFTER_S:
                self._forget(ident)
            else:
                self._send(ident, {"event": "heartbeat", "boot": self.boot})

    def _forget(self, ident: bytes) -> None:
        client = self.clients.pop(ident, None)
        if client is None:
            return
        for attr, cid in client.subscriptions.items():
            try:
                self.signals[attr].unsubscribe(cid)
            except Exception:  # noqa: BLE001 - a signal that will not unsubscribe only wastes a callback
                pass
        log.info("client %r silent for %.1f s: forgot it", ident, wire.LOST_AFTER_S)

    def _on_message(self, frames: list[bytes]) -> None:
        ident = frames[0]
        if len(frames) != 2:
            self.refused += 1
            self._send(
                ident,
                {
                    "id": None,
                    "ok": False,
                    "error": {
                        "code": "bad_request",
                        "problem": f"a request is one frame; got {len(frames) - 1}",
                        "fix": "send one JSON object per message",
                        "type": "WireError",
                    },
                },
            )
            return
        client = self.clients.get(ident)
        if client is None:
            client = self.clients[ident] = _Client(time.monotonic())
        client.last_seen = time.monotonic()
        try:
            req = wire.parse_request(frames[1])
        except wire.WireError as exc:
            self.refused += 1
            self._send(
                ident, {"id": wire.request_id(frames[1]), "ok": False, "error": wire.error_body(exc, "bad_request")}
            )
            return
        if req.method == "ping":
            self._send(ident, {"id": req.id, "ok": True, "result": {"boot": self.boot}})
            return
        handler = _HANDLERS.get(req.method)
        if handler is None:
            self.refused += 1
            self._send(
                ident,
                {
                    "id": req.id,
                    "ok": False,
                    "error": {
                        "code": "unknown_method",
                        "problem": f"unknown method {req.method!r}",
                        "fix": f"use one of {sorted(_HANDLERS)}",
                        "type": "WireError",
                    },
                },
            )
            return
        if req.method in ("subscribe", "unsubscribe"):  # touches client state: in the loop thread
            self._reply(ident, req.id, lambda: handler(self, ident, req.args))
            return
        if req.method == "stop":  # never queued behind device calls that block the pool: stop must act now
            threading.Thread(
                target=self._reply,
                args=(ident, req.id, lambda: handler(self, ident, req.args), True),
                name=f"agent-{self.device.name}-stop",
                daemon=True,
            ).start()
            return
        self.pool.submit(self._reply, ident, req.id, lambda: handler(self, ident, req.args), True)

    def _reply(self, ident: bytes, rid: int, work: Callable[[], Any], queued: bool = False) -> None:
        try:
            message = {"id": rid, "ok": True, "result": work()}
        except wire.WireError as exc:
            message = {"id": rid, "ok": False, "error": wire.error_body(exc, "bad_request")}
        except Exception as exc:  # noqa: BLE001 - every device error goes back to the client, the agent lives on
            message = {"id": rid, "ok": False, "error": wire.error_body(exc)}
        if queued:
            self.outbox.put(ident, message)
        else:
            self._send(ident, message)

    # helpers for handlers -------------------------------------------------------------------------------------------
    def watch(self, ident: bytes, status: Any) -> int:
        """Report ``status``'s end to the client as a ``status`` event; returns the id the client waits on."""
        sid = next(self._status_ids)
        if not callable(getattr(status, "add_callback", None)):
            raise DeviceError(
                f"{self.device.name}: the action returned {type(status).__name__}, not a Status",
                "fix the driver: set()/trigger() must return a Status",
            )

        def done(st: Any) -> None:
            if getattr(st, "success", False):
                self.outbox.put(ident, {"event": "status", "sid": sid, "ok": True})
                return
            try:
                exc = st.exception(timeout=0)
            except TypeError:
                exc = st.exception()
            except Exception as err:  # noqa: BLE001 - whatever it is, it is the failure reported
                exc = err
            exc = exc or DeviceError(f"{self.device.name}: the action failed without a reason")
            self.outbox.put(ident, {"event": "status", "sid": sid, "ok": False, "error": _status_error(exc)})

        status.add_callback(done)
        return sid

    def signal(self, args: Mapping[str, Any]) -> Any:
        attr = args.get("signal")
        if not isinstance(attr, str) or attr not in self.signals:
            raise wire.WireError(
                f"{self.device.name} has no signal {attr!r} (has {sorted(self.signals)})",
                "name one of the device's signals",
            )
        return self.signals[attr]

    # stopping -------------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def _shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.outbox.close()
        self.close()

    def close(self) -> None:
        try:
            self.sock.close(0)
        finally:
            self._auth.stop()
            self.ctx.term()


def _status_error(exc: BaseException) -> dict[str, Any]:
    """A failed Status' reason: the device's own words (ophyd wraps timeouts: keep the type in the text)."""
    body = wire.error_body(exc)
    if not isinstance(exc, LabloopError):
        text = str(exc) or type(exc).__name__
        body["problem"] = f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text
    return body


def _value(args: Mapping[str, Any]) -> Any:
    if "value" not in args:
        raise wire.WireError("missing 'value'", 'send args {"value": ...}')
    return args["value"]


def _call(fn: Any) -> Any:
    out = fn()
    if inspect.isawaitable(out):
        raise DeviceError(
            "asynchronous (ophyd-async) devices are not served by this agent yet", "serve a synchronous ophyd device"
        )
    return out


def _health(agent: Agent, _i: bytes, _a: Mapping[str, Any]) -> Any:
    h = _call(agent.device.health)
    return {"ok": bool(getattr(h, "ok", False)), "message": str(getattr(h, "message", h))}


def _set(agent: Agent, ident: bytes, args: Mapping[str, Any]) -> Any:
    return {"sid": agent.watch(ident, agent.device.set(_value(args)))}


def _subscribe(agent: Agent, ident: bytes, args: Mapping[str, Any]) -> Any:
    attr = str(args.get("signal"))
    sig = agent.signal(args)
    client = agent.clients[ident]
    if attr in client.subscriptions:
        return {"subscribed": attr}

    def push(*_a: Any, value: Any = None, timestamp: Any = None, **_kw: Any) -> None:
        ts = timestamp if isinstance(timestamp, (int, float)) else time.time()
        agent.outbox.put(ident, {"event": "signal", "signal": attr, "reading": {"value": value, "timestamp": ts}})

    client.subscriptions[attr] = sig.subscribe(push, run=True)
    return {"subscribed": attr}


def _unsubscribe(agent: Agent, ident: bytes, args: Mapping[str, Any]) -> Any:
    attr = str(args.get("signal"))
    cid = agent.clients[ident].subscriptions.pop(attr, None)
    if cid is not None:
        agent.signal(args).unsubscribe(cid)
    return {"unsubscribed": attr}


def _prepare(agent: Agent, _i: bytes, _a: Mapping[str, Any]) -> Any:
    hints = agent.device.conformance_hints()
    hints["prepare"](agent.device)
    return None


def _sever(agent: Agent, _i: bytes, _a: Mapping[str, Any]) -> Any:
    for t in agent.device.transports():
        t.sever()
    return None


def _locate(agent: Agent, _i: bytes, args: Mapping[str, Any]) -> Any:
    fn = getattr(agent.device, "locate", None)
    return fn(str(args.get("sample"))) if callable(fn) else None


_HANDLERS: dict[str, Callable[[Agent, bytes, Mapping[str, Any]], Any]] = {
    "hello": lambda a, _i, _x: describe_device(a.device, a.boot),
    "describe": lambda a, _i, _x: _call(a.device.describe),
    "read": lambda a, _i, _x: _call(a.device.read),
    "describe_configuration": lambda a, _i, _x: _call(a.device.describe_configuration),
    "read_configuration": lambda a, _i, _x: _call(a.device.read_configuration),
    "health": _health,
    "set": _set,
    "trigger": lambda a, i, _x: {"sid": a.watch(i, a.device.trigger())},
    "stop": lambda a, _i, x: _call(lambda: a.device.stop(success=bool(x.get("success", False)))),
    "calibration": lambda a, _i, _x: _jsonable(getattr(a.device, "calibration", None)),
    "locate": _locate,
    "prepare": _prepare,
    "sever": _sever,
    "signal_get": lambda a, _i, x: a.signal(x).get(),
    "signal_put": lambda a, _i, x: a.signal(x).put(_value(x)),
    "signal_set": lambda a, i, x: {"sid": a.watch(i, a.signal(x).set(_value(x)))},
    "signal_read": lambda a, _i, x: a.signal(x).read(),
    "signal_describe": lambda a, _i, x: a.signal(x).describe(),
    "subscribe": _subscribe,
    "unsubscribe": _unsubscribe,
}


def agent_keys(path: str | os.PathLike[str] | None) -> Any:
    """The agent's key file (``labloop users add NAME --role agent --out FILE``; else env ``LABLOOP_KEY``)."""
    from labloop.identity.keys import load_client_key

    given = path or os.environ.get("LABLOOP_KEY")
    if not given:
        raise LabloopError(
            "the agent needs its key file (--key FILE or LABLOOP_KEY): CURVE is not optional",
            "on the store, run `labloop users add NAME --role agent --out NAME.key` and copy the "
            "file to this computer (mode 0600)",
        )
    return load_client_key(given)


def run_agent(
    target: str,
    bind: str,
    config: Mapping[str, Any],
    name: str | None,
    key: Any,
    announce: Callable[[str], None] = print,
) -> None:
    """What ``labloop agent`` does: build the device, serve it until SIGTERM or Ctrl-C, then let it go."""
    import signal

    keys = agent_keys(key)
    device = build_device(target, config, name or keys.name)
    served = Agent(device, bind, (keys.public_key.encode(), keys.secret_key.encode()), trusted_keys(config, keys))
    signal.signal(signal.SIGTERM, lambda *_: served.stop())
    announce(
        f"agent: serving {target} as '{device.name}' on {served.address} (CURVE public key "
        f"{keys.public_key}); Ctrl-C stops"
    )
    try:
        served.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        disconnect = getattr(device, "disconnect", None)
        if callable(disconnect):
            disconnect()


def main(argv: list[str] | None = None) -> None:
    """``python -m labloop.control.agent``: the same as ``labloop agent`` without loading the whole CLI (the
    optimizer's imports take seconds): what :mod:`.agent_process` starts."""
    import argparse
    import sys

    from labloop.driver_options import load_config

    ap = argparse.ArgumentParser(prog="labloop agent")
    ap.add_argument("target")
    ap.add_argument("--bind", required=True)
    ap.add_argument("--config")
    ap.add_argument("--name")
    ap.add_argument("--key")
    args = ap.parse_args(argv)
    try:
        from pathlib import Path

        run_agent(
            args.target,
            args.bind,
            load_config(Path(args.config) if args.config else None),
            args.name,
            args.key,
            announce=lambda line: print(line, flush=True),
        )
    except LabloopError as exc:
        print(f"error: {exc.problem}" + (f"\nfix: {exc.fix}" if exc.fix else ""), file=sys.stderr, flush=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
