"""The lean HTTP/1.1 client (ketch.client.wire) and the stand-ins for standard modules the CLI avoids.

A raw unix-socket server answers with bytes the test chooses, so framing (Content-Length, chunked, until
close), kept connections and connections the daemon drops are all exercised as they appear on the wire.
"""

from __future__ import annotations

import http.server
import io
import random
import socket
import socketserver
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ketch.cli.plainref import familiar, is_image_id, split_plain
from ketch.client import http as client_http
from ketch.client.api import APIClient
from ketch.client.hijack import StreamError, demux
from ketch.client.http import Connection, Keep, encode_query, negotiate, quote_path
from ketch.common import errors
from ketch.spec import engine_api, reference, stdcopy


class Request:
    def __init__(self, connection: int, line: str, headers: dict[str, str], body: bytes) -> None:
        self.connection = connection
        self.line = line
        self.headers = headers
        self.body = body


# An answer: the raw bytes to send, or a list sent piece by piece (waiting on an Event, closing at a None), or
# None to close without answering.
Piece = bytes | threading.Event | None
Answerer = Callable[[Request, int], "bytes | list[Piece] | None"]


class RawServer:
    """Serves each connection in a thread; ``answer(request, index_on_connection)`` decides what goes back."""

    def __init__(self, path: Path, answer: Answerer, *, close_after_answer: bool = False) -> None:
        self.path = path
        self.answer = answer
        self.close_after_answer = close_after_answer
        self.requests: list[Request] = []
        self.connections = 0
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(str(path))
        self._listener.listen(16)
        self._listener.settimeout(0.02)
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            number = self.connections
            self.connections += 1
            self._open.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn, number), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        reader = conn.makefile("rb")
        with conn, reader:
            index = 0
            while True:
                line = reader.readline()
                if not line:
                    return
                headers: dict[str, str] = {}
                while (header := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = b""
                if headers.get("transfer-encoding") == "chunked":
                    while size := int(reader.readline().strip(), 16):
                        body += reader.read(size)
                        reader.readline()
                    reader.readline()
                elif headers.get("content-length"):
                    body = reader.read(int(headers["content-length"]))
                request = Request(number, line.decode("latin-1").strip(), headers, body)
                self.requests.append(request)
                answer = self.answer(request, index)
                index += 1
                if answer is None:
                    return
                for piece in answer if isinstance(answer, list) else [answer]:
                    if piece is None:
                        return
                    if isinstance(piece, threading.Event):
                        piece.wait(5)
                    else:
                        conn.sendall(piece)
                if self.close_after_answer:
                    return

    def close(self) -> None:
        self._closing = True
        self._accepting.join(5)
        self._listener.close()
        for conn in self._open:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(5)


@contextmanager
def raw_server(path: Path, answer: Answerer, **kw: bool) -> Iterator[RawServer]:
    server = RawServer(path, answer, **kw)
    try:
        yield server
    finally:
        server.close()


def ok(body: bytes = b"[]", *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", "Api-Version: 1.41", "Content-Type: application/json", *extra]
    return ("\r\n".join([*head, f"Content-Length: {len(body)}", "", ""])).encode() + body


def ping_then(answer: Answerer) -> Answerer:
    """Answer /_ping as ketchd does (HEAD: headers only), everything else with ``answer``."""

    def respond(request: Request, index: int) -> bytes | list[Piece] | None:
        if request.line.startswith("HEAD /_ping"):
            return b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\n"
        return answer(request, index)

    return respond


def test_requests_share_a_kept_connection(tmp_path: Path) -> None:
    with raw_server(tmp_path / "s.sock", ping_then(lambda r, i: ok())) as server:
        client = APIClient(f"unix://{server.path}")
        assert client.containers() == []
        assert client.images() == []
        client.start_container("c")  # an answer with a body where 204 is usual: still framed by its length
        assert client.containers(all=True) == []
        assert [r.connection for r in server.requests] == [0, 0, 0, 0, 0]
        assert server.requests[3].headers["content-length"] == "0"  # a POST without a body says so
        assert server.requests[1].headers["host"] == "docker"
        client.conn.close()


def test_dropped_kept_connection_is_replaced(tmp_path: Path) -> None:
    # The daemon closes after every answer (an idle timeout, without saying so): the next request notices
    # the closed connection before sending and dials again.
    with raw_server(tmp_path / "s.sock", ping_then(lambda r, i: ok()), close_after_answer=True) as server:
        client = APIClient(f"unix://{server.path}")
        assert client.containers() == []
        time.sleep(0.05)
        assert client.containers() == []
        assert [r.connection for r in server.requests] == [0, 1, 2]


def test_request_is_sent_again_when_a_kept_connection_closes_unanswered(tmp_path: Path) -> None:
    # The daemon takes the second request on a kept connection and closes without a word (it was going idle
    # as the request arrived): the request goes again, once, on a new connection.
    def answer(request: Request, index: int) -> bytes | None:
        return None if request.connection == 0 and index == 2 else ok(b'{"Id":"x"}')

    with raw_server(tmp_path / "s.sock", ping_then(answer)) as server:
        client = APIClient(f"unix://{server.path}")
        assert client.inspect_image("a") == {"Id": "x"}
        assert client.create_container({"Image": "a"}) == {"Id": "x"}
        assert [(r.connection, r.line.split()[1].rsplit("/", 1)[-1]) for r in server.requests] == [
            (0, "_ping"), (0, "json"), (0, "create"), (1, "create")]  # fmt: skip
        assert server.requests[3].body == b'{"Image":"a"}\n'  # as Go's json.Encoder writes it
        client.conn.close()


def test_an_upload_is_not_sent_twice(tmp_path: Path) -> None:
    def answer(request: Request, index: int) -> bytes | None:
        return None if request.connection == 0 and index == 2 else ok(b"")

    with raw_server(tmp_path / "s.sock", ping_then(answer)) as server:
        client = APIClient(f"unix://{server.path}")
        client.images()
        with pytest.raises(errors.Unavailable, match="closed the connection without answering"):
            list(client.load(io.BytesIO(b"tar")))
        assert [r.line.split()[0] for r in server.requests] == ["HEAD", "GET", "POST"]


def test_chunked_upload_and_answer_read_as_it_arrives(tmp_path: Path) -> None:
    first_read = threading.Event()

    def answer(request: Request, index: int) -> bytes | list[Piece]:
        if "/images/load" not in request.line:
            return ok()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        first = b'{"status":"one"}\r\n'
        return [head + b"%x\r\n%s\r\n" % (len(first), first), first_read, b'3;ext=1\r\n{"s\r\n',
                b'd\r\ntatus":"two"}\r\n', b"0\r\nTrailer: x\r\n\r\n"]  # fmt: skip

    with raw_server(tmp_path / "s.sock", ping_then(answer)) as server:
        client = APIClient(f"unix://{server.path}", version="1.41")
        messages = client.load(io.BytesIO(b"x" * 200_000))
        assert next(messages) == {"status": "one"}  # before the daemon sent the rest
        first_read.set()
        assert list(messages) == [{"status": "two"}]
        upload = server.requests[0]
        assert (upload.headers["transfer-encoding"], upload.body) == ("chunked", b"x" * 200_000)
        # The chunked answer was read to its end: the connection serves the next request.
        assert client.images() == []
        assert [r.connection for r in server.requests] == [0, 0]
        client.conn.close()


def test_answer_read_until_close_and_connection_close(tmp_path: Path) -> None:
    def answer(request: Request, index: int) -> bytes | list[Piece]:
        if "/images/json" in request.line:
            return b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n[]"
        return [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[", b"]", None]  # ends at close

    with raw_server(tmp_path / "s.sock", ping_then(answer)) as server:
        client = APIClient(f"unix://{server.path}", version="1.41")
        assert client.containers() == []
        assert client.images() == []
        assert client.images() == []
        assert [r.connection for r in server.requests] == [0, 1, 2]


def test_bad_answers_are_unavailable(tmp_path: Path) -> None:
    answers = {"/a": b"SSH-2.0-OpenSSH\r\n\r\n", "/b": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
               "/c": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}  # fmt: skip

    def answer(request: Request, index: int) -> bytes:
        return answers[request.line.split()[1].removeprefix("/v1.41")]

    with raw_server(tmp_path / "s.sock", answer, close_after_answer=True) as server:
        conn = Connection(f"unix://{server.path}", version="1.41")
        with pytest.raises(errors.Unavailable, match="bad status line"):
            conn.request("GET", "/a")
        with pytest.raises(errors.Unavailable, match="in the middle of an answer"):
            conn.request("GET", "/b").read()
        with pytest.raises(errors.Unavailable, match="bad chunk size"):
            conn.request("GET", "/c").read()


def test_threads_share_one_connection_pool(tmp_path: Path) -> None:
    with raw_server(tmp_path / "s.sock", ping_then(lambda r, i: ok())) as server:
        client = APIClient(f"unix://{server.path}", version="1.41")
        results: list[object] = []

        def call() -> None:
            for _ in range(10):
                results.append(client.containers())

        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [[]] * 40
        assert server.connections <= 4
        client.conn.close()


def test_tcp_hosts_use_http_client(tmp_path: Path) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Api-Version", "1.40")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            body = b'[{"Id":"a"}]'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        client = APIClient(f"tcp://127.0.0.1:{server.server_address[1]}")
        assert client.containers() == [{"Id": "a"}]
        assert client.api_version == "1.40"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# ---- the stand-ins, held to what they replace ------------------------------------------------------------


SAMPLES = ["", "a", "a b", "a+b", "x/y:z@w", "naïve", "日本", "~-._", "%41", "a&b=c", "\t\n", "/v1.41/x?y#z",
           "linux/amd64", '{"label":{"a=b":true}}', "emoji 🐳"]  # fmt: skip


@pytest.mark.parametrize("text", SAMPLES)
def test_percent_encoding_matches_urllib(text: str) -> None:
    assert quote_path(text) == urllib.parse.quote(text, safe="/:@")
    assert encode_query({"k": text, "z": Keep(text)}) == urllib.parse.urlencode(
        [("k", text), ("z", text)] if text else [("z", "")]
    )


def test_negotiation_matches_the_spec() -> None:
    assert (client_http.API_VERSION, client_http.FALLBACK_API) == (
        engine_api.API_VERSION,
        engine_api.FALLBACK_API,
    )
    for server in (None, "", "1.24", "1.40", "1.41", "1.41.1", "1.45", "2.0", "1.x", "1", "0.9"):
        for maximum in ("1.41", "1.40", "1.9"):
            assert negotiate(server, maximum) == engine_api.negotiate(server, maximum), (server, maximum)


def _spec_demux(chunks: list[bytes]) -> tuple[bytes, bytes, str]:
    out, err = bytearray(), bytearray()
    decoder = stdcopy.Decoder()
    try:
        for chunk in chunks:
            for frame in decoder.feed(chunk):
                if frame.stream == stdcopy.SYSTEMERR:
                    return (
                        bytes(out),
                        bytes(err),
                        f"error from daemon in stream: {frame.payload.decode(errors='replace')}",
                    )
                if frame.payload:
                    (err if frame.stream == stdcopy.STDERR else out).extend(frame.payload)
        decoder.close()
    except errors.InvalidArgument as exc:
        return bytes(out), bytes(err), str(exc)
    return bytes(out), bytes(err), ""


def test_demux_matches_the_spec_decoder() -> None:
    rng = random.Random(7)
    for _ in range(300):
        data = b"".join(
            stdcopy.encode(rng.choice([0, 1, 1, 2, 2, 3]), rng.randbytes(rng.randrange(0, 40)))
            for _ in range(rng.randrange(0, 6))
        )
        if rng.random() < 0.2:
            data = data[: rng.randrange(0, len(data) + 1)]  # cut short
        if rng.random() < 0.1:
            data += bytes([rng.randrange(4, 256)]) + rng.randbytes(8)  # an unknown stream
        cuts = sorted(rng.randrange(0, len(data) + 1) for _ in range(rng.randrange(0, 5)))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        out, err = bytearray(), bytearray()
        try:
            demux(chunks, out.extend, err.extend)
            message = ""
        except StreamError as exc:
            message = str(exc)
        assert (bytes(out), bytes(err), message) == _spec_demux(chunks)


PLAIN = ["busybox", "busybox:latest", "busybox:1.36.1-musl", "user/app", "user/app:v_1", "library/busybox",
         "library/a/b:c", "a.b", "a-b_c.d", "x" * 150, "a/b/c/d", "library", "e" * 63 + ":1",
         "sha256:" + "f" * 64]  # fmt: skip
OTHER = ["", "Busybox", "localhost/a", "localhost:5000/a", "a.io/b", "host:5000/x:1", "a@sha256:" + "0" * 64,
         "a__b", "a--b", "a..b", "-a", "a-", "a:", "a:-x", "a:" + "t" * 129, "a/", "/a", "a//b", "a:b:c",
         "f" * 64, "x" * 201, "a b", "ümlaut"]  # fmt: skip


@pytest.mark.parametrize("text", PLAIN)
def test_plain_references_parse_as_the_spec_says(text: str) -> None:
    split = split_plain(text)
    assert split is not None
    ref = reference.parse(text, default_tag=False)
    assert (familiar(split[0]), split[1]) == (ref.familiar_name, ref.tag)
    assert ref.domain == "docker.io" and ref.digest is None


@pytest.mark.parametrize("text", OTHER)
def test_other_references_are_left_to_the_spec(text: str) -> None:
    assert split_plain(text) is None


def test_plain_is_a_subset_of_the_grammar() -> None:
    rng = random.Random(11)
    alphabet = "ab0._-/:A@"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 12)))
        split = split_plain(text)
        if split is None:
            continue
        ref = reference.parse(text, default_tag=False)  # must not raise
        assert (familiar(split[0]), split[1]) == (ref.familiar_name, ref.tag), text


def test_image_ids() -> None:
    assert is_image_id("a" * 64) and is_image_id("sha256:" + "0" * 64)
    assert not is_image_id("A" * 64) and not is_image_id("a" * 63) and not is_image_id("sha512:" + "a" * 64)
