"""Image routes: list, pull, inspect, history, tag, rmi, push, save, load, prune, and ``/auth``.

Pulls, pushes, saves and loads block on the network or the disk, so they run in worker threads while the
event loop keeps serving. Pull and push stream Docker's JSON progress (one object per line, ``\\r\\n``). As in
moby, the status code is decided by the first thing the job produces: an error before any progress line is
an ordinary error answer (404 ``No such image``, 400 for a bad reference, ...); once lines have gone out the
status is 200 and a failure is the stream's last line, ``{"errorDetail":{"message":...},"error":...}``.

Registry credentials come per request in ``X-Registry-Auth`` (base64url JSON; ``e30=``, i.e. ``{}``, when the
client is not logged in) and are handed to the backend, which picks the registry client.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import IO, Any, BinaryIO, Protocol

from ketch.api.errors import error_response
from ketch.api.http import Reply, Request, Response, StreamingResponse
from ketch.api.router import Router
from ketch.common.errors import InvalidArgument, KetchError
from ketch.image.remote.credentials import Credentials
from ketch.image.remote.progress import JSONProgress, Progress, json_message
from ketch.spec import reference
from ketch.spec.oci_image import canonical_json

__all__ = ["ImageBackend", "LoadResult", "decode_registry_auth", "pull_reference", "register"]

log = logging.getLogger("ketch.api")

_TAR = "application/x-tar"
_COPY_CHUNK = 1 << 20
_SPOOL_LIMIT = 8 << 20  # save and load buffers in memory up to this, then on disk


class LoadResult(Protocol):
    @property
    def messages(self) -> Sequence[str]: ...


class ImageBackend(Protocol):
    """What the image routes need; the daemon wraps ImageService in it, adding per-request registry auth."""

    def images(
        self, filters: Mapping[str, list[str]], all: bool, shared_size: bool
    ) -> list[dict[str, Any]]: ...
    def inspect(self, name: str) -> dict[str, Any]: ...
    def history(self, name: str) -> list[dict[str, Any]]: ...
    def tag(self, source: str, target: str) -> None: ...
    def remove(self, name: str, force: bool, prune: bool) -> list[dict[str, str]]: ...
    def prune(self, filters: Mapping[str, list[str]]) -> dict[str, Any]: ...
    def save(self, names: Sequence[str], out: BinaryIO) -> None: ...
    def load(self, stream: BinaryIO) -> LoadResult: ...
    def pull(self, ref: str, platform: str | None, progress: Progress, auth: Credentials | None) -> None: ...
    def push(self, ref: str, progress: Progress, auth: Credentials | None) -> str: ...
    def login(self, server: str, username: str, password: str) -> None: ...
    def import_tarball(
        self, stream: BinaryIO, ref: str | None, changes: Sequence[str], message: str, platform: str | None
    ) -> str: ...


def decode_registry_auth(header: str | None) -> Credentials | None:
    """``X-Registry-Auth``: base64url of Docker's AuthConfig JSON. None when absent, empty or ``{}``.

    Like dockerd, a header that does not decode is treated as no credentials (anonymous access), not as an error.
    """
    if not header:
        return None
    try:
        raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        obj = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(obj, dict):
        return None
    username, password = str(obj.get("username") or ""), str(obj.get("password") or "")
    encoded = obj.get("auth")
    if isinstance(encoded, str) and encoded and not username:
        try:
            username, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            pass
    token = str(obj.get("identitytoken") or "")
    if not (username or password or token):
        return None
    return Credentials(username, password, token)


def pull_reference(image: str, tag: str) -> str:
    """``fromImage`` and ``tag`` as one reference (a ``tag`` that is a digest pins it); 400 if invalid."""
    if not image:
        raise InvalidArgument("invalid reference format: fromImage is empty")
    text = image
    if tag:
        text += ("@" if tag.startswith("sha256:") else ":") + tag
    reference.parse(text)  # InvalidArgument (400) before any streaming
    return text


def _filters_dict(request: Request) -> dict[str, list[str]]:
    filters = request.query.filters()
    return {key: sorted(filters.get(key)) for key in filters}


def _message(exc: BaseException) -> str:
    if not isinstance(exc, KetchError):
        log.error("image job failed", exc_info=exc)
    return str(exc) or type(exc).__name__


async def _stream_job(job: Callable[[Callable[[bytes], object]], None], context: str) -> Reply:
    """Run ``job(write)`` in a thread; stream what it writes, or answer with its error if it wrote nothing."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()

    def write(line: bytes) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, line)

    def work() -> None:
        try:
            job(write)
        except BaseException as exc:  # handed to the event loop, which reports it
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        else:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    done = loop.run_in_executor(None, work)
    first = await queue.get()
    if isinstance(first, BaseException):
        await done
        return error_response(first, context=context)

    async def chunks() -> AsyncIterator[bytes]:
        item: bytes | BaseException | None = first
        while item is not None:
            if isinstance(item, BaseException):
                yield json_message(error=_message(item))
                return
            yield item
            item = await queue.get()

    return StreamingResponse(chunks())


async def _spooled_body(request: Request) -> IO[bytes]:
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_LIMIT)  # noqa: SIM115  # closed by the caller
    try:
        async for data in request.chunks():
            spool.write(data)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


