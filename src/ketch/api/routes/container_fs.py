"""Routes that turn a container's filesystem into something else: ``POST /commit`` and
``GET /containers/{id}/export``.

Commit follows moby's postCommit: ``container``, ``repo``, ``tag``, ``comment``, ``author``, ``changes``
(repeated) and ``pause`` (true unless given) from the query; an optional Config as the body; 201 with
``{"Id": "sha256:..."}``. ``repo`` and ``tag`` make one reference as moby's RepoTagReference does: a repo
with a digest is refused, a ``tag`` replaces a tag the repo carries, and ``latest`` is the default.

Export streams the tar while a worker thread writes it. The thread waits for room in a short queue, so a
slow client slows the walk down instead of filling memory, and a client that goes away stops it. An error
before the first bytes is an ordinary error answer (404 for a missing container); after them the
connection is cut, which is all HTTP leaves once a 200 has gone out.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from ketch.api.errors import error_response
from ketch.api.http import Reply, Request, Response, StreamingResponse
from ketch.api.router import Router
from ketch.common.errors import InvalidArgument
from ketch.engine.commit import commit_container, export_container
from ketch.spec import reference

if TYPE_CHECKING:
    from ketch.engine.containers import ContainerService

__all__ = ["commit_reference", "register"]

_TAR = "application/x-tar"
_CHUNK = 256 << 10  # bytes gathered before a chunk is handed to the event loop
_QUEUED_CHUNKS = 8


def commit_reference(repo: str, tag: str) -> str | None:
    """moby's RepoTagReference: the full reference to tag, or None without ``repo``; 400 when invalid."""
    if not repo:
        return None
    ref = reference.parse(repo, default_tag=False)
    if ref.digest:
        raise InvalidArgument("cannot import digest reference")
    if tag:
        ref = ref.with_tag(tag)
    return str(reference.with_default_tag(ref))


class _ClientGone(Exception):
    """The reader of an export went away: the writing thread stops."""


class _QueueWriter:
    """A file-like sink for the worker thread: gathers writes into chunks and queues them for the loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | BaseException | None]
    ) -> None:
        self._loop = loop
        self._queue = queue
        self._buffer = bytearray()
        self.closed = threading.Event()  # set by the reading side when it stops reading

    def _put(self, item: bytes | BaseException | None) -> None:
        if self.closed.is_set():
            raise _ClientGone("the client stopped reading the export")
        asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop).result()

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= _CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            chunk, self._buffer = bytes(self._buffer), bytearray()
            self._put(chunk)

    def finish(self, error: BaseException | None) -> None:
        with contextlib.suppress(_ClientGone):
            if error is None:
                self.flush()
            self._put(error)


async def _stream_from_thread(job: Callable[[BinaryIO], None], context: str) -> Reply:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(_QUEUED_CHUNKS)
    sink = _QueueWriter(loop, queue)

    def work() -> None:
        try:
            job(cast("BinaryIO", sink))
        except _ClientGone:
            return
        except BaseException as exc:  # handed to the event loop, which answers or cuts the stream
            sink.finish(exc)
        else:
            sink.finish(None)

    worker = loop.run_in_executor(None, work)
    first = await queue.get()
    if isinstance(first, BaseException):
        await worker
        return error_response(first, context=context)

    async def chunks() -> AsyncIterator[bytes]:
        item: bytes | BaseException | None = first
        try:
            while item is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
                item = await queue.get()
        finally:
            sink.closed.set()
            while not queue.empty():  # frees a writer blocked on a full queue; it then sees ``closed``
                queue.get_nowait()

    return StreamingResponse(chunks(), content_type=_TAR)


def register(router: Router, service: ContainerService) -> None:
    async def commit(request: Request) -> Reply:
        q = request.query
        ref = commit_reference(q.get("repo") or "", q.get("tag") or "")
        body: Any = await request.json()
        if body is not None and not isinstance(body, dict):
            raise InvalidArgument("commit: the body must be a container Config (a JSON object)")
        image_id = await asyncio.to_thread(
            commit_container, service, q.get("container") or "", repo_tag=ref, comment=q.get("comment") or "",
            author=q.get("author") or "", changes=q.get_all("changes"), pause=q.boolean("pause", True),
            config_override=body,
        )  # fmt: skip
        return Response.json({"Id": image_id}, 201)

    async def export(request: Request) -> Reply:
        name = request.params["id"]
        return await _stream_from_thread(lambda out: export_container(service, name, out), f"export {name}")

    router.add("POST", "/commit", commit)
    router.add("GET", "/containers/{id}/export", export)
