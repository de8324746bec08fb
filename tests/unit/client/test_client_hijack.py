"""Hijacked connections, the stdout/stderr demultiplexer, deferred answers and docker's query encoding."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.cli.engine import FakeEngine, engine, error, frames, json_reply, stream

from ketch.api.http import Hijack, RawStream
from ketch.client.api import APIClient
from ketch.client.hijack import StreamError, demux, read_body, read_head
from ketch.client.http import DaemonConflict, DaemonNotFound, Keep, ObjectNotFound, encode_query


@pytest.fixture
def eng(tmp_path: Path) -> Iterator[FakeEngine]:
    with engine(tmp_path / "h.sock") as fake:
        yield fake


def _client(fake: FakeEngine) -> APIClient:
    return APIClient(f"unix://{fake.socket_path}")


def test_encode_query_sorts_repeats_and_keeps_what_docker_keeps() -> None:
    query = {"stream": True, "stdin": False, "stderr": True, "tag": Keep(""), "repo": "", "changes": ["A", "B"],
             "t": 0, "none": None}  # fmt: skip
    assert encode_query(query) == "changes=A&changes=B&stderr=1&stream=1&t=0&tag="


def test_read_head_keeps_the_bytes_after_the_headers() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(
            b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n\x01early"
        )
        status, headers, rest = read_head(left)
    assert (status, headers["content-type"], rest) == (101, "application/vnd.docker.raw-stream", b"\x01early")


def test_read_body_dechunks_and_stops_at_content_length() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        assert read_body(left, {"transfer-encoding": "chunked"}, b"") == b"hello world"
        right.sendall(b"abcdefXYZ")
        assert read_body(left, {"content-length": "6"}, b"") == b"abcdef"


def test_read_head_rejects_what_is_not_http() -> None:
    from ketch.common.errors import Unavailable

    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")
        with pytest.raises(Unavailable, match="bad status line"):
            read_head(left)
        right.close()
        with pytest.raises(Unavailable, match="closed the connection"):
            read_head(left)


def test_demux_splits_streams_across_chunks() -> None:
    data = frames((1, b"out\n"), (2, b"err\n"), (0, b"in"), (1, b""))
    out: list[bytes] = []
    err: list[bytes] = []
    demux([data[i : i + 3] for i in range(0, len(data), 3)], out.append, err.append)
    assert (b"".join(out), b"".join(err)) == (b"out\nin", b"err\n")
    with pytest.raises(StreamError, match=re.escape("error from daemon in stream: gone")):
        demux([frames((1, b"x"), (3, b"gone"), (1, b"never"))], out.append, err.append)
    with pytest.raises(StreamError, match="ended inside a stdout frame"):
        demux([frames((1, b"truncated"))[:-2]], out.append, err.append)
    with pytest.raises(StreamError, match="unknown stream 7"):
        demux([b"\x07\x00\x00\x00\x00\x00\x00\x01x"], out.append, err.append)


def test_hijack_upgrades_and_half_closes(eng: FakeEngine) -> None:
    received: list[bytes] = []

    def echo(call: object) -> Hijack:
        async def run(raw: RawStream) -> None:
            await raw.write(frames((1, b"ready\n")))
            data = b""
            while chunk := await raw.read():
                data += chunk
            received.append(data)
            await raw.write(frames((2, data)))

        return Hijack(run)

    eng.route("POST", "/containers/{id}/attach", echo)
    client = _client(eng)
    with client.attach("c1", stdin=True) as hijacked:
        assert hijacked.content_type == "application/vnd.docker.raw-stream"
        hijacked.sendall(b"typed")
        hijacked.close_write()
        data = b""
        while chunk := hijacked.recv():
            data += chunk
    assert data == frames((1, b"ready\n"), (2, b"typed"))
    assert received == [b"typed"]
    call = eng.calls[0]
    assert call.query == [("stderr", "1"), ("stdin", "1"), ("stdout", "1"), ("stream", "1")]
    assert (call.headers["connection"], call.headers["upgrade"], call.headers["host"]) == (
        "Upgrade",
        "tcp",
        "docker",
    )


def test_hijack_error_answers_are_ketch_errors(eng: FakeEngine) -> None:
    eng.route("POST", "/exec/{id}/start", error(409, "Container abc is not running"))
    with pytest.raises(DaemonConflict, match=re.escape("Container abc is not running")):
        _client(eng).exec_attach("e1")
    assert eng.calls[0].json() == {"Detach": False, "Tty": False}


def test_begin_sends_now_and_answers_later(eng: FakeEngine) -> None:
    import asyncio

    release = asyncio.Event()

    def wait(call: object) -> object:
        async def body() -> object:
            await release.wait()
            yield b'{"Error":null,"StatusCode":9}\n'

        from ketch.api.http import StreamingResponse

        return StreamingResponse(body())  # type: ignore[arg-type]

    eng.route("POST", "/containers/{id}/wait", wait)
    client = _client(eng)
    pending = client.begin_wait("c1", "next-exit").ready()  # the headers came before the status
    assert eng.lines() == ["POST /containers/c1/wait?condition=next-exit"]
    eng.loop.call_soon_threadsafe(release.set)
    assert pending.result().json() == {"Error": None, "StatusCode": 9}
    pending.close()
    eng.route("POST", "/containers/{id}/wait", error(404, "No such container: c2"))
    failed = client.begin_wait("c2").ready()
    with pytest.raises(DaemonNotFound):
        failed.result()
    failed.close()


def test_missing_containers_are_worded_by_the_client(eng: FakeEngine) -> None:
    eng.route("GET", "/containers/{id}/json", error(404, "No such container: x"))
    eng.route("DELETE", "/containers/{id}", error(404, "No such container: x"))
    eng.route("POST", "/containers/{id}/stop", error(404, "No such container: x"))
    client = _client(eng)
    for call in (lambda: client.inspect_container("x"), lambda: client.remove_container("x")):
        with pytest.raises(ObjectNotFound) as caught:
            call()
        assert str(caught.value) == "Error: No such container: x"
    with pytest.raises(DaemonNotFound, match=re.escape("No such container: x")):
        client.stop_container("x")


def test_json_streams_and_typed_calls(eng: FakeEngine) -> None:
    eng.route("GET", "/events", stream(b'{"Type":"container","Action":"start"}\n{"Type":"n', b'etwork"}\n'))
    eng.route("GET", "/containers/json", json_reply([{"Id": "a"}]))
    eng.route("POST", "/containers/create", json_reply({"Id": "c", "Warnings": []}, 201))
    client = _client(eng)
    assert list(client.events(since="1", filters=None)) == [{"Type": "container", "Action": "start"},
                                                            {"Type": "network"}]  # fmt: skip
    assert client.containers(all=True, limit=0) == [{"Id": "a"}]
    assert client.create_container({"Image": "x"}, name="n", platform="linux/amd64")["Id"] == "c"
    assert eng.lines() == ["GET /events?since=1", "GET /containers/json?all=1&limit=0",
                           "POST /containers/create?name=n&platform=linux%2Famd64"]  # fmt: skip


def test_hijack_reads_a_stream_that_closes_without_output(eng: FakeEngine) -> None:
    def close_at_once(call: object) -> Hijack:
        async def run(raw: RawStream) -> None:
            return None

        return Hijack(run)

    eng.route("POST", "/containers/{id}/attach", close_at_once)
    done = threading.Event()
    with _client(eng).attach("c") as hijacked:
        hijacked.close_write()
        assert hijacked.recv() == b""
        done.set()
    assert done.is_set()
