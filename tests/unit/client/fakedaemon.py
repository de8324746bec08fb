"""A tiny Engine API server on a unix socket, answering with canned responses (taken from docker traces).

Routes map ``(method, path)`` (path without the ``/vX.Y`` prefix) to a :class:`Canned` answer or to a
function of the request. Every request is recorded with its version, query and body.
"""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ketch.spec.engine_api import split_version

TRACES = Path("/work/shared/docker-api-traces/cli-20.10")


@dataclass
class Canned:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Canned:
        return cls(status, json.dumps(value).encode(), {"Content-Type": "application/json"})

    @classmethod
    def error(cls, status: int, message: str) -> Canned:
        return cls.json({"message": message}, status)

    @classmethod
    def stream(cls, lines: list[str]) -> Canned:
        return cls(200, "".join(line + "\n" for line in lines).encode(), {"Content-Type": "application/json"})


@dataclass
class Request:
    method: str
    version: str | None
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes


Route = Canned | Callable[[Request], Canned]


class FakeDaemon:
    def __init__(self, socket_path: Path, api_version: str | None = "1.41") -> None:
        self.socket_path = socket_path
        self.api_version = api_version
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[Request] = []
        self.head_ping_status = 200

    def route(self, method: str, path: str, answer: Route) -> None:
        self.routes[(method, path)] = answer

    def calls(self, exclude_ping: bool = True) -> list[Request]:
        return [r for r in self.requests if not (exclude_ping and r.path == "/_ping")]

    def answer(self, request: Request) -> Canned:
        if request.path == "/_ping":
            status = self.head_ping_status if request.method == "HEAD" else 200
            return Canned(status, b"" if request.method == "HEAD" else b"OK", {"Content-Type": "text/plain"})
        route = self.routes.get((request.method, request.path))
        if route is None:
            return Canned.error(404, f"page not found: {request.method} {request.path}")
        return route(request) if callable(route) else route


def _handler(daemon: FakeDaemon) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def address_string(self) -> str:
            return "unix"

        def _serve(self) -> None:
            url = urlsplit(self.path)
            version, path = split_version(url.path)
            length = int(self.headers.get("Content-Length") or 0)
            if self.headers.get("Transfer-Encoding") == "chunked":
                body = self._read_chunked()
            else:
                body = self.rfile.read(length) if length else b""
            request = Request(
                self.command, version, unquote(path), parse_qsl(url.query), dict(self.headers.items()), body
            )
            daemon.requests.append(request)
            canned = daemon.answer(request)
            self.send_response(canned.status)
            if daemon.api_version:
                self.send_header("Api-Version", daemon.api_version)
            for key, value in canned.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(canned.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(canned.body)

        def _read_chunked(self) -> bytes:
            out = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()

        do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = _serve

    return Handler


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextmanager
def serve(socket_path: Path, api_version: str | None = "1.41") -> Iterator[FakeDaemon]:
    daemon = FakeDaemon(socket_path, api_version)
    server = _Server(str(socket_path), _handler(daemon))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield daemon
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def trace_calls(name: str) -> list[dict[str, Any]]:
    """The recorded calls of one trace (``03-images``)."""
    path = TRACES / name / "docker.calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def trace_stdout(name: str) -> str:
    """What docker printed on stdout for the trace's command."""
    text = (TRACES / name / "command.txt").read_text()
    return text.split("# --- stdout\n", 1)[1].split("# --- stderr", 1)[0]


def trace_answer(name: str, method: str, path_suffix: str) -> Canned:
    """The daemon's answer to the first call of ``method`` on a path ending with ``path_suffix``."""
    for call in trace_calls(name):
        if call["method"] == method and call["path"].endswith(path_suffix):
            body = call["resp_body"]
            if isinstance(body, dict) and "json_stream_lines" in body:
                return Canned(call["status"], "\n".join(body["json_stream_lines"]).encode())
            if isinstance(body, dict) and "binary" in body:
                raise ValueError("binary bodies are not stored in the trace")
            return Canned(call["status"], b"" if body is None else json.dumps(body).encode())
    raise KeyError(f"{name}: no {method} ...{path_suffix}")
