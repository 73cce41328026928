"""The client side: control requests (DEALER) and the live stream (SUB) that never loses or repeats an event.

:class:`Client` sends one request, waits at most ``timeout`` for its reply and raises
:class:`~labloop.errors.LabloopError` when no daemon answers, so no command ever hangs on a dead daemon.
:class:`Follower` subscribes to the stream and, whenever it sees a gap in a campaign's ``seq`` (it joined late,
its connection dropped, the daemon's queue for it overflowed), fetches the missing events through ``missed``
before handing on the live ones: every event exactly once, in order.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import zmq

from labloop.errors import LabloopError
from labloop.identity.keys import ClientKey, apply_client, load_client_key

from . import protocol

SERVER_ENV = "LABLOOP_SERVER"
REPLY_LIMIT = 1 << 30  # replies (an export) may be large; requests are limited by the daemon


def server_address(given: str | None, key: ClientKey | None = None) -> str | None:
    """--server, else $LABLOOP_SERVER; None: the key file's address (:meth:`Client.from_options`), or the store."""
    return given or os.environ.get(SERVER_ENV) or None


class Client:
    def __init__(self, address: str, key: ClientKey, timeout: float = 10.0):
        self.address, self.key, self.timeout = address, key, timeout
        self.ctx: zmq.Context[Any] = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        apply_client(self.sock, key)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, REPLY_LIMIT)
        self.sock.connect(address)

    @classmethod
    def from_options(cls, server: str | None, key_file: str | None, timeout: float = 10.0) -> Client | None:
        """A client when a server is given (option or environment), or a key file (--key) whose control address
        names one; else None (the command works on the store)."""
        address = server_address(server)
        if address is None:
            if key_file is None:
                return None
            key = load_client_key(key_file)
            if not key.control:
                raise LabloopError(
                    f"the key file {key_file} names no daemon address",
                    "pass --server tcp://HOST:7510 (or set LABLOOP_SERVER)",
                )
            return cls(key.control, key, timeout)
        return cls(address, load_client_key(key_file), timeout)

    def call(self, method: str, timeout: float | None = None, **params: Any) -> Any:
        """Send one request; the result, or :class:`LabloopError` with the daemon's problem and fix."""
        rid = uuid.uuid4().hex
        self.sock.send(protocol.request(rid, method, params))
        wait_ms = int(1000 * (self.timeout if timeout is None else timeout))
        while True:
            if not self.sock.poll(wait_ms):
                self._reconnect()
                raise LabloopError(
                    f"no daemon answers at {self.address}",
                    "start it with `labloop serve` or check --server; if it is running, your key "
                    "is not one of its users or was revoked (it drops such connections without a "
                    "reply): an admin sees who is enrolled with `labloop users list`",
                )
            reply = json.loads(self.sock.recv())
            if reply.get("id") in (rid, None):
                break  # an id of None answers a request the daemon could not read: ours
        if reply.get("ok"):
            return reply.get("result")
        err = reply.get("error") or {}
        raise LabloopError(err.get("problem", "the daemon refused the request"), err.get("fix", ""))

    def _reconnect(self) -> None:
        """A request that got no answer must not have its late reply read as the answer to the next one."""
        self.sock.close(0)
        self.sock = self.ctx.socket(zmq.DEALER)
        apply_client(self.sock, self.key)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, REPLY_LIMIT)
        self.sock.connect(self.address)

    def export(self, **params: Any) -> tuple[bytes, dict[str, Any] | None]:
        r = self.call("export", timeout=max(self.timeout, 120.0), **params)
        return base64.b64decode(r["data"]), r.get("manifest")

    def close(self) -> None:
        self.sock.close(0)


def stream_address(control: str) -> str:
    """The stream's default address beside a control address: the next port (7510 -> 7511)."""
    head, _, port = control.rpartition(":")
    return f"{head}:{int(port) + 1}" if port.isdigit() else control


class Follower:
    """Every event of the campaigns followed, exactly once and in ``seq`` order, live.

    ``campaign`` None follows every campaign the stream carries (each from the first event seen, or from
    ``after`` when given per campaign id)."""

    def __init__(self, client: Client, stream: str, campaign: str | None = None, after: dict[int, int] | None = None):
        self.client = client
        self.campaign = campaign
        self.last: dict[int, int] = dict(after or {})
        self.sub = client.ctx.socket(zmq.SUB)
        apply_client(self.sub, client.key)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 100_000)
        self.sub.setsockopt(zmq.SUBSCRIBE, (campaign or "").encode())
        self.sub.connect(stream)
        self.stream = stream
        self.fetched = 0  # events that came through missed rather than live (for benchmarks and tests)

    def catch_up(self, campaign: str | int, after: int = 0) -> list[dict[str, Any]]:
        """Everything stored for ``campaign`` after seq ``after``, in order; marks it seen."""
        out: list[dict[str, Any]] = []
        while True:
            r = self.client.call("missed", campaign=campaign, after_seq=after)
            cid = r["campaign_id"]
            for e in r["events"]:
                out.append({**e, "campaign": r["campaign"], "campaign_id": cid})
                after = e["seq"]
            self.fetched += len(r["events"])
            self.last[cid] = max(self.last.get(cid, 0), after)
            if not r["events"] or after >= r["last_seq"]:
                return out

    def reconnect(self) -> None:
        """Drop the stream connection and open a new one (what a flaky network does; tests and benchmarks)."""
        self.sub.close(0)
        self.sub = self.client.ctx.socket(zmq.SUB)
        apply_client(self.sub, self.client.key)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 100_000)
        self.sub.setsockopt(zmq.SUBSCRIBE, (self.campaign or "").encode())
        self.sub.connect(self.stream)

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        """Events that arrived within ``timeout`` seconds (gaps filled through ``missed``), in order."""
        out: list[dict[str, Any]] = []
        if not self.sub.poll(int(timeout * 1000)):
            return out
        while True:
            try:
                topic, body = self.sub.recv_multipart(zmq.NOBLOCK)[:2]
            except zmq.Again:
                return out
            except ValueError:
                continue
            try:
                msg = json.loads(body)
                cid, seq = int(msg["campaign_id"]), int(msg["seq"])
            except (ValueError, KeyError, TypeError):
                continue  # not a message of ours: dropped
            if self.campaign is not None and topic.decode(errors="replace") != self.campaign:
                continue  # a longer name with ours as its prefix
            last = self.last.get(cid)
            if last is None and self.campaign is None and not out:
                last = self.last[cid] = seq - 1  # following everything: start from the first one seen
            if last is not None and seq <= last:
                continue  # seen already (through missed)
            if last is None or seq > last + 1:
                out.extend(self.catch_up(cid, last or 0))  # the gap, and usually this one too
                if self.last.get(cid, 0) >= seq:
                    continue
            out.append(msg)
            self.last[cid] = seq

    def events(self, timeout: float = 0.5) -> Iterator[dict[str, Any]]:
        while True:
            yield from self.poll(timeout)

    def close(self) -> None:
        self.sub.close(0)
