"""The agent wire format: one JSON object per 0MQ frame, never pickle, at most 1 MiB.

Why a module of its own: the agent (server) and the remote proxy (client) must agree byte for byte on how a
reading, a ``Move`` or an error travels, and both must treat anything else (random bytes, truncated JSON, extra
frames, wrong types, oversized payloads) as data to refuse, never as something to execute or crash on.

Requests (client -> agent)::  {"v": 1, "id": 7, "method": "read", "args": {...}}
Replies (agent -> client)::   {"id": 7, "ok": true, "result": ...} | {"id": 7, "ok": false, "error": {code, problem, fix, type}}
Events (agent -> client)::    {"event": "status", "sid": 3, "ok": false, "error": {...}}
                              {"event": "signal", "signal": "probe_temperature", "reading": {"value": .., "timestamp": ..}}
                              {"event": "heartbeat", "boot": "..."}
"""

from __future__ import annotations

import json
import math
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

import zmq
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labloop.contract import Move
from labloop.errors import DeviceError, LabloopError, LimitError

VERSION = 1
MAX_BYTES = 1 << 20  # 1 MiB: bigger frames are dropped by 0MQ itself (MAXMSGSIZE) before we see them
HEARTBEAT_S = 0.5  # both ways
LOST_AFTER_S = 2.0  # silence after which the other side counts as gone (4 missed heartbeats)
RAW_SHOWN = 200  # bytes of a garbage message quoted in an error


class Request(BaseModel):
    """One request to an agent; anything else is refused with ``bad_request``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    v: int
    id: int = Field(ge=0, lt=2**53)
    method: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)


class WireError(LabloopError):
    """A message that is not what the protocol allows (raised by :func:`decode`)."""


def _default(obj: Any) -> Any:
    if isinstance(obj, Move):
        return {"$move": {"sample": obj.sample, "source": obj.source, "destination": obj.destination}}
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} cannot travel to or from an agent (JSON only)")


def encode(message: Mapping[str, Any]) -> bytes:
    """JSON bytes of a message; numpy values become numbers/lists, a Move becomes ``{"$move": ...}``."""
    return json.dumps(message, default=_default, separators=(",", ":")).encode()


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and "$move" in obj and isinstance(obj["$move"], dict):
        m = obj["$move"]
        if all(isinstance(m.get(k), str) for k in ("sample", "source", "destination")):
            return Move(m["sample"], m["source"], m["destination"])
    return obj


def raw_excerpt(raw: bytes) -> str:
    """How a garbage message is quoted in an error: its first bytes, escaped."""
    shown = raw[:RAW_SHOWN]
    return repr(shown) + (f" (+{len(raw) - RAW_SHOWN} more bytes)" if len(raw) > RAW_SHOWN else "")


def decode(raw: bytes) -> dict[str, Any]:
    """A JSON object from one frame, or :class:`WireError` (never anything else: no pickle, no eval)."""
    if len(raw) > MAX_BYTES:
        raise WireError(f"message of {len(raw)} bytes is over the {MAX_BYTES} byte limit", "send less")
    try:
        obj = json.loads(raw.decode("utf-8"), object_hook=_hook)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError(
            f"not a JSON message ({type(exc).__name__}): {raw_excerpt(raw)}", "send one JSON object per frame"
        ) from None
    if not isinstance(obj, dict):
        raise WireError(
            f"a message must be a JSON object, got {type(obj).__name__}: {raw_excerpt(raw)}",
            "send one JSON object per frame",
        )
    return obj


def parse_request(raw: bytes) -> Request:
    obj = decode(raw)
    try:
        req = Request.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "message"
        raise WireError(
            f"malformed request: {where}: {first.get('msg')}",
            'send {"v": 1, "id": <int>, "method": <text>, "args": {...}}',
        ) from None
    if req.v != VERSION:
        raise WireError(
            f"protocol version {req.v} is not spoken here (this agent speaks {VERSION})",
            "use the same labloop version on the agent and the runner",
        )
    return req


def request_id(raw: bytes) -> int | None:
    """The id of a request that was refused, when it has a readable one (so the client knows which one failed)."""
    try:
        rid = decode(raw).get("id")
    except WireError:
        return None
    return rid if isinstance(rid, int) and not isinstance(rid, bool) and 0 < rid < 2**53 else None


def error_body(exc: BaseException, code: str = "device_error") -> dict[str, Any]:
    """How an exception travels: its problem, fix and type (LimitError stays a LimitError on the other side)."""
    if isinstance(exc, LabloopError):
        return {"code": code, "problem": exc.problem, "fix": exc.fix, "type": type(exc).__name__}
    return {"code": code, "problem": f"{type(exc).__name__}: {exc}", "fix": None, "type": type(exc).__name__}


def error_from(body: Any, where: str) -> DeviceError:
    """The exception an error body stands for, on the client side (``where`` names the agent)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("problem"), str):
        return DeviceError(f"{where} sent a malformed error: {body!r:.{RAW_SHOWN}}", "check the agent's version")
    cls = LimitError if body.get("type") == "LimitError" else DeviceError
    fix = body.get("fix")
    return cls(body["problem"], fix if isinstance(fix, str) else None)


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


class Outbox:
    """Messages other threads want a 0MQ loop thread to send (0MQ sockets belong to one thread).

    ``put`` queues a message and wakes the loop through an inproc PUSH/PULL pair; the loop polls ``wake`` along
    with its real socket and calls ``drain``."""

    def __init__(self, ctx: zmq.Context, name: str):
        self._q: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._addr = f"inproc://labloop-outbox-{name}-{id(self)}"
        self.wake = ctx.socket(zmq.PULL)
        self.wake.bind(self._addr)
        self._ctx = ctx
        self._local = threading.local()
        self._pushers: list[zmq.Socket] = []
        self._lock = threading.Lock()

    def put(self, *item: Any) -> None:
        self._q.put(item)
        push = getattr(self._local, "push", None)
        if push is None:
            push = self._ctx.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            push.connect(self._addr)
            self._local.push = push
            with self._lock:
                self._pushers.append(push)
        try:
            push.send(b"", zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the loop is gone or already has wake-ups queued; the item waits in the queue

    def drain(self) -> list[tuple[Any, ...]]:
        while True:
            try:
                self.wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        out = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        with self._lock:
            for s in self._pushers:
                s.close(0)
            self._pushers.clear()
        self.wake.close(0)


class Pump:
    """The loop of a socket thread (agent or proxy): ``round()`` waits up to a fifth of a heartbeat for traffic,
    handles what came (at most 100 messages, so heartbeats still go out under a flood) and sends what other threads
    queued in the outbox."""

    def __init__(self, sock: zmq.Socket, outbox: Outbox):
        self.sock, self.outbox = sock, outbox
        self.poller = zmq.Poller()
        self.poller.register(sock, zmq.POLLIN)
        self.poller.register(outbox.wake, zmq.POLLIN)

    def round(self, on_frames: Callable[[list[bytes]], None], on_item: Callable[..., None]) -> None:
        events = dict(self.poller.poll(timeout=int(HEARTBEAT_S * 1000 / 5)))
        if self.sock in events:
            for _ in range(100):
                try:
                    frames = self.sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                on_frames(frames)
        if self.outbox.wake in events:
            for item in self.outbox.drain():
                on_item(*item)
