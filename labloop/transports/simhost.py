"""The child side of a simulated instrument: ``python -m labloop.transports.simhost MODULE:ATTR``.

It runs, in one asyncio loop of its own process, the protocol's real server (a pymodbus server, a VISA socket
instrument, ...: the ``MODULE:ATTR`` class, driven by its physics model), a fault-injecting TCP proxy in front of
it, and a control socket. It prints one JSON line on stdout: ``{"address": ..., "port": ..., "control": ...}``
(the address clients use goes through the proxy). The parent (:class:`labloop.transports.simulation.
SimulatorProcess`) sends faults over the control socket; killing the process is the instrument losing power.

A simulator class takes its options as keyword arguments and has ``async def serve(host) -> int`` (start the
server on a free port of ``host``, return it) and ``address_template`` (e.g. ``"tcp://{host}:{port}"``). A line protocol's
simulator names its ``terminator`` (an injected garbage reply is then a whole line). It may handle protocol-level
faults (``fault(kind, **kw) -> bool``, e.g. a Modbus exception reply) and report its model
(``state() -> dict``) for tests.

Proxy faults, consumed by the next request (``count`` requests; ``None``: until cleared): ``slow`` (the reply
``delay`` s late), ``garbage`` (the reply replaced by ``text``), ``silent`` (no reply), ``disconnect`` (hang up on
the request, not forwarding it). ``drop`` closes every client connection now.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
from dataclasses import dataclass
from typing import Any, cast

from labloop import plugins

HOST = "127.0.0.1"
GARBAGE = "\x15#\xfe?garbled reply 0x7f"


@dataclass
class _Fault:
    kind: str
    count: int | None = 1
    delay: float = 1.0
    text: str = GARBAGE


class FaultProxy:
    """Forwards bytes between clients and the real server; injects faults per request/reply chunk."""

    def __init__(self, upstream: int, terminator: str = ""):
        self.upstream = upstream
        self.terminator = terminator.encode("latin-1")  # a line protocol's garbage is a garbage *line*
        self.faults: list[_Fault] = []
        self.clients: set[asyncio.StreamWriter] = set()
        self.server: asyncio.base_events.Server | None = None

    def take(self, kinds: tuple[str, ...]) -> _Fault | None:
        for f in self.faults:
            if f.kind in kinds:
                if f.count is not None:
                    f.count -= 1
                    if f.count <= 0:
                        self.faults.remove(f)
                return f
        return None

    async def start(self, port: int) -> int:
        self.server = await asyncio.start_server(self._client, HOST, port, reuse_address=True)
        return self.server.sockets[0].getsockname()[1]

    def drop(self) -> None:
        for w in list(self.clients):
            w.transport.abort()
        self.clients.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(HOST, self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self.clients.add(writer)
        pending = asyncio.Event()  # a request went up whose reply fault has not been decided

        async def requests() -> None:
            while chunk := await reader.read(65536):
                if self.take(("disconnect",)):
                    writer.transport.abort()
                    up_w.transport.abort()
                    return
                pending.set()
                up_w.write(chunk)
                await up_w.drain()
            up_w.close()

        async def replies() -> None:
            while chunk := await up_r.read(65536):
                fault = self.take(("slow", "garbage", "silent")) if pending.is_set() else None
                pending.clear()
                if fault is not None and fault.kind == "silent":
                    continue
                if fault is not None and fault.kind == "slow":
                    await asyncio.sleep(fault.delay)
                if fault is not None and fault.kind == "garbage":
                    chunk = fault.text.encode("latin-1", errors="replace")
                    if self.terminator and not chunk.endswith(self.terminator):
                        chunk += self.terminator
                writer.write(chunk)
                await writer.drain()
            writer.close()

        tasks = [asyncio.ensure_future(requests()), asyncio.ensure_future(replies())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except Exception:  # noqa: BLE001 - either side's failure ends this connection only; the finally tidies
            pass
        finally:
            for t in tasks:
                t.cancel()
            self.clients.discard(writer)
            for w in (writer, up_w):
                w.transport.abort()


async def _control(sim: Any, proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        try:
            msg = json.loads(line)
            op = msg.pop("op")
            reply: dict[str, Any] = {"ok": True}
            if op == "inject":
                kind = msg.pop("kind")
                handler = getattr(sim, "fault", None)
                if not (callable(handler) and handler(kind, **msg)):
                    if proxy.server is None:
                        raise ValueError(
                            f"fault {kind!r}: this simulator has no fault proxy (its protocol announces its own ports)"
                        )
                    if kind not in ("slow", "garbage", "silent", "disconnect"):
                        raise ValueError(f"unknown fault {kind!r}")
                    proxy.faults.append(
                        _Fault(kind, **{k: v for k, v in msg.items() if k in ("count", "delay", "text")})
                    )
            elif op == "clear":
                proxy.faults.clear()
                clear = getattr(sim, "clear_faults", None)
                if callable(clear):
                    clear()
            elif op == "drop":
                proxy.drop()
            elif op == "state":
                reply["state"] = sim.state() if callable(getattr(sim, "state", None)) else {}
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as exc:  # noqa: BLE001 - a bad control message is answered, never fatal
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        writer.write((json.dumps(reply) + "\n").encode())
        await writer.drain()


async def _main(ref: str, options: dict[str, Any], port: int) -> None:
    sim = plugins.load(ref, "labloop.simulators")(**options)
    proxied = getattr(sim, "proxied", True)  # False: the protocol announces its own ports (EPICS CA)
    upstream = await (sim.serve(HOST) if proxied else sim.serve(HOST, port))  # unproxied: it keeps its port
    proxy = FaultProxy(upstream, getattr(sim, "terminator", ""))
    front = await proxy.start(port) if proxied else upstream
    control = await asyncio.start_server(lambda r, w: _control(sim, proxy, r, w), HOST, 0)
    address = sim.address_template.format(host=HOST, port=front)
    print(
        json.dumps(
            {
                "address": address,
                "port": front,
                "proxied": proxied,
                "direct": sim.address_template.format(host=HOST, port=upstream),
                "control": control.sockets[0].getsockname()[1],
            }
        ),
        flush=True,
    )
    # the parent closes our stdin when it goes: a simulator never outlives the test or command that started it
    loop = asyncio.get_running_loop()
    gone = asyncio.Event()
    stdin = cast(io.BufferedReader, sys.stdin.buffer)  # typed BinaryIO; a pipe's is a BufferedReader (read1)
    loop.add_reader(sys.stdin.fileno(), lambda: gone.set() if not stdin.read1(1) else None)
    await gone.wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="labloop-simhost")
    ap.add_argument("ref")
    ap.add_argument("--options", default="{}")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    asyncio.run(_main(args.ref, json.loads(args.options), args.port))


if __name__ == "__main__":
    main()
