"""Common ground of the lab's OPC UA servers (asyncua's own server): one object with variables and methods, a scan
loop, and the simulator clock. Methods that take time start the work and return at once; the work's progress is
in variables (``Busy``/``Done``/a fault text), so a client polls or subscribes and can call ``Stop`` meanwhile, as
with a PLC-run tool (a blocking method would hold the client's only session until it returned)."""

from __future__ import annotations

import asyncio
import functools
import socket
from typing import Any

from asyncua import Server, ua
from asyncua.common.methods import uamethod


class OpcuaTool:
    address_template = "opc.tcp://{host}:{port}/labloop/tool"
    object_name = "Tool"

    def __init__(self, time_scale: float = 1.0, seed: int = 0):
        self.ts = float(time_scale)
        self.seed = seed
        self.nodes: dict[str, Any] = {}

    async def serve(self, host: str) -> int:
        with socket.socket() as s:  # asyncua needs the port before it binds: take a free one
            s.bind((host, 0))
            port = s.getsockname()[1]
        server = Server()
        await server.init()
        server.set_endpoint(self.address_template.format(host=host, port=port))
        server.set_server_name(f"labloop simulated {self.object_name}")
        self.idx = await server.register_namespace(f"urn:labloop:sim:{self.object_name.lower()}")
        self.obj = await server.nodes.objects.add_object(
            ua.NodeId(self.object_name, self.idx), ua.QualifiedName(self.object_name, self.idx)
        )
        await self.build()
        self.server = server
        await server.start()
        return port

    async def var(self, name: str, value: Any, vtype: ua.VariantType, writable: bool = False) -> Any:
        node = await self.obj.add_variable(
            ua.NodeId(f"{self.object_name}.{name}", self.idx),
            ua.QualifiedName(name, self.idx),
            ua.Variant(value, vtype),
        )
        if writable:
            await node.set_writable()
        self.nodes[name] = node
        return node

    async def method(self, name: str, fn: Any, args: list[ua.VariantType], out: list[ua.VariantType]) -> None:
        await self.obj.add_method(
            ua.NodeId(f"{self.object_name}.{name}", self.idx), ua.QualifiedName(name, self.idx), fn, args, out
        )

    async def set(self, name: str, value: Any) -> None:
        node = self.nodes[name]
        vtype = await node.read_data_type_as_variant_type()
        await node.write_value(ua.DataValue(ua.Variant(value, vtype)))

    async def get(self, name: str) -> Any:
        return await self.nodes[name].read_value()

    async def build(self) -> None:
        raise NotImplementedError


def refuse(status: str) -> ua.UaStatusCodeError:
    return ua.UaStatusCodeError(getattr(ua.StatusCodes, status))


def tool_method(func: Any) -> Any:
    """``uamethod`` whose refusal (a raised ``UaStatusCodeError``) reaches the client as that status: asyncua's server
    answers any exception a method raises with ``BadUnexpectedError``, and a returned status code as itself."""

    @functools.wraps(func)
    async def inner(*args: Any) -> Any:
        try:
            return await func(*args)
        except ua.UaStatusCodeError as exc:
            return ua.StatusCode(exc.code)

    return uamethod(inner)


async def cancel(task: asyncio.Task[None] | None) -> bool:
    """Cancel a running piece of work and wait until its clean-up ran (so ``Busy`` is false when Stop returns)."""
    if task is None or task.done():
        return False
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return True
