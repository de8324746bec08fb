"""Byte plumbing shared by attach and exec: a hijacked client connection joined to a monitor's stream.

The monitor sends the process's output (stdcopy frames, or raw bytes for a tty) and takes its stdin; the
client's half-close becomes the monitor's half-close (end of stdin). Docker's detach keys are watched in
what the client types: once the whole sequence is seen the client is let go and the process keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from ketch.api.http import RawStream
from ketch.common import fastjson
from ketch.common.errors import InvalidArgument, SystemFailure

__all__ = ["DEFAULT_DETACH_KEYS", "bridge", "open_monitor", "parse_detach_keys"]

DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q


def parse_detach_keys(text: str) -> bytes:
    """Docker's ``--detach-keys`` syntax: comma-separated ``ctrl-<x>`` or single characters."""
    if not text:
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for part in text.split(","):
        if part.startswith("ctrl-") and len(part) == 6:
            ch = part[5]
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            elif ch in "@[\\]^_":
                out.append(ord(ch) - 64)
            else:
                raise InvalidArgument(f"Unknown character: '{part}'")
        elif len(part) == 1:
            out.append(ord(part))
        else:
            raise InvalidArgument(f"Unknown character: '{part}'")
    return bytes(out)


async def open_monitor(state_dir: str, request: dict[str, object]) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter, dict[str, object]]:  # fmt: skip
    """Connect to a monitor's shim.sock, send one request, read its answer; the stream stays open."""
    path = os.path.join(state_dir, "shim.sock")
    try:
        reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
    except OSError as exc:
        raise SystemFailure(f"cannot reach the container's monitor: {exc}") from None
    writer.write(fastjson.dumps(request).encode() + b"\n")
    await writer.drain()
    line = await reader.readline()
    if not line:
        writer.close()
        raise SystemFailure("the container's monitor closed the connection without answering")
    answer = fastjson.loads(line)
    if not answer.get("ok"):
        writer.close()
        raise SystemFailure(str(answer.get("error", answer)))
    return reader, writer, answer


async def adopt_socket(sock: socket.socket) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock.setblocking(False)
    return await asyncio.open_unix_connection(sock=sock, limit=1 << 20)


async def bridge(
    client: RawStream,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    stdin: bool,
    detach_keys: bytes = DEFAULT_DETACH_KEYS,
) -> bool:
    """Copy until the monitor ends the stream, the client goes, or the client detaches (returns True)."""
    detached = asyncio.Event()

    async def upstream() -> None:
        matched = 0
        while True:
            data = await client.read(65536)
            if not data:
                if stdin and not writer.is_closing() and writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            if not stdin:
                continue
            if detach_keys:
                out = bytearray()
                for byte in data:
                    if byte == detach_keys[matched]:
                        matched += 1
                        if matched == len(detach_keys):
                            detached.set()
                            return
                        continue
                    if matched:  # a partial sequence that did not complete goes through as typed
                        out += detach_keys[:matched]
                        matched = 0
                    if byte == detach_keys[0]:
                        matched = 1
                        continue
                    out.append(byte)
                data = bytes(out)
            if data:
                writer.write(data)
                await writer.drain()

    async def downstream() -> None:
        while data := await reader.read(65536):
            await client.write(data)

    up = asyncio.ensure_future(upstream())
    down = asyncio.ensure_future(downstream())
    try:
        while not down.done():
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if detached.is_set():
                return True
            if up in done:
                exc = up.exception()
                if exc is not None and not isinstance(exc, (ConnectionError, OSError)):
                    raise exc
                if exc is not None:
                    return False  # the client is gone
                await down
                break
        return False
    finally:
        for task in (up, down):
            task.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
