"""container_fs routes without a daemon: the reference ``repo`` and ``tag`` make (moby's RepoTagReference), and the
thread-to-stream bridge export uses (an early error is an error answer; a reader that stops stops the writer)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import BinaryIO

import pytest

from ketch.api.http import Response, StreamingResponse
from ketch.api.routes.container_fs import _stream_from_thread, commit_reference
from ketch.common.errors import InvalidArgument, NotFound


def test_commit_reference() -> None:
    assert commit_reference("", "x") is None
    assert commit_reference("myimg", "") == "docker.io/library/myimg:latest"
    assert commit_reference("myimg", "1") == "docker.io/library/myimg:1"
    assert commit_reference("myimg:2", "") == "docker.io/library/myimg:2"
    assert commit_reference("myimg:2", "3") == "docker.io/library/myimg:3"  # the tag wins, as WithTag does
    assert commit_reference("localhost:5000/a/b", "t") == "localhost:5000/a/b:t"
    with pytest.raises(InvalidArgument, match="cannot import digest reference"):
        commit_reference("myimg@sha256:" + "a" * 64, "")
    with pytest.raises(InvalidArgument, match="must be lowercase"):
        commit_reference("MyImg", "")
    with pytest.raises(InvalidArgument, match="invalid tag format"):
        commit_reference("myimg", "bad tag")


async def _collect(reply: StreamingResponse, limit: int | None = None) -> bytes:
    out = bytearray()
    async for chunk in reply.chunks:
        out += chunk
        if limit is not None and len(out) >= limit:
            break
    await reply.chunks.aclose()  # type: ignore[attr-defined]
    return bytes(out)


def test_a_stream_carries_everything_written() -> None:
    data = bytes(range(256)) * 8192  # 2 MiB, several chunks

    def job(out: BinaryIO) -> None:
        for i in range(0, len(data), 1000):
            out.write(data[i : i + 1000])

    async def run() -> bytes:
        reply = await _stream_from_thread(job, "test")
        assert isinstance(reply, StreamingResponse) and reply.content_type == "application/x-tar"
        return await _collect(reply)

    assert asyncio.run(run()) == data


def test_an_error_before_any_byte_is_an_error_answer() -> None:
    def job(out: BinaryIO) -> None:
        raise NotFound("No such container: nope")

    reply = asyncio.run(_stream_from_thread(job, "test"))
    assert isinstance(reply, Response) and reply.status == 404
    assert json.loads(reply.body) == {"message": "No such container: nope"}


def test_a_reader_that_stops_stops_the_writer() -> None:
    stopped = threading.Event()

    def job(out: BinaryIO) -> None:
        try:
            while True:
                out.write(b"x" * 65536)
        finally:
            stopped.set()

    async def run() -> None:
        reply = await _stream_from_thread(job, "test")
        assert isinstance(reply, StreamingResponse)
        await _collect(reply, limit=1 << 20)
        assert await asyncio.to_thread(stopped.wait, 10)

    asyncio.run(run())
