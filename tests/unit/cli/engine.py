"""A fake Engine API daemon built on ketch.api's real server (h11, hijack, streaming), with test-defined routes.

The server runs on its own asyncio loop in a thread, on a unix socket in the test's tmp_path. Routes are
``(method, pattern, answer)`` where ``answer`` is a Reply or a function of the recorded :class:`Call`
(sync or async) returning one. Every call is recorded with its version, sorted query pairs, headers and body,
so tests compare the exact requests the CLI sent.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from ketch.api.http import Hijack, RawStream, Reply, Request, Response, StreamingResponse
from ketch.api.router import Router
from ketch.api.server import ApiServer
from ketch.spec import stdcopy
from ketch.spec.engine_api import split_version


@dataclass
class Call:
    method: str
    path: str
    version: str | None
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def line(self) -> str:
        """``POST /containers/create?name=x``, as the traces' calls.txt lists them (without the version)."""
        from urllib.parse import urlencode

        query = urlencode(self.query)
        return f"{self.method} {self.path}" + (f"?{query}" if query else "")


Answer = Reply | Callable[[Call], Reply | Awaitable[Reply]]


class FakeEngine:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.calls: list[Call] = []
        self.router = Router()
        self.loop = asyncio.new_event_loop()
        self.started = asyncio.Event()  # set by the default start route
        self.stdin: list[bytes] = []  # what echo/consume hijacks received
        self._answers: dict[tuple[str, str], Answer] = {}
        self.router.add(("GET", "HEAD"), "/_ping", self._ping)
        self._server = ApiServer(self.router)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _ping(self, request: Request) -> Reply:
        return Response(200, b"" if request.method == "HEAD" else b"OK", "text/plain; charset=utf-8")

    def route(self, method: str, pattern: str, answer: Answer) -> None:
        """Answer ``method pattern`` with ``answer`` (replacing an earlier answer for the same route)."""
        key = (method, pattern)
        first = key not in self._answers
        self._answers[key] = answer
        if not first:
            return

        async def handler(request: Request) -> Reply:
            raw_path = request.target.partition("?")[0]
            version, _ = split_version(unquote(raw_path))
            call = Call(
                method=request.method,
                path=request.path,
                version=version,
                query=parse_qsl(request.target.partition("?")[2], keep_blank_values=True),
                headers={k.lower(): v for k, v in request.headers},
                body=await request.body(),
                params=dict(request.params),
            )
            self.calls.append(call)
            current = self._answers[key]
            if not callable(current):
                return current
            result = current(call)
            return await result if inspect.isawaitable(result) else result

        self.router.add(method, pattern, handler)

    def lines(self) -> list[str]:
        return [call.line for call in self.calls]

    def find(self, method: str, path: str) -> Call:
        return next(c for c in self.calls if c.method == method and c.path == path)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._server.listen(f"unix://{self.socket_path}"), self.loop).result(
            10
        )

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextmanager
def engine(socket_path: Path) -> Iterator[FakeEngine]:
    fake = FakeEngine(socket_path)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


# ---- replies ----------------------------------------------------------------------------------------------------


def json_reply(value: Any, status: int = 200) -> Response:
    return Response.json(value, status)


def error(status: int, message: str) -> Response:
    return Response.json({"message": message}, status)


def empty(status: int = 204) -> Response:
    return Response(status)


def stream(*chunks: bytes, content_type: str = "application/json") -> Callable[[Call], Reply]:
    """A chunked answer sending ``chunks`` (a function, since a StreamingResponse can be sent only once)."""

    def answer(call: Call) -> Reply:
        async def body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return StreamingResponse(body(), content_type=content_type)

    return answer


def frames(*parts: tuple[int, bytes]) -> bytes:
    return b"".join(stdcopy.encode(s, data) for s, data in parts)


def after_start(
    fake: FakeEngine, output: bytes, *, read_stdin: bool = False, echo: bool = False
) -> Callable[[Call], Reply]:
    """An attach/exec answer: waits for the container to start, (optionally) reads stdin to its end, then
    sends ``output`` (plus what stdin brought, framed on stdout, with ``echo``) and closes."""

    def answer(call: Call) -> Reply:
        async def run(raw: RawStream) -> None:
            await fake.started.wait()
            received = b""
            if read_stdin or echo:
                while chunk := await raw.read():
                    received += chunk
                fake.stdin.append(received)
            await raw.write(output + (stdcopy.encode(1, received) if echo and received else b""))

        return Hijack(run)

    return answer


def wait_answer(
    fake: FakeEngine, status: int, *, after: asyncio.Event | None = None
) -> Callable[[Call], Reply]:
    """``wait``: headers at once, the exit status once the container started (and ``after`` is set)."""

    def answer(call: Call) -> Reply:
        async def body() -> AsyncIterator[bytes]:
            await fake.started.wait()
            if after is not None:
                await after.wait()
            await asyncio.sleep(0.05)  # the attach stream ends first, as with a real exit
            yield json.dumps({"Error": None, "StatusCode": status}).encode() + b"\n"

        return StreamingResponse(body())

    return answer


def start_answer(fake: FakeEngine) -> Callable[[Call], Reply]:
    def answer(call: Call) -> Reply:
        fake.started.set()
        return Response(204)

    return answer


def trace_reply(name: str, method: str, path_suffix: str) -> Response:
    """dockerd's answer in the 20.10 trace ``name`` to the first ``method`` on a path ending with the suffix."""
    from tests.unit.client.fakedaemon import trace_calls

    for call in trace_calls(name):
        if call["method"] == method and call["path"].endswith(path_suffix):
            body = call["resp_body"]
            if isinstance(body, str):  # a raw stream, stored as text: one character per byte
                return Response(call["status"], body.encode("latin-1"), "application/octet-stream")
            if isinstance(body, dict) and "json_stream_lines" in body:
                data = "".join(line + "\n" for line in body["json_stream_lines"]).encode()
                return Response(call["status"], data, "application/json")
            return Response.json(body, call["status"]) if body is not None else Response(call["status"])
    raise KeyError(f"{name}: no {method} ...{path_suffix}")
