"""HTTP/1.1 on one client connection: httptools (llhttp, Node's parser) parses, this module frames and answers.

One request at a time (pipelined requests wait their turn), keep-alive until either side closes. Per request:

1. The parser delivers the request line and headers; the router picks a route (unknown path or method: 404
   "page not found"), the version prefix is checked against the window (400 outside it), the route runs with
   the body readable as it arrives (``Content-Length`` or chunked; ``Expect: 100-continue`` answered when the
   route reads).
2. The reply goes out: a :class:`Response` with ``Content-Length``; a :class:`StreamingResponse` chunked, its
   headers first; a :class:`Hijack` as ``101 UPGRADED`` (or ``200 OK`` for a client that did not ask to
   upgrade), after which the connection is the route's raw stream and leaves HTTP for good.
3. Whatever body the route left unread is discarded (up to ``DRAIN_LIMIT``; beyond that the connection
   closes instead), and the next request may come.

Every response carries dockerd's headers: ``Api-Version``, ``Docker-Experimental``, ``Ostype``, ``Server``
and ``Date``. A request that is not valid HTTP gets a 400 (431 for oversized headers) and the connection
closes. A client that goes away at any point ends its connection and nothing else: while a response
streams, the connection is also watched for the client's end of stream, so a stream that is idle (``events``,
``logs -f``) stops as soon as its client has gone, not at its next write.

Why httptools and not h11: every docker command starts with a ``/_ping`` and most are a few small requests,
so the per-request cost is the API's latency. h11's pure-Python parsing and header validation cost about as
much as everything else in a request together; llhttp (C) parses a request in microseconds. Responses are
a status line and a few known headers, written directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from http import HTTPStatus
from urllib.parse import unquote

import httptools

from ketch.api.errors import bad_request, error_response, page_not_found
from ketch.api.http import Hijack, Query, RawStream, Reply, Request, Response, StreamingResponse
from ketch.api.router import Router
from ketch.spec.engine_api import API_VERSION, check_version, split_version

__all__ = ["DRAIN_LIMIT", "MAX_HEADER_BYTES", "serve_connection"]

log = logging.getLogger("ketch.api")

MAX_HEADER_BYTES = 1 << 20  # as Go's http.DefaultMaxHeaderBytes: X-Registry-Config can be large
DRAIN_LIMIT = 256 << 10  # as Go's server: unread body beyond this closes the connection instead
READ_SIZE = 64 << 10
PIPELINE_LIMIT = 1 << 20  # bytes of the next requests buffered while a response streams
LINGER_SECONDS = 2
_NO_BODY = frozenset({204, 304})


class _PeerGone(Exception):
    """The client closed or reset the connection."""


class _Abort(Exception):
    """The response cannot be completed (it failed after its headers were sent): drop the connection."""


class _Malformed(Exception):
    """The request is not valid HTTP; ``status`` is the answer (400, or 431 for oversized headers)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


_REASONS: dict[int, bytes] = {}


def _reason(status: int) -> bytes:
    reason = _REASONS.get(status)
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
        _REASONS[status] = reason
    return reason


async def serve_connection(
    router: Router, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, server_version: str
) -> None:
    """Serve HTTP on one accepted connection until it closes; never raises for what the client does."""
    await _Connection(router, reader, writer, server_version).serve()


class _Message:
    """One parsed request: its head once the headers are complete, its body pieces as they arrive."""

    __slots__ = ("chunks", "complete", "continued", "headers", "keep_alive", "method", "target", "upgrade",
                 "version")  # fmt: skip

    def __init__(self) -> None:
        self.target = b""
        self.headers: list[tuple[str, str]] = []
        self.method = ""
        self.version = "1.1"
        self.keep_alive = True
        self.upgrade = False
        self.chunks: deque[bytes] = deque()
        self.complete = False
        self.continued = False

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def has_body(self) -> bool:
        length = self.header("content-length")
        return self.header("transfer-encoding") is not None or (length is not None and length.strip() != "0")


