"""A raw HTTP/1.1 client for the server tests: exact bytes out, parsed responses in.

``serving(router)`` runs an ApiServer whose connections are socketpairs, so the tests see the server's bytes
exactly as a client would, with no listener and no filesystem.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ketch.api.router import Router
from ketch.api.server import ApiServer

SERVER_VERSION = "9.9.9-test"


@dataclass
class Reply:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


class Wire:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(
        self,
        method: str,
        target: str,
        *,
        body: bytes | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        lines = [f"{method} {target} HTTP/1.1", "Host: docker", *(f"{k}: {v}" for k, v in headers)]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))

    async def head(self) -> Reply:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = raw[:-4].decode("latin-1").split("\r\n")
        _, status, reason = [*status_line.split(" ", 2), ""][:3]
        headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in header_lines)]
        return Reply(int(status), reason, headers)

    async def chunk(self) -> bytes | None:
        """One chunk of a chunked body; None for the last (empty) chunk."""
        size = int((await self.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2] if size else None

    async def response(self, *, method: str = "GET") -> Reply:
        reply = await self.head()
        if method == "HEAD" or reply.status in (204, 304) or reply.status < 200:
            return reply
        if reply.header("transfer-encoding") == "chunked":
            parts = []
            while (part := await self.chunk()) is not None:
                parts.append(part)
            reply.body = b"".join(parts)
        elif (length := reply.header("content-length")) is not None:
            reply.body = await self.reader.readexactly(int(length))
        else:
            reply.body = await self.reader.read()
        return reply

    async def call(self, method: str, target: str, **kwargs: Any) -> Reply:
        await self.request(method, target, **kwargs)
        return await self.response(method=method)

    async def at_eof(self, timeout: float = 5) -> bool:
        """True if the server closes the connection (sending nothing more) within ``timeout``."""
        return await asyncio.wait_for(self.reader.read(1), timeout) == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def serving(router: Router) -> AsyncIterator[tuple[ApiServer, Callable[[], Awaitable[Wire]]]]:
    server = ApiServer(router, server_version=SERVER_VERSION)
    tasks: list[asyncio.Task[None]] = []
    clients: list[Wire] = []

    async def connect() -> Wire:
        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=theirs)
        tasks.append(asyncio.create_task(server.serve_connection(reader, writer)))
        wire = Wire(*await asyncio.open_connection(sock=ours))
        clients.append(wire)
        return wire

    try:
        yield server, connect
    finally:
        for wire in clients:
            await wire.close()
        await server.close()
        # each connection ended by itself or was cancelled by close(); none failed
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            assert result is None or isinstance(result, asyncio.CancelledError), result


def run(coro: Awaitable[None], timeout: float = 15) -> None:
    """Run one test's coroutine with a time limit."""

    async def limited() -> None:
        async with asyncio.timeout(timeout):
            await coro

    asyncio.run(limited())
