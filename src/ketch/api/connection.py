"""HTTP/1.1 on one client connection: h11 parses and frames, this module does the reading and writing.

One request at a time (pipelined requests wait their turn), keep-alive until either side closes. Per request:

1. h11 parses the request; the router picks a route (unknown path or method: 404 "page not found"), the
   version prefix is checked against the window (400 outside it), the route runs with the body readable
   as it arrives (``Content-Length`` or chunked; ``Expect: 100-continue`` answered when the route reads).
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
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import cast
from urllib.parse import unquote

import h11

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


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


async def serve_connection(
    router: Router, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, server_version: str
) -> None:
    """Serve HTTP on one accepted connection until it closes; never raises for what the client does."""
    await _Connection(router, reader, writer, server_version).serve()


class _Connection:
    def __init__(
        self, router: Router, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server_version: str
    ) -> None:
        self.router = router
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.base_headers = [
            ("Api-Version", API_VERSION),
            ("Docker-Experimental", "false"),
            ("Ostype", "linux"),
            ("Server", f"Docker/{server_version} (linux)"),
        ]
        self.body_done = asyncio.Event()

    async def serve(self) -> None:
        abort = False
        try:
            while await self._one_request():
                self.h11.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            await self._reject(exc)
        except (_PeerGone, ConnectionError) as exc:
            log.debug("client went away: %s", exc)
        except _Abort:
            abort = True
        except h11.LocalProtocolError:
            log.exception("ketch broke HTTP framing on a connection")
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

    # -- reading -------------------------------------------------------------------------------------------

    async def _next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return cast("h11.Event | type[h11.PAUSED]", event)  # mypy does not narrow by identity
            if self.h11.they_are_waiting_for_100_continue:
                await self._send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
            try:
                data = await self.reader.read(READ_SIZE)
            except OSError as exc:
                raise _PeerGone(str(exc)) from exc
            self.h11.receive_data(data)

    async def receive(self) -> bytes | None:
        """The request body's next piece (the BodySource of every Request this connection makes)."""
        while not self.body_done.is_set():
            event = await self._next_event()
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
            elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
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
        event = await self._next_event()
        if isinstance(event, h11.ConnectionClosed):
            return False
        if not isinstance(event, h11.Request):  # h11 yields nothing else in a fresh cycle
            raise h11.LocalProtocolError(f"unexpected {event!r} at the start of a request")
        self.body_done.clear()
        if not _has_body(event):
            await self.receive()  # the EndOfMessage h11 has ready: the body is known to be complete
        method = event.method.decode("ascii")
        started = time.perf_counter()
        reply = await self._call(method, event)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %s in %.1f ms", method, event.target.decode("latin-1")[:120],
                      getattr(reply, "status", "stream"), (time.perf_counter() - started) * 1000)  # fmt: skip
        if isinstance(reply, Hijack):
            await self._hijack(reply, event)
            return False
        if isinstance(reply, StreamingResponse):
            await self._stream(method, reply)
        else:
            await self._respond(method, reply)
        if self.h11.their_state is h11.ERROR or not await self._discard_body():
            return False
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    async def _call(self, method: str, event: h11.Request) -> Reply:
        target = event.target.decode("latin-1")  # h11 has checked it is printable ASCII
        raw_path, _, query = target.partition("?")
        version, path = split_version(unquote(raw_path))
        found = self.router.match(method, path)
        if found is None:
            return page_not_found()
        handler, params = found
        try:
            if version is not None:
                check_version(version)
            request = Request(
                method=method,
                target=target,
                path=path,
                api_version=version or API_VERSION,
                query=Query(query),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers],
                params=params,
                source=self,
            )
            return await handler(request)
        except _PeerGone:
            raise
        except h11.RemoteProtocolError as exc:  # the body turned out malformed while the route read it
            return bad_request(str(exc), exc.error_status_hint)
        except Exception as exc:
            return error_response(exc, context=f"{method} {path}")

    # -- writing -------------------------------------------------------------------------------------------

    async def _send(self, *events: h11.Event) -> None:
        data = b"".join(self.h11.send(event) or b"" for event in events)
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

    async def _respond(self, method: str, response: Response) -> None:
        headers = self._headers(response.content_type, response.headers)
        body = response.body
        if response.status in _NO_BODY:
            body = b""
        elif method == "HEAD":
            # The headers a GET would carry, without the body; a route may state its own length (/_ping: 0).
            if not any(name.lower() == "content-length" for name, _ in headers):
                headers.append(("Content-Length", str(len(body))))
            body = b""
        else:
            headers.append(("Content-Length", str(len(body))))
        head = h11.Response(status_code=response.status, headers=headers, reason=_reason(response.status))
        if body:
            await self._send(head, h11.Data(data=body), h11.EndOfMessage())
        else:
            await self._send(head, h11.EndOfMessage())

    async def _stream(self, method: str, response: StreamingResponse) -> None:
        headers = self._headers(response.content_type, response.headers)
        head = h11.Response(status_code=response.status, headers=headers, reason=_reason(response.status))
        if method == "HEAD" or response.status in _NO_BODY:
            await _aclose(response.chunks)
            await self._send(head, h11.EndOfMessage())
            return
        await self._send(head)
        pump = asyncio.create_task(self._pump(response.chunks))
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
            if isinstance(failure, Exception) and not isinstance(failure, h11.LocalProtocolError):
                log.error(
                    "streamed response of %s failed after its headers were sent", method, exc_info=failure
                )
            raise _Abort from failure

    async def _pump(self, chunks: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in chunks:
                if chunk:
                    await self._send(h11.Data(data=chunk))
            await self._send(h11.EndOfMessage())
        finally:
            await _aclose(chunks)

    async def _watch_peer(self) -> None:
        """Return when the client closes its side; keep what it sends meanwhile for the next request."""
        await self.body_done.wait()  # until then the route owns the reading
        buffered = 0
        while buffered < PIPELINE_LIMIT:
            try:
                data = await self.reader.read(READ_SIZE)
            except OSError:
                return
            if not data:
                return
            self.h11.receive_data(data)
            buffered += len(data)
        await asyncio.Event().wait()  # enough buffered: stop reading until the stream ends

    async def _hijack(self, hijack: Hijack, event: h11.Request) -> None:
        # What follows the request body is the raw stream (stdin the client may already have sent).
        if not await self._discard_body():
            return
        # As dockerd: any Upgrade header asks for 101, whatever Connection says.
        upgrade = any(name == b"upgrade" for name, _ in event.headers)
        content_type = hijack.content_type.encode("latin-1")
        if upgrade:
            head = b"HTTP/1.1 101 UPGRADED\r\nContent-Type: %s\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        else:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\n\r\n"  # no framing: the stream ends at close
        early, _ = self.h11.trailing_data
        stream = RawStream(self.reader, self.writer, early)
        try:
            await stream.write(head % content_type)
            await hijack.run(stream)
        except (ConnectionError, _PeerGone) as exc:
            log.debug("hijacked stream ended by the client: %s", exc)
        except Exception:
            log.exception("hijacked stream of %s failed", event.target.decode("latin-1"))

    async def _reject(self, exc: h11.RemoteProtocolError) -> None:
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        response = bad_request(str(exc), exc.error_status_hint)
        headers = [*self._headers(response.content_type, []), ("Content-Length", str(len(response.body)))]
        headers.append(("Connection", "close"))
        head = h11.Response(status_code=response.status, headers=headers, reason=_reason(response.status))
        with contextlib.suppress(_PeerGone, h11.LocalProtocolError):
            await self._send(head, h11.Data(data=response.body), h11.EndOfMessage())
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


def _has_body(event: h11.Request) -> bool:
    for name, value in event.headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