def register(router: Router, backend: ImageBackend) -> None:
    async def list_images(request: Request) -> Response:
        found = await asyncio.to_thread(
            backend.images,
            _filters_dict(request),
            request.query.boolean("all"),
            request.query.boolean("shared-size"),
        )
        return Response.json(found)

    async def create(request: Request) -> Reply:
        if request.query.get("fromSrc") is not None:
            return await _import(request)
        ref = pull_reference(request.query.get("fromImage") or "", request.query.get("tag") or "")
        platform = request.query.get("platform") or None
        auth = decode_registry_auth(request.header("x-registry-auth"))

        def job(write: Callable[[bytes], object]) -> None:
            backend.pull(ref, platform, JSONProgress(write), auth)

        return await _stream_job(job, f"pull {ref}")

    async def push(request: Request) -> Reply:
        name, tag = request.params["name"], request.query.get("tag") or ""
        ref = f"{name}:{tag}" if tag else name
        reference.parse(ref)
        auth = decode_registry_auth(request.header("x-registry-auth"))

        def job(write: Callable[[bytes], object]) -> None:
            backend.push(ref, JSONProgress(write), auth)

        return await _stream_job(job, f"push {ref}")

    async def inspect(request: Request) -> Response:
        return Response.json(await asyncio.to_thread(backend.inspect, request.params["name"]))

    async def history(request: Request) -> Response:
        return Response.json(await asyncio.to_thread(backend.history, request.params["name"]))

    async def tag(request: Request) -> Response:
        repo, tag_name = request.query.get("repo") or "", request.query.get("tag") or ""
        if not repo:
            raise InvalidArgument("repository name must have at least one component (repo is empty)")
        await asyncio.to_thread(
            backend.tag, request.params["name"], f"{repo}:{tag_name}" if tag_name else repo
        )
        return Response.empty(201)

    async def remove(request: Request) -> Response:
        query = request.query
        removed = await asyncio.to_thread(
            backend.remove, request.params["name"], query.boolean("force"), not query.boolean("noprune")
        )
        return Response.json(removed)

    async def prune(request: Request) -> Response:
        return Response.json(await asyncio.to_thread(backend.prune, _filters_dict(request)))

    async def save_names(names: list[str]) -> Reply:
        if not names:
            raise InvalidArgument("no image names given to save")
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_LIMIT)  # noqa: SIM115  # closed by chunks()
        try:
            # The whole archive is written before answering, so a missing image is a 404, not a broken tar.
            await asyncio.to_thread(backend.save, names, spool)  # type: ignore[arg-type]
            spool.seek(0)
        except BaseException:
            spool.close()
            raise

        async def chunks() -> AsyncIterator[bytes]:
            with spool:
                while data := await asyncio.to_thread(spool.read, _COPY_CHUNK):
                    yield data

        return StreamingResponse(chunks(), content_type=_TAR)

    async def save_many(request: Request) -> Reply:
        return await save_names(request.query.get_all("names"))

    async def save_one(request: Request) -> Reply:
        return await save_names([request.params["name"]])

    async def _import(request: Request) -> Reply:
        """``docker import``: the request body is the tarball (``fromSrc=-``); a URL source is refused."""
        q = request.query
        if q.get("fromSrc") != "-":
            raise InvalidArgument(
                "importing from a URL is not supported: send the tarball as the body (fromSrc=-)"
            )
        repo, tag_name = q.get("repo") or "", q.get("tag") or ""
        ref = None
        if repo:
            ref = f"{repo}:{tag_name}" if tag_name else repo
            reference.parse(ref)
        changes = q.get_all("changes")
        with await _spooled_body(request) as body:
            image_id = await asyncio.to_thread(
                backend.import_tarball,
                body,  # type: ignore[arg-type]
                ref, changes, q.get("message") or "", q.get("platform") or None,
            )  # fmt: skip

        async def chunks() -> AsyncIterator[bytes]:
            yield canonical_json({"status": image_id}) + b"\r\n"

        return StreamingResponse(chunks())

    async def load(request: Request) -> Reply:
        with await _spooled_body(request) as body:
            loaded = await asyncio.to_thread(backend.load, body)  # type: ignore[arg-type]

        async def chunks() -> AsyncIterator[bytes]:
            for message in loaded.messages:
                yield canonical_json({"stream": message + "\n"}) + b"\r\n"

        return StreamingResponse(chunks())

    async def auth(request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict):
            raise InvalidArgument("auth: expected a JSON object with username, password and serveraddress")
        server = str(body.get("serveraddress") or "https://index.docker.io/v1/")
        username, password = str(body.get("username") or ""), str(body.get("password") or "")
        await asyncio.to_thread(backend.login, server, username, password)
        return Response.json({"IdentityToken": "", "Status": "Login Succeeded"})

    # Fixed paths first: "/images/{name:.*}" patterns would also match them.
    router.add("GET", "/images/json", list_images)
    router.add("POST", "/images/create", create)
    router.add("GET", "/images/get", save_many)
    router.add("POST", "/images/load", load)
    router.add("POST", "/images/prune", prune)
    router.add("POST", "/auth", auth)
    router.add("GET", "/images/{name:.*}/json", inspect)
    router.add("GET", "/images/{name:.*}/history", history)
    router.add("GET", "/images/{name:.*}/get", save_one)
    router.add("POST", "/images/{name:.*}/tag", tag)
    router.add("POST", "/images/{name:.*}/push", push)
    router.add("DELETE", "/images/{name:.*}", remove)
