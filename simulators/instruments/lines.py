"""The socket side shared by line-protocol simulators (SCPI, MT-SICS): one asyncio server, one reply per line."""

from __future__ import annotations

import asyncio


class LineInstrument:
    """Subclasses set ``address_template`` and ``terminator`` and implement ``answer(line) -> reply or None``."""

    address_template = "socket://{host}:{port}"
    terminator = "\n"

    async def answer(self, line: str) -> str | None:
        raise NotImplementedError

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        term = self.terminator.encode()
        try:
            while line := await reader.readuntil(term):
                reply = await self.answer(line[: -len(term)].decode("ascii", errors="replace"))
                if reply is not None:
                    writer.write(reply.encode() + term)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def serve(self, host: str) -> int:
        self.server = await asyncio.start_server(self._client, host, 0)
        return self.server.sockets[0].getsockname()[1]
