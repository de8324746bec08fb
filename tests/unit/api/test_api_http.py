"""The HTTP layer over socketpairs: framing, keep-alive, bodies, streams, HEAD, errors, the version window,
hijacked connections and clients that leave early."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator

import pytest
from tests.unit.api.fakes import FakeSystem
from tests.unit.api.wire import SERVER_VERSION, run, serving

from ketch.api.http import Hijack, RawStream, Request, Response, StreamingResponse
from ketch.api.router import Router
from ketch.api.routes.system import register as register_system
from ketch.common.errors import Conflict, InvalidArgument, NotFound, NotModified
from ketch.spec import stdcopy


class Probe:
    """What the test routes saw and did, for the assertions."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.stream_closed = asyncio.Event()
        self.hijack_done = asyncio.Event()
        self.received: list[bytes] = []


def make_router(probe: Probe) -> Router:
    router = Router()
    register_system(router, FakeSystem())

    async def echo(req: Request) -> Response:
        filters = req.query.filters()
        return Response.json(
            {
                "path": req.path,
                "params": req.params,
                "api": req.api_version,
                "all": req.query.boolean("all"),
                "size": req.query.integer("size", -1),
                "filters": {k: filters.get(k) for k in filters},
                "host": req.header("Host"),
            }
        )

    async def upload(req: Request) -> Response:
        data = await req.body()
        return Response.json({"size": len(data), "sha256": hashlib.sha256(data).hexdigest()})

    async def create(req: Request) -> Response:
        return Response.json({"got": await req.json()}, 201)

    async def ignore_body(req: Request) -> Response:
        return Response.empty(204)

    async def stream(req: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            await probe.gate.wait()  # the headers must reach the client before the first chunk exists
            for i in range(req.query.integer("n", 3)):
                yield b'{"n":%d}\r\n' % i

        return StreamingResponse(chunks())

    async def forever(req: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                yield b"first\n"
                while True:
                    if req.query.boolean("busy"):
                        yield b"x" * 65536
                    else:
                        await asyncio.sleep(3600)
            finally:
                probe.stream_closed.set()

        return StreamingResponse(chunks(), content_type="text/plain")

    async def broken_stream(req: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"partial\n"
            raise RuntimeError("disk on fire")

        return StreamingResponse(chunks())

    async def attach(req: Request) -> Hijack:
        if req.params["id"] == "missing":
            raise NotFound("No such container: missing")
        options = await req.json()

        async def session(stream: RawStream) -> None:
            try:
                while data := await stream.read():
                    probe.received.append(data)
                    await stream.write(stdcopy.encode(stdcopy.STDOUT, data.upper()))
                # The client's stdin ended; the server keeps writing after the half-close.
                await asyncio.sleep(0.05)
                await stream.write(stdcopy.encode(stdcopy.STDERR, b"bye " + json.dumps(options).encode()))
            finally:
                probe.hijack_done.set()

        return Hijack(session)

    async def fail(req: Request) -> Response:
        kind = req.params["kind"]
        errors: dict[str, Exception] = {
            "notfound": NotFound("No such container: x"),
            "invalid": InvalidArgument("invalid reference format"),
            "conflict": Conflict('The container name "/x" is already in use'),
            "notmodified": NotModified("container already started"),
            "bug": RuntimeError("unexpected None"),
        }
        raise errors[kind]

    router.add("GET", "/echo/{name}", echo)
    router.add("GET", "/images/{name:.*}/json", echo)
    router.add("POST", "/upload", upload)
    router.add("POST", "/containers/create", create)
    router.add("POST", "/ignore", ignore_body)
    router.add("GET", "/stream", stream)
    router.add("GET", "/forever", forever)
    router.add("GET", "/broken", broken_stream)
    router.add("POST", "/containers/{id}/attach", attach)
    router.add("GET", "/fail/{kind}", fail)
    return router


UPGRADE = [("Connection", "Upgrade"), ("Upgrade", "tcp")]
HEAD_101 = (
    b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
    b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
)
HEAD_200 = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n"


def frames(data: bytes) -> list[tuple[int, bytes]]:
    decoder = stdcopy.Decoder()
    out = [(f.stream, f.payload) for f in decoder.feed(data)]
    decoder.close()
    return out


def test_ping_get_and_head_headers_as_dockerd() -> None:
    async def main() -> None:
        async with serving(make_router(Probe())) as (_, connect):
            wire = await connect()
            get = await wire.call("GET", "/_ping")
            head = await wire.call("HEAD", "/_ping")
            # the same connection still works after HEAD: no stray body bytes were sent
            again = await wire.call("GET", "/_ping")
        assert (get.status, get.body, again.body) == (200, b"OK", b"OK")
        expected = {
            "Api-Version": "1.41",
            "Cache-Control": "no-cache, no-store, must-revalidate",
            "Content-Type": "text/plain; charset=utf-8",
            "Docker-Experimental": "false",
            "Ostype": "linux",
            "Pragma": "no-cache",
            "Server": f"Docker/{SERVER_VERSION} (linux)",
        }
        assert {k: v for k, v in head.headers if k != "Date"} == {**expected, "Content-Length": "0"}
        assert {k: v for k, v in get.headers if k != "Date"} == {**expected, "Content-Length": "2"}
        assert (head.header("Date") or "").endswith(" GMT")

    run(main())


def test_version_json_shape_and_paths_with_and_without_prefix() -> None:
    async def main() -> None:
        async with serving(make_router(Probe())) as (_, connect):
            wire = await connect()
            prefixed = await wire.call("GET", "/v1.41/version")
            plain = await wire.call("GET", "/version")
            oldest = await wire.call("GET", "/v1.24/version")
        assert prefixed.body == plain.body == oldest.body
        assert prefixed.header("Content-Type") == "application/json"
        assert prefixed.body.endswith(b"}\n")  # Go's encoder ends with a newline
        body = prefixed.json()
        assert body["Platform"] == {"Name": "ketch"}
        assert body["Components"][0]["Name"] == "Engine"
        assert body["Components"][0]["Details"]["GoVersion"] == "python3.99.0"
        assert (body["Version"], body["ApiVersion"], body["MinAPIVersion"]) == ("9.9.9-test", "1.41", "1.24")

    run(main())


@pytest.mark.parametrize(
    ("target", "status", "message"),
    [
        ("/v1.99/version", 400, "client version 1.99 is too new. Maximum supported API version is 1.41"),
        ("/v1.42/version", 400, "client version 1.42 is too new. Maximum supported API version is 1.41"),
        (
            "/v1.12/version",
            400,
            "client version 1.12 is too old. Minimum supported API version is 1.24, "
            "please upgrade your client to a newer version",
        ),
        ("/v1.99/no/such/thing", 404, "page not found"),  # routing comes first, as in moby
        ("/nope", 404, "page not found"),
        ("/v1.41", 404, "page not found"),
    ],
)
def test_version_window_and_unknown_paths(target: str, status: int, message: str) -> None:
    async def main() -> None:
        async with serving(make_router(Probe())) as (_, connect):
            wire = await connect()
            reply = await wire.call("GET", target)
            assert (reply.status, reply.json()) == (status, {"message": message})
            assert reply.header("Api-Version") == "1.41"
            # an error does not end the connection
            assert (await wire.call("GET", "/_ping")).body == b"OK"

    run(main())


def test_wrong_method_and_head_on_get_route_are_404() -> None:
    async def main() -> None:
        async with serving(make_router(Probe())) as (_, connect):
            wire = await connect()
            post = await wire.call("POST", "/version", body=b"")
            head = await wire.call("HEAD", "/version")
        assert post.status == head.status == 404
        assert post.json() == {"message": "page not found"}
        assert head.body == b""

    run(main())


def test_route_parameters_query_and_api_version() -> None:
    async def main() -> None:
        async with serving(make_router(Probe())) as (_, connect):
            wire = await connect()
            filters = json.dumps({"label": {"a=b": True}, "status": {"exited": True}})
            listed = json.dumps({"label": ["a=b", "c"]})
            a = await wire.call("GET", "/v1.30/echo/my%20box?all=1&size=7&filters=" + _quote(filters))
            b = await wire.call("GET", "/echo/x?all=False&filters=" + _quote(listed))
            c = await wire.call("GET", "/v1.41/images/127.0.0.1:5000/ketch/bb:t1/json?all=True")
            bad = await wire.call("GET", "/echo/x?filters=%7Bnot-json")
            bad_int = await wire.call("GET", "/echo/x?size=ten")
        assert a.json() == {
            "path": "/echo/my box",
            "params": {"name": "my box"},
            "api": "1.30",
            "all": True,
            "size": 7,
            "filters": {"label": ["a=b"], "status": ["exited"]},
            "host": "docker",
        }
        assert (b.json()["api"], b.json()["all"], b.json()["filters"]) == (
            "1.41",
            False,
            {"label": ["a=b", "c"]},
        )
        assert (c.json()["params"], c.json()["all"]) == ({"name": "127.0.0.1:5000/ketch/bb:t1"}, True)
        assert (bad.status, bad.json()) == (400, {"message": "invalid filter"})
        assert bad_int.status == 400 and "size" in bad_int.json()["message"]

    run(main())


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def test_keep_alive_and_pipelined_requests() -> None:
    async def main() -> None:
        async with serving(make_router(Probe())) as (_, connect):
            wire = await connect()
            # three requests in one write: answered in order on the one connection
            await wire.send(
                b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"
                b"POST /upload HTTP/1.1\r\nHost: docker\r\nContent-Length: 5\r\n\r\nhello"
                b"GET /v1.41/version HTTP/1.1\r\nHost: docker\r\n\r\n"
            )
            first = await wire.response()
            second = await wire.response()
            third = await wire.response()
            assert (first.body, second.json()["size"], third.status) == (b"OK", 5, 200)
            # Connection: close is honoured: the answer says so and the server closes
            closing = await wire.call("GET", "/_ping", headers=[("Connection", "close")])
            assert closing.header("Connection") == "close"
            assert await wire.at_eof()

    run(main())


def test_chunked_request_body_split_across_writes() -> None:
    async def main() -> None:
        payload = bytes(range(256)) * 300
        async with serving(make_router(Probe())) as (_, connect):
            wire = await connect()
            await wire.send(b"POST /upload HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(payload), 7000):
                piece = payload[i : i + 7000]
                encoded = b"%x\r\n%s\r\n" % (len(piece), piece)
                # split each chunk's framing and data across writes
                await wire.send(encoded[:3])
                await asyncio.sleep(0)
                await wire.send(encoded[3:])
            await wire.send(b"0\r\n\r\n")
            reply = await wire.response()
            after = await wire.call("GET", "/_ping")
        assert reply.json() == {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
        assert after.body == b"OK"

    run(main())


def test_expect_100_continue_is_answered_when_the_route_reads() -> None:
    async def main() -> None:
        async with serving(make_router(Probe())) as (_, connect):
            wire = await connect()
            await wire.send(
                b"POST /upload HTTP/1.1\r\nHost: docker\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
            )
            interim = await wire.head()
            assert (interim.status, interim.reason) == (100, "Continue")
            await wire.send(b"abc")
            assert (await wire.response()).json()["size"] == 3

    run(main())


def test_unread_body_is_discarded_and_json_errors_are_400() -> None:
    async def main() -> None:
        async with serving(make_router(Probe())) as (_, connect):
            wire = await connect()
            ignored = await wire.call("POST", "/ignore", body=b"x" * 10000)
            created = await wire.call(
                "POST",
                "/containers/create",
                body=b'{"Image":"busybox"}',
                headers=[("Content-Type", "application/json")],
            )
            bad_json = await wire.call(
                "POST",
                "/containers/create",
                body=b'{"Image":',
                headers=[("Content-Type", "application/json")],
            )
            wrong_type = await wire.call(
                "POST", "/containers/create", body=b"{}", headers=[("Content-Type", "text/plain")]
            )
            empty = await wire.call("POST", "/containers/create", body=b"")
        assert ignored.status == 204 and ignored.header("Content-Length") is None
        assert (created.status, created.json()) == (201, {"got": {"Image": "busybox"}})
        assert bad_json.status == 400 and bad_json.json()["message"].startswith("invalid JSON: ")
        assert wrong_type.json() == {
            "message": "unsupported Content-Type header (text/plain): must be 'application/json'"
        }
        assert empty.json() == {"got": None}

    run(main())


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /_ping HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET /_ping HTTP/1.1\r\nHost: docker\r\nBad Header\r\n\r\n", 400),
        (b"POST /upload HTTP/1.1\r\nHost: d\r\nContent-Length: x\r\n\r\n", 400),
        (b"GET /_ping HTTP/1.1\r\nHost: docker\r\nX-Big: " + b"a" * (2 << 20) + b"\r\n\r\n", 431),
    ],
)
def test_malformed_requests_get_an_error_and_the_connection_closes(raw: bytes, status: int) -> None:
    async def main() -> None:
        async with serving(make_router(Probe())) as (_, connect):
            wire = await connect()
            wire.writer.write(raw)
            reply = await wire.response()
            assert reply.status == status
            assert reply.json()["message"].startswith("malformed HTTP request: ")
            assert reply.header("Connection") == "close"
            assert await wire.at_eof()
            # the server goes on serving others
            assert (await (await connect()).call("GET", "/_ping")).body == b"OK"

    run(main())


def test_malformed_chunked_body_is_400() -> None:
    async def main() -> None:
        async with serving(make_router(Probe())) as (_, connect):
            wire = await connect()
            await wire.send(
                b"POST /upload HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
            )
            reply = await wire.response()
            assert reply.status == 400
            assert await wire.at_eof()

    run(main())


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [
        ("notfound", 404, {"message": "No such container: x"}),
        ("invalid", 400, {"message": "invalid reference format"}),
        ("conflict", 409, {"message": 'The container name "/x" is already in use'}),
        ("notmodified", 304, None),
        ("bug", 500, {"message": "unexpected None"}),
    ],
)
def test_route_errors_become_statuses(
    kind: str, status: int, body: object, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with serving(make_router(Probe())) as (_, connect):
            wire = await connect()
            reply = await wire.call("GET", f"/fail/{kind}")
            assert reply.status == status
            assert (reply.json() if reply.body else None) == body
            assert (await wire.call("GET", "/_ping")).body == b"OK"

    with caplog.at_level(logging.DEBUG, logger="ketch.api"):
        run(main())
    tracebacks = [r for r in caplog.records if r.exc_info]
    if kind == "bug":
        assert len(tracebacks) == 1 and "GET /fail/bug" in tracebacks[0].getMessage()
        assert isinstance(tracebacks[0].exc_info[1], RuntimeError)  # type: ignore[index]
    else:
        assert tracebacks == []


def test_streamed_response_sends_headers_before_the_first_chunk() -> None:
    async def main() -> None:
        probe = Probe()
        async with serving(make_router(probe)) as (_, connect):
            wire = await connect()
            await wire.request("GET", "/v1.41/stream?n=3")
            head = await wire.head()  # arrives while the route has produced nothing yet
            assert head.status == 200
            assert head.header("Transfer-Encoding") == "chunked"
            assert head.header("Content-Type") == "application/json"
            probe.gate.set()
            chunks = []
            while (part := await wire.chunk()) is not None:
                chunks.append(part)
            assert chunks == [b'{"n":0}\r\n', b'{"n":1}\r\n', b'{"n":2}\r\n']
            assert (await wire.call("GET", "/_ping")).body == b"OK"  # keep-alive after a stream

    run(main())


def test_head_on_a_streamed_route_sends_no_body() -> None:
    async def main() -> None:
        router = make_router(Probe())

        async def logs(req: Request) -> StreamingResponse:
            async def chunks() -> AsyncIterator[bytes]:
                yield b"never sent"

            return StreamingResponse(chunks())

        router.add(("GET", "HEAD"), "/logs", logs)
        async with serving(router) as (_, connect):
            wire = await connect()
            head = await wire.call("HEAD", "/logs")
            assert head.status == 200
            # the next answer starts right away: nothing of the stream's body was sent
            assert (await wire.call("GET", "/_ping")).body == b"OK"

    run(main())


@pytest.mark.parametrize("busy", [False, True])
def test_client_disconnecting_during_a_stream(busy: bool) -> None:
    async def main() -> None:
        probe = Probe()
        async with serving(make_router(probe)) as (_, connect):
            wire = await connect()
            await wire.request("GET", f"/forever?busy={int(busy)}")
            assert (await wire.head()).status == 200
            assert await wire.chunk() == b"first\n"
            await wire.close()
            # an idle stream notices the client's end of stream; a busy one fails its next write
            await asyncio.wait_for(probe.stream_closed.wait(), 5)
            # the server is unharmed
            assert (await (await connect()).call("GET", "/_ping")).body == b"OK"

    run(main())


def test_stream_failing_after_its_headers_aborts_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with serving(make_router(Probe())) as (_, connect):
            wire = await connect()
            await wire.request("GET", "/broken")
            assert (await wire.head()).status == 200
            assert await wire.chunk() == b"partial\n"
            # no terminating chunk: the client can tell the stream is incomplete
            assert await wire.reader.read() == b""

    with caplog.at_level(logging.ERROR, logger="ketch.api"):
        run(main())
    assert any(r.exc_info and "disk on fire" in str(r.exc_info[1]) for r in caplog.records)


def test_hijack_upgrade_echo_with_half_close() -> None:
    async def main() -> None:
        probe = Probe()
        async with serving(make_router(probe)) as (_, connect):
            wire = await connect()
            body = b'{"Detach":false,"Tty":false}'
            # the 20.10 CLI sends an empty Host on hijack requests; stdin may follow the request at once
            await wire.send(
                b"POST /v1.41/containers/c1/attach?stdin=1&stdout=1&stream=1 HTTP/1.1\r\nHost: \r\n"
                b"Content-Length: %d\r\nConnection: Upgrade\r\nContent-Type: application/json\r\n"
                b"Upgrade: tcp\r\n\r\n%s" % (len(body), body) + b"early "
            )
            assert await wire.reader.readexactly(len(HEAD_101)) == HEAD_101
            assert frames(await wire.reader.readexactly(8 + 6)) == [(1, b"EARLY ")]
            await wire.send(b"more")
            assert frames(await wire.reader.readexactly(8 + 4)) == [(1, b"MORE")]
            wire.writer.write_eof()  # stdin ended: half-close; the server keeps writing
            rest = await wire.reader.read()  # until the server closes
            assert frames(rest) == [(2, b'bye {"Detach": false, "Tty": false}')]
            assert probe.received == [b"early ", b"more"]
            assert probe.hijack_done.is_set()

    run(main())


def test_hijack_without_upgrade_answers_200_and_ends_at_close() -> None:
    async def main() -> None:
        async with serving(make_router(Probe())) as (_, connect):
            wire = await connect()
            await wire.request("POST", "/containers/c1/attach?stream=1", body=b"")
            assert await wire.reader.readexactly(len(HEAD_200)) == HEAD_200
            wire.writer.write_eof()
            assert frames(await wire.reader.read()) == [(2, b"bye null")]

    run(main())


def test_hijack_route_error_before_upgrade_is_a_normal_response() -> None:
    async def main() -> None:
        async with serving(make_router(Probe())) as (_, connect):
            wire = await connect()
            reply = await wire.call("POST", "/containers/missing/attach", body=b"", headers=UPGRADE)
            assert (reply.status, reply.json()) == (404, {"message": "No such container: missing"})
            assert (await wire.call("GET", "/_ping")).body == b"OK"

    run(main())


def test_client_vanishing_from_a_hijacked_session_and_server_close() -> None:
    async def main() -> None:
        probe = Probe()
        async with serving(make_router(probe)) as (server, connect):
            gone = await connect()
            await gone.request("POST", "/containers/c1/attach", body=b"", headers=UPGRADE)
            assert await gone.reader.readexactly(len(HEAD_101)) == HEAD_101
            await gone.close()
            await asyncio.wait_for(probe.hijack_done.wait(), 5)
            # a live session and a live stream are ended by close(), which waits for them
            probe.hijack_done.clear()
            held = await connect()
            await held.request("POST", "/containers/c1/attach", body=b"", headers=UPGRADE)
            assert await held.reader.readexactly(len(HEAD_101)) == HEAD_101
            streaming = await connect()
            await streaming.request("GET", "/forever")
            assert (await streaming.head()).status == 200
            await server.close()
            assert probe.hijack_done.is_set() and probe.stream_closed.is_set()
            assert await held.at_eof()
            # the stream was cut, not completed: no terminating chunk
            assert not (await streaming.reader.read()).endswith(b"0\r\n\r\n")

    run(main())
