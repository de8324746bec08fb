"""The engine client: version negotiation, error mapping and streams, against a fake daemon."""

from __future__ import annotations

import io
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.client.fakedaemon import Canned, FakeDaemon, serve

from ketch.client.api import APIClient, encode_auth
from ketch.client.http import (
    Connection,
    DaemonError,
    DaemonUnreachable,
    FromDaemon,
    error_from,
    go_json_body,
    parse_host,
)
from ketch.common import errors
from ketch.spec.engine_api import Filters


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[FakeDaemon]:
    with serve(tmp_path / "d.sock") as fake:
        yield fake


def _client(daemon: FakeDaemon) -> APIClient:
    return APIClient(f"unix://{daemon.socket_path}")


@pytest.mark.parametrize(
    ("server", "expected"), [(None, "1.24"), ("1.40", "1.40"), ("1.41", "1.41"), ("1.45", "1.41")]
)
def test_negotiation(tmp_path: Path, server: str | None, expected: str) -> None:
    with serve(tmp_path / "n.sock", api_version=server) as fake:
        fake.route("GET", "/images/json", Canned.json([]))
        client = _client(fake)
        assert client.images() == []
        assert client.api_version == expected
        ping, call = fake.requests
        assert (ping.method, ping.path, ping.version) == ("HEAD", "/_ping", None)
        assert call.version == expected


def test_ping_falls_back_to_get_when_head_fails(daemon: FakeDaemon) -> None:
    daemon.head_ping_status = 405
    assert _client(daemon).api_version == "1.41"
    assert [(r.method, r.path) for r in daemon.requests] == [("HEAD", "/_ping"), ("GET", "/_ping")]


def test_explicit_version_skips_ping(daemon: FakeDaemon) -> None:
    daemon.route("GET", "/version", Canned.json({"Version": "x"}))
    client = APIClient(f"unix://{daemon.socket_path}", version="1.30")
    assert client.version() == {"Version": "x"}
    [call] = daemon.requests
    assert call.version == "1.30"


@pytest.mark.parametrize(
    ("status", "category"),
    [(400, errors.InvalidArgument), (401, errors.Unauthorized), (403, errors.Forbidden), (404, errors.NotFound),
     (409, errors.Conflict), (501, errors.Unsupported), (503, errors.Unavailable)],
)  # fmt: skip
def test_errors_by_status(daemon: FakeDaemon, status: int, category: type[errors.KetchError]) -> None:
    daemon.route("GET", "/images/x/json", Canned.error(status, f"it failed with {status}"))
    with pytest.raises(category) as caught:
        _client(daemon).inspect_image("x")
    assert isinstance(caught.value, FromDaemon)
    assert str(caught.value) == f"it failed with {status}"
    assert caught.value.status == status


def test_other_statuses_and_plain_text(daemon: FakeDaemon) -> None:
    daemon.route("GET", "/images/x/json", Canned(500, b"boom\n", {"Content-Type": "text/plain"}))
    with pytest.raises(DaemonError) as caught:
        _client(daemon).inspect_image("x")
    assert (str(caught.value), caught.value.status_code) == ("boom", 500)
    assert str(error_from(502, b"")) == "Bad Gateway"


def test_unreachable(tmp_path: Path) -> None:
    with pytest.raises(
        DaemonUnreachable, match=r"Cannot connect to the ketch daemon at unix://.*/none\.sock"
    ):
        APIClient(f"unix://{tmp_path}/none.sock").version()
    bound = socket.socket(socket.AF_UNIX)
    bound.bind(str(tmp_path / "refuse.sock"))  # bound but not listening: connection refused
    try:
        with pytest.raises(DaemonUnreachable):
            APIClient(f"unix://{tmp_path}/refuse.sock").ping()
    finally:
        bound.close()