class _Connection:
    def __init__(
        self, router: Router, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server_version: str
    ) -> None:
        self.router = router
        self.reader = reader
        self.writer = writer
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[_Message] = deque()  # requests whose headers are complete, not yet served
        self.parsing: _Message | None = None
        self.msg: _Message | None = None  # the request being served
        self.header_bytes = 0
        self.parsing_head = False  # between a request's first byte and the end of its headers
        self.unparsed_head = 0  # bytes fed while a head is incomplete: a bound on what the parser holds
        self.error: _Malformed | None = None
        self.eof = False
        self.upgraded = False
        self.upgrade_rest = b""  # what followed an upgrade request: the start of the raw stream
        self.upgrade_body_left = 0  # of an upgrade request's body, the bytes not yet read
        self.base_headers = [
            ("Api-Version", API_VERSION),
            ("Docker-Experimental", "false"),
            ("Ostype", "linux"),
            ("Server", f"Docker/{server_version} (linux)"),
        ]
        self.body_done = asyncio.Event()

    # -- parser callbacks (called from feed_data) -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self.parsing = _Message()
        self.header_bytes = 0
        self.parsing_head = True

    def on_url(self, url: bytes) -> None:
        assert self.parsing is not None
        self.parsing.target += url
        self.header_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.parsing is not None
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes <= MAX_HEADER_BYTES:
            self.parsing.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        msg = self.parsing
        assert msg is not None
        msg.method = self.parser.get_method().decode("ascii")
        msg.version = self.parser.get_http_version()
        msg.keep_alive = self.parser.should_keep_alive()
        msg.upgrade = self.parser.should_upgrade()
        if self.header_bytes > MAX_HEADER_BYTES:
            self.error = _Malformed("request headers too large", 431)
            return
        self.pending.append(msg)
        self.parsing_head = False

    def on_body(self, body: bytes) -> None:
        assert self.parsing is not None
        self.parsing.chunks.append(bytes(body))

    def on_message_complete(self) -> None:
        assert self.parsing is not None
        self.parsing.complete = True

    async def _fill(self) -> None:
        """Read once and parse what came; sets ``eof``, ``error`` or ``upgraded`` when they happen."""
        try:
            data = await self.reader.read(READ_SIZE)
        except OSError as exc:
            raise _PeerGone(str(exc)) from exc
        if not data:
            self.eof = True
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.upgraded = True
            self.upgrade_rest = data[int(exc.args[0]) if exc.args else len(data) :]
            # llhttp hands over everything after an upgrade request's head, its body included: the
            # Content-Length bytes that follow are still the request's (docker's exec start sends JSON).
            msg = self.parsing
            length = (msg.header("content-length") or "0").strip() if msg is not None else "0"
            if msg is not None and length.isdigit() and int(length) > 0:
                msg.complete = False
                self.upgrade_body_left = int(length)
        except httptools.HttpParserError as exc:
            self.error = _Malformed(str(exc) or type(exc).__name__)
        self.unparsed_head = self.unparsed_head + len(data) if self.parsing_head else 0
        if (
            self.header_bytes > MAX_HEADER_BYTES or self.unparsed_head > MAX_HEADER_BYTES
        ) and self.error is None:
            self.error = _Malformed("request headers too large", 431)

    # -- serving --------------------------------------------------------------------------------------------

    async def serve(self) -> None:
        abort = False
        try:
            while await self._one_request():
                pass
        except _Malformed as exc:
            await self._reject(exc)
        except (_PeerGone, ConnectionError) as exc:
            log.debug("client went away: %s", exc)
        except _Abort:
            abort = True
        finally:
            await self._close(abort)

    async def _close(self, abort: bool) -> None:
        if abort:
            self.writer.transport.abort()
        else:
            self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def _next_message(self) -> _Message | None:
        while not self.pending or self.error is not None:
            if self.error is not None:
                raise self.error
            if self.eof or self.upgraded:
                return None
            await self._fill()
        msg = self.pending.popleft()
        if msg.version == "1.1" and msg.header("host") is None:
            raise _Malformed("missing required Host header")
        return msg

    async def receive(self) -> bytes | None:
        """The request body's next piece (the BodySource of every Request this connection makes)."""
        msg = self.msg
        while msg is not None:
            if msg.chunks:
                return msg.chunks.popleft()
            if msg.complete:
                break
            if self.upgraded and self.upgrade_body_left:
                if not self.upgrade_rest:
                    self.upgrade_rest = await self.reader.read(READ_SIZE)
                    if not self.upgrade_rest:
                        raise _PeerGone("the client closed the connection before the end of the request body")
                piece = self.upgrade_rest[: self.upgrade_body_left]
                self.upgrade_rest = self.upgrade_rest[len(piece) :]
                self.upgrade_body_left -= len(piece)
                msg.complete = self.upgrade_body_left == 0
                return piece
            if self.error is not None:
                raise self.error
            if self.eof or self.upgraded:
                raise _PeerGone("the client closed the connection before the end of the request body")
            if not msg.continued and (msg.header("expect") or "").lower() == "100-continue":
                msg.continued = True
                await self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await self._fill()
        self.body_done.set()
        return None

    async def _discard_body(self) -> bool:
        """Read and drop what the route left of the body; False if there was more than DRAIN_LIMIT."""
        left = DRAIN_LIMIT
        while (data := await self.receive()) is not None:
            left -= len(data)
            if left < 0:
                return False
        return True

    # -- one exchange --------------------------------------------------------------------------------------

    async def _one_request(self) -> bool:
        """Serve one request; True if the connection may carry another."""
        msg = await self._next_message()
        if msg is None:
            return False
        self.msg = msg
        self.body_done.clear()
        if msg.complete and not msg.chunks:
            self.body_done.set()
        started = time.perf_counter()
        reply = await self._call(msg)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %s in %.1f ms", msg.method, msg.target.decode("latin-1")[:120],
                      getattr(reply, "status", "stream"), (time.perf_counter() - started) * 1000)  # fmt: skip
        if isinstance(reply, Hijack):
            await self._hijack(reply, msg)
            return False
        if isinstance(reply, StreamingResponse):
            await self._stream(msg, reply)
        else:
            await self._respond(msg, reply)
        if not await self._discard_body():
            return False
        if self.upgraded:  # an upgrade the route answered as plain HTTP: go on parsing what follows
            rest, self.upgrade_rest, self.upgraded = self.upgrade_rest, b"", False
            self.parser = httptools.HttpRequestParser(self)
            if rest:
                self._feed(rest)
        return msg.keep_alive

    async def _call(self, msg: _Message) -> Reply:
        target = msg.target.decode("latin-1")
        raw_path, _, query = target.partition("?")
        version, path = split_version(unquote(raw_path))
        found = self.router.match(msg.method, path)
        if found is None:
            return page_not_found()
        handler, params = found
        try:
            if version is not None:
                check_version(version)
            request = Request(
                method=msg.method,
                target=target,
                path=path,
                api_version=version or API_VERSION,
                query=Query(query),
                headers=msg.headers,
                params=params,
                source=self,
            )
            return await handler(request)
        except _PeerGone:
            raise
        except _Malformed as exc:  # the body turned out malformed while the route read it
            raise exc
        except Exception as exc:
            return error_response(exc, context=f"{msg.method} {path}")

    # -- writing -------------------------------------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise _PeerGone("connection closed")
        try:
            self.writer.write(data)
            await self.writer.drain()
        except OSError as exc:
            raise _PeerGone(str(exc)) from exc

    def _headers(self, content_type: str | None, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
        # Sorted by name, then Date: the order Go's server writes them in.
        headers = [*self.base_headers, *extra]
        if content_type:
            headers.append(("Content-Type", content_type))
        headers.sort(key=lambda item: item[0].lower())
        headers.append(("Date", _http_date()))
        return headers

    @staticmethod
    def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, _reason(status))]
        for name, value in headers:
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name} holds a line break")
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(b"\r\n")
        return b"".join(lines)

    async def _respond(self, msg: _Message, response: Response) -> None:
        headers = self._headers(response.content_type, response.headers)
        body = response.body
        if response.status in _NO_BODY:
            body = b""
        elif msg.method == "HEAD":
            # The headers a GET would carry, without the body; a route may state its own length (/_ping: 0).
            if not any(name.lower() == "content-length" for name, _ in headers):
                headers.append(("Content-Length", str(len(body))))
            body = b""
        else:
            headers.append(("Content-Length", str(len(body))))
        if not msg.keep_alive:
            headers.append(("Connection", "close"))
        await self._write(self._head(response.status, headers) + body)

    async def _stream(self, msg: _Message, response: StreamingResponse) -> None:
        headers = self._headers(response.content_type, response.headers)
        if msg.method == "HEAD" or response.status in _NO_BODY:
            await _aclose(response.chunks)
            await self._write(self._head(response.status, headers))
            return
        chunked = msg.version == "1.1"
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        else:  # an HTTP/1.0 client: the body ends when the connection does
            headers.append(("Connection", "close"))
            msg.keep_alive = False
        await self._write(self._head(response.status, headers))
        pump = asyncio.create_task(self._pump(response.chunks, chunked))
        watch = asyncio.create_task(self._watch_peer())
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            pump.cancel()
            watch.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)
        if pump.cancelled():
            raise _PeerGone("client closed the connection during a streamed response")
        failure = pump.exception()
        if isinstance(failure, _PeerGone):
            raise failure
        if failure is not None:
            if isinstance(failure, Exception):
                log.error(
                    "streamed response of %s failed after its headers were sent", msg.method, exc_info=failure
                )
            raise _Abort from failure

    async def _pump(self, chunks: AsyncIterator[bytes], chunked: bool) -> None:
        try:
            async for chunk in chunks:
                if chunk:
                    await self._write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                await self._write(b"0\r\n\r\n")
        finally:
            await _aclose(chunks)

    async def _watch_peer(self) -> None:
        """Return when the client closes its side; keep what it sends meanwhile for the next request."""
        await self.body_done.wait()  # until then the route owns the reading
        buffered = 0
        while buffered < PIPELINE_LIMIT and not self.upgraded and self.error is None:
            try:
                data = await self.reader.read(READ_SIZE)
            except OSError:
                return
            if not data:
                self.eof = True
                return
            self._feed(data)
            buffered += len(data)
        await asyncio.Event().wait()  # enough buffered: stop reading until the stream ends

    async def _hijack(self, hijack: Hijack, msg: _Message) -> None:
        # What follows the request body is the raw stream (stdin the client may already have sent).
        if not await self._discard_body():
            return
        # As dockerd: any Upgrade header asks for 101, whatever Connection says.
        upgrade = msg.header("upgrade") is not None
        content_type = hijack.content_type.encode("latin-1")
        if upgrade:
            head = b"HTTP/1.1 101 UPGRADED\r\nContent-Type: %s\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        else:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\n\r\n"  # no framing: the stream ends at close
        stream = RawStream(self.reader, self.writer, self.upgrade_rest)
        try:
            await stream.write(head % content_type)
            await hijack.run(stream)
        except (ConnectionError, _PeerGone) as exc:
            log.debug("hijacked stream ended by the client: %s", exc)
        except Exception:
            log.exception("hijacked stream of %s failed", msg.target.decode("latin-1"))

    async def _reject(self, exc: _Malformed) -> None:
        response = bad_request(str(exc), exc.status)
        headers = [*self._headers(response.content_type, []), ("Content-Length", str(len(response.body)))]
        headers.append(("Connection", "close"))
        with contextlib.suppress(_PeerGone):
            await self._write(self._head(response.status, headers) + response.body)
            await self._linger()

    async def _linger(self) -> None:
        """Shut our side and drop what the client still sends, for a moment: closing a socket with unread
        data resets it, and the reset can destroy the answer before the client has read it."""
        if not self.writer.can_write_eof():
            return
        with contextlib.suppress(OSError, TimeoutError):
            self.writer.write_eof()
            async with asyncio.timeout(LINGER_SECONDS):
                while await self.reader.read(READ_SIZE):
                    pass


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
