"""What routes see and return: a request, and one of three kinds of reply.

- :class:`Response`: a status and a whole body, sent with ``Content-Length``.
- :class:`StreamingResponse`: headers at once, then each chunk as it comes (chunked encoding); for ``wait``,
  ``logs -f``, ``events`` and JSON progress. The headers go out before the first chunk is produced, so a
  client waiting on them (the CLI's ``wait``) is not held up.
- :class:`Hijack`: the connection leaves HTTP. The server answers ``101 UPGRADED`` (or ``200 OK`` when the
  client did not ask to upgrade) and hands the raw byte stream to the route as a :class:`RawStream`; used by
  attach and exec start.

A route is ``async def route(request: Request) -> Reply`` and raises ketch errors for failures; the server
turns them into statuses (see :mod:`ketch.api.errors`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs

from ketch.common.errors import InvalidArgument
from ketch.common.fastjson import dumps
from ketch.spec.engine_api import API_VERSION, Filters, compare_versions, parse_bool

__all__ = [
    "JSON",
    "RAW_STREAM",
    "BodySource",
    "Handler",
    "Hijack",
    "Query",
    "RawStream",
    "Reply",
    "Request",
    "Response",
    "StreamingResponse",
]

JSON = "application/json"
RAW_STREAM = "application/vnd.docker.raw-stream"
BODY_LIMIT = 64 << 20  # Request.body() reads at most this; larger uploads go through Request.chunks()


class BodySource(Protocol):
    """Where a request's body comes from: the connection, or bytes in memory in tests."""

    async def receive(self) -> bytes | None:
        """The next piece of the body, or None once it has ended."""
        ...


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data or None

    async def receive(self) -> bytes | None:
        data, self._data = self._data, None
        return data


class Query:
    """The query string: every value of every key, with Docker's readings of booleans, integers and filters."""

    __slots__ = ("_values",)

    def __init__(self, text: str = "") -> None:
        self._values: dict[str, list[str]] = parse_qs(text, keep_blank_values=True)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value, as Go's ``FormValue`` gives it."""
        values = self._values.get(key)
        return values[0] if values else default

    def get_all(self, key: str) -> list[str]:
        return list(self._values.get(key, ()))

    def boolean(self, key: str, default: bool = False) -> bool:
        """``default`` when absent; otherwise true unless empty, 0, no, false or none (moby ``BoolValue``)."""
        value = self.get(key)
        return default if value is None else parse_bool(value)

    def integer(self, key: str, default: int) -> int:
        value = self.get(key)
        if value is None or value == "":
            return default
        try:
            return int(value.strip(), 10)
        except ValueError:
            raise InvalidArgument(
                f"invalid value for query parameter {key}: {value!r} is not an integer"
            ) from None

    def filters(self) -> Filters:
        """The ``filters`` parameter in either of its JSON forms; InvalidArgument if it is not one of them."""
        return Filters.from_json(self.get("filters") or "")


@dataclass(slots=True, kw_only=True)
class Request:
    """One HTTP request. ``path`` is percent-decoded and without its version prefix; ``api_version`` is the
    prefix's version, or ``API_VERSION`` for an unprefixed path. Header names are lower case."""

    method: str
    target: str
    path: str
    api_version: str = API_VERSION
    query: Query = field(default_factory=Query)
    headers: Sequence[tuple[str, str]] = ()
    params: dict[str, str] = field(default_factory=dict)
    source: BodySource = field(default_factory=lambda: _Bytes(b""))

    @classmethod
    def make(
        cls,
        method: str,
        path: str,
        *,
        query: str = "",
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
    ) -> Request:
        """A request with an in-memory body, for calling routes directly (tests, fakes)."""
        target = path + ("?" + query if query else "")
        return cls(
            method=method, target=target, path=path, query=Query(query), headers=headers, source=_Bytes(body)
        )

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    def api_at_least(self, version: str) -> bool:
        return compare_versions(self.api_version, version) >= 0

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, piece by piece as it arrives (build contexts, ``cp`` uploads, ``load``)."""
        while (data := await self.source.receive()) is not None:
            yield data

    async def body(self, limit: int = BODY_LIMIT) -> bytes:
        out = bytearray()
        async for data in self.chunks():
            out += data
            if len(out) > limit:
                raise InvalidArgument(f"request body of {self.method} {self.path} exceeds {limit} bytes")
        return bytes(out)

    async def json(self) -> Any:
        """The body as JSON, or None when there is none (moby ``ReadJSON`` accepts an empty body)."""
        data = await self.body()
        content_type = self.header("content-type") or ""
        if not data:
            return None
        media = content_type.partition(";")[0].strip().lower()
        if media != JSON:
            raise InvalidArgument(f"unsupported Content-Type header ({content_type}): must be '{JSON}'")
        try:
            return json.loads(data)
        except ValueError as exc:
            raise InvalidArgument(f"invalid JSON: {exc}") from None


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        """JSON the way Go's encoder writes it: compact, one trailing newline."""
        return cls(status, (dumps(value) + "\n").encode(), JSON)

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode(), "text/plain; charset=utf-8")

    @classmethod
    def empty(cls, status: int = 204) -> Response:
        return cls(status)


@dataclass(slots=True)
class StreamingResponse:
    chunks: AsyncIterator[bytes]
    status: int = 200
    content_type: str | None = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)


class RawStream:
    """A hijacked connection: bytes in both directions, no HTTP.

    :meth:`read` returns ``b""`` once the client has shut its write side (its stdin ended); the server may
    go on writing until the route returns, and then closes the connection.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, early: bytes = b""
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._early = early  # bytes the client sent right behind its request, before the upgrade was answered

    async def read(self, limit: int = 65536) -> bytes:
        if self._early:
            data, self._early = self._early[:limit], self._early[limit:]
            return data
        return await self._reader.read(limit)

    async def write(self, data: bytes) -> None:
        """Send ``data``; raises ConnectionError once the client has gone."""
        if self._writer.is_closing():
            raise ConnectionResetError("the client closed the connection")
        self._writer.write(data)
        await self._writer.drain()

    async def close_write(self) -> None:
        """Shut our write side (the client then reads end of stream) while still reading."""
        if self._writer.can_write_eof() and not self._writer.is_closing():
            self._writer.write_eof()


@dataclass(slots=True)
class Hijack:
    run: Callable[[RawStream], Awaitable[None]]
    content_type: str = RAW_STREAM


Reply = Response | StreamingResponse | Hijack
Handler = Callable[[Request], Awaitable[Reply]]