def test_query_encoding_and_paths(daemon: FakeDaemon) -> None:
    daemon.route("GET", "/images/json", Canned.json([]))
    daemon.route("POST", "/images/prune", Canned.json({"ImagesDeleted": None, "SpaceReclaimed": 0}))
    daemon.route(
        "DELETE", "/images/localhost:5000/a/b:1", Canned.json([{"Untagged": "localhost:5000/a/b:1"}])
    )
    client = _client(daemon)
    client.images(all=True, digests=False, filters=Filters({"label": ["a=b"]}))
    assert client.prune_images(Filters({"dangling": ["false"]})) == {
        "ImagesDeleted": None,
        "SpaceReclaimed": 0,
    }
    assert client.remove_image("localhost:5000/a/b:1") == [{"Untagged": "localhost:5000/a/b:1"}]
    listing, prune, delete = daemon.calls()
    assert listing.query == [("all", "1"), ("filters", '{"label":{"a=b":true}}')]
    assert prune.query == [("filters", '{"dangling":{"false":true}}')]
    assert delete.query == []


def test_json_stream_split_across_chunks(tmp_path: Path) -> None:
    # A server that writes the stream in awkward pieces, with \r\n separators, chunked as dockerd does.
    path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    pieces = [b'{"status":"Pul', b'ling"}\r\n{"id":"x",', b'"status":"Done"}', b"\r\n"]

    def serve_once() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for piece in pieces:
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.sendall(b"0\r\n\r\n")

    thread = threading.Thread(target=serve_once)
    thread.start()
    try:
        client = APIClient(f"unix://{path}", version="1.41")
        messages = list(client.pull("busybox", "latest"))
    finally:
        thread.join()
        server.close()
    assert messages == [{"status": "Pulling"}, {"id": "x", "status": "Done"}]


def test_upload_body_and_auth_header(daemon: FakeDaemon) -> None:
    daemon.route("POST", "/images/load", Canned.stream(['{"stream":"Loaded image: a:1\\n"}']))
    daemon.route("POST", "/images/a/push", Canned.stream(['{"status":"ok"}']))
    client = _client(daemon)
    assert list(client.load(io.BytesIO(b"tar" * 100), quiet=True)) == [{"stream": "Loaded image: a:1\n"}]
    assert list(client.push("a", "1", auth={"username": "u"})) == [{"status": "ok"}]
    load, push = daemon.calls()
    assert (load.body, load.headers.get("Transfer-Encoding")) == (b"tar" * 100, "chunked")
    assert push.headers["X-Registry-Auth"] == encode_auth({"username": "u"})
    assert encode_auth(None) == "e30="


@pytest.mark.parametrize(
    ("host", "parsed"),
    [("unix:///run/x.sock", ("unix", "/run/x.sock")), ("tcp://1.2.3.4:2376", ("tcp", "1.2.3.4:2376")),
     ("tcp://example", ("tcp", "example:2375")), ("http://h:1/", ("tcp", "h:1"))],
)  # fmt: skip
def test_parse_host(host: str, parsed: tuple[str, str]) -> None:
    assert parse_host(host) == parsed


@pytest.mark.parametrize("host", ["/run/x.sock", "unix://relative", "ssh://h", "tcp://"])
def test_bad_hosts(host: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="invalid host"):
        Connection(host)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may connect to any socket")
def test_permission_denied(tmp_path: Path) -> None:
    with serve(tmp_path / "p.sock") as fake:
        fake.socket_path.chmod(0)
        with pytest.raises(errors.Forbidden, match="Got permission denied while trying to connect"):
            _client(fake).ping()


def test_json_bodies_are_written_as_go_encodes_them() -> None:
    """json.NewEncoder: compact UTF-8 (not \\u escapes), HTML characters escaped, a newline at the end."""
    body = go_json_body({"Cmd": ["sh", "-c", "echo é > x && cat <x"], "N": None, "T": True, "E": {}})
    assert body == ('{"Cmd":["sh","-c","echo é \\u003e x \\u0026\\u0026 cat \\u003cx"],"N":null,"T":true,'
                    '"E":{}}\n').encode()  # fmt: skip
    assert go_json_body({"s": '\u2028\x01"'}) == b'{"s":"\\u2028\\u0001\\""}\n'
