"""HTTP/1.1 to the engine over a unix socket or TCP, with API version negotiation as the docker CLI does it.

The daemon's errors (``{"message": ...}`` with a 4xx/5xx status) become :mod:`ketch.common.errors` by status,
so callers catch ``NotFound`` or ``Conflict`` whether ketchd or dockerd answered.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Union
from urllib.parse import quote, urlencode

from ketch.common import errors, fastjson
from ketch.spec.engine_api import API_VERSION, negotiate

if TYPE_CHECKING:
    from ketch.client.hijack import Hijacked

__all__ = [
    "DEFAULT_HOST",
    "Connection",
    "DaemonError",
    "DaemonUnreachable",
    "FromDaemon",
    "Keep",
    "ObjectNotFound",
    "Pending",
    "Response",
    "encode_query",
    "parse_host",
]

DEFAULT_HOST = "unix:///run/ketch/ketch.sock"
USER_AGENT = "ketch-client/0.1"
QueryValue = Union[str, int, bool, None, "Keep", list[Union[str, "Keep"]]]
Query = Mapping[str, QueryValue]


class FromDaemon(errors.KetchError):
    """An error answer from the daemon (the CLI prefixes these with "Error response from daemon: ")."""


class DaemonError(FromDaemon):
    """A status the error categories do not name (500 and the like); keeps it for the caller."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status_code = status


class DaemonNotModified(FromDaemon, errors.NotModified):
    pass


class DaemonInvalidArgument(FromDaemon, errors.InvalidArgument):
    pass


class DaemonUnauthorized(FromDaemon, errors.Unauthorized):
    pass


class DaemonForbidden(FromDaemon, errors.Forbidden):
    pass


class DaemonNotFound(FromDaemon, errors.NotFound):
    pass


class DaemonConflict(FromDaemon, errors.Conflict):
    pass


class DaemonUnsupported(FromDaemon, errors.Unsupported):
    pass


class DaemonUnavailable(FromDaemon, errors.Unavailable):
    pass


_BY_STATUS: dict[int, type[FromDaemon]] = {
    304: DaemonNotModified,
    400: DaemonInvalidArgument,
    401: DaemonUnauthorized,
    403: DaemonForbidden,
    404: DaemonNotFound,
    409: DaemonConflict,
    501: DaemonUnsupported,
    503: DaemonUnavailable,
}


class ObjectNotFound(errors.NotFound):
    """A 404 the docker client words itself: ``Error: No such container: x`` (no daemon prefix)."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"Error: No such {kind}: {name}")
        self.kind = kind
        self.name = name


class DaemonUnreachable(errors.Unavailable):
    """Nothing answers at the host: the socket is missing or refuses connections."""

    def __init__(self, host: str, cause: OSError) -> None:
        super().__init__(f"Cannot connect to the ketch daemon at {host}. Is the ketch daemon running?")
        self.host = host
        self.cause = cause


def parse_host(host: str) -> tuple[str, str]:
    """``unix:///path`` -> ("unix", "/path"); ``tcp://h:p`` or ``http://h:p`` -> ("tcp", "h:p")."""
    scheme, sep, rest = host.partition("://")
    if not sep:
        raise errors.InvalidArgument(f"invalid host {host!r}: expected unix:///path or tcp://host:port")
    if scheme == "unix":
        if not rest.startswith("/"):
            raise errors.InvalidArgument(f"invalid host {host!r}: the socket path must be absolute")
        return "unix", rest
    if scheme in ("tcp", "http"):
        address = rest.rstrip("/")
        if not address:
            raise errors.InvalidArgument(f"invalid host {host!r}: no address")
        return "tcp", address if ":" in address else address + ":2375"
    raise errors.InvalidArgument(f"invalid host {host!r}: unsupported protocol {scheme!r}")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if self.timeout is not None:
                sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Response:
    """A response whose body has not been read yet; close it (or use ``with``) when done."""

    def __init__(self, conn: http.client.HTTPConnection, raw: http.client.HTTPResponse) -> None:
        self._conn = conn
        self.raw = raw
        self.status = raw.status
        self.headers = raw.headers

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.raw.close()
        self._conn.close()

    def read(self) -> bytes:
        try:
            return self.raw.read()
        finally:
            self.close()

    def json(self) -> Any:
        body = self.read()
        return fastjson.loads(body.decode()) if body.strip() else None

    def chunks(self, size: int = 65536) -> Iterator[bytes]:
        try:
            while chunk := self.raw.read1(size):
                yield chunk
        finally:
            self.close()

    def json_stream(self) -> Iterator[dict[str, Any]]:
        """The objects of a JSON-lines progress stream, as they arrive (separators may be \\r\\n or nothing)."""
        import json

        decoder = json.JSONDecoder()
        buffer = ""
        for chunk in self.chunks():
            buffer += chunk.decode()
            while True:
                buffer = buffer.lstrip(" \t\r\n")
                if not buffer:
                    break
                try:
                    value, end = decoder.raw_decode(buffer)
                except ValueError:
                    break  # incomplete: wait for more bytes
                buffer = buffer[end:]
                if isinstance(value, dict):
                    yield value
        if buffer.strip():
            raise errors.KetchError(f"malformed JSON in the daemon's stream: {buffer[:80]!r}")


def error_from(status: int, body: bytes) -> FromDaemon:
    """The ketch error for a daemon's error answer (docker's JSON ``message``, or the plain text)."""
    text = body.decode(errors="replace").strip()
    message = text
    if text.startswith("{"):
        try:
            decoded = fastjson.loads(text)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
            message = decoded["message"]
    if not message:
        message = http.client.responses.get(status, f"status {status}")
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls(message)
    return DaemonError(message, status)


class Connection:
    """Requests to one daemon; negotiates the API version on first use unless ``version`` is given."""

    def __init__(
        self, host: str = DEFAULT_HOST, *, version: str | None = None, timeout: float | None = None
    ) -> None:
        self.host = host
        self.kind, self.address = parse_host(host)
        self.timeout = timeout
        self._version = version

    def _connect(self) -> http.client.HTTPConnection:
        if self.kind == "unix":
            return _UnixConnection(self.address, self.timeout)
        hostname, _, port = self.address.rpartition(":")
        return http.client.HTTPConnection(hostname, int(port), timeout=self.timeout)

    def _send(
        self,
        method: str,
        path: str,
        body: bytes | IO[bytes] | None,
        headers: Mapping[str, str],
    ) -> Response:
        return self._receive(self._begin(method, path, body, headers))

    def _begin(
        self,
        method: str,
        path: str,
        body: bytes | IO[bytes] | None,
        headers: Mapping[str, str],
    ) -> http.client.HTTPConnection:
        """Connect and send the request; the answer is read by :meth:`_receive`."""
        conn = self._connect()
        all_headers = {"User-Agent": USER_AGENT, **headers}
        if self.kind == "unix":
            all_headers.setdefault("Host", "docker")
        chunked = body is not None and not isinstance(body, bytes) and "Content-Length" not in all_headers
        with self._errors(conn):
            conn.request(method, path, body=body, headers=all_headers, encode_chunked=chunked)
        return conn

    def _receive(self, conn: http.client.HTTPConnection) -> Response:
        with self._errors(conn):
            raw = conn.getresponse()
        return Response(conn, raw)

    @contextmanager
    def _errors(self, conn: http.client.HTTPConnection | socket.socket | None) -> Iterator[None]:
        """Map connection failures to ketch errors, closing ``conn``."""
        try:
            yield
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            _close(conn)
            raise DaemonUnreachable(self.host, exc) from None
        except PermissionError:
            _close(conn)
            raise errors.Forbidden(
                f"Got permission denied while trying to connect to the ketch daemon socket at {self.host}"
            ) from None
        except OSError as exc:
            _close(conn)
            raise errors.Unavailable(f"error during connect to {self.host}: {exc}") from None
        except http.client.HTTPException as exc:
            _close(conn)
            raise errors.Unavailable(f"bad answer from {self.host}: {exc!r}") from None

    def ping(self) -> Response:
        """HEAD /_ping, falling back to GET when HEAD fails, as the docker CLI does; the body is read."""
        response = self._send("HEAD", "/_ping", None, {})
        response.read()
        if response.status not in (200, 500):
            response = self._send("GET", "/_ping", None, {})
            response.read()
        return response

    def adopt(self, ping: Response) -> None:
        """Take the API version from a ``/_ping`` answer already in hand, saving a second round trip."""
        if self._version is None:
            self._version = negotiate(ping.headers.get("Api-Version"), API_VERSION)

    @property
    def version(self) -> str:
        """The negotiated API version: the daemon's ``Api-Version`` capped at ours, 1.24 when it names none."""
        if self._version is None:
            self.adopt(self.ping())
        assert self._version is not None
        return self._version

    def _target(self, path: str, query: Query | None) -> str:
        target = f"/v{self.version}{path}"
        params = encode_query(query or {})
        return f"{target}?{params}" if params else target

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: bytes | IO[bytes] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send a versioned request; a 4xx/5xx answer is raised as a ketch error."""
        return self.begin(method, path, query=query, body=body, json_body=json_body, headers=headers).result()

    def begin(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: bytes | IO[bytes] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Pending:
        """Send a request now and read its answer later (``wait`` is sent before ``start``, as docker does)."""
        all_headers = dict(headers or {})
        if json_body is not None:
            body = fastjson.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        return Pending(self, self._begin(method, self._target(path, query), body, all_headers))

    def hijack(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        json_body: Any = None,
    ) -> Hijacked:
        """Send a request that asks to leave HTTP (attach, exec start) and return the raw stream.

        The daemon answers ``101 UPGRADED`` (or ``200 OK``) and from then on the socket carries the
        container's streams; an error status is raised as a ketch error as for any request.
        """
        from ketch.client.hijack import Hijacked, read_head

        body = b"" if json_body is None else fastjson.dumps(json_body).encode()
        content_type = "text/plain" if json_body is None else "application/json"
        host = "docker" if self.kind == "unix" else self.address
        head = (
            f"{method} {self._target(path, query)} HTTP/1.1\r\n"
            f"Host: {host}\r\nUser-Agent: {USER_AGENT}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: Upgrade\r\nContent-Type: {content_type}\r\nUpgrade: tcp\r\n\r\n"
        )
        sock = self._socket()
        with self._errors(sock):
            if self.kind == "unix":
                sock.connect(self.address)
            else:
                hostname, _, port = self.address.rpartition(":")
                sock.connect((hostname, int(port)))
            sock.sendall(head.encode("latin-1") + body)
            status, headers, rest = read_head(sock)
        if status in (101, 200):
            return Hijacked(sock, rest, headers)
        try:
            with self._errors(sock):
                from ketch.client.hijack import read_body

                error_body = read_body(sock, headers, rest)
        finally:
            sock.close()
        raise error_from(status, error_body)

    def _socket(self) -> socket.socket:
        family = socket.AF_UNIX if self.kind == "unix" else socket.AF_INET
        if self.kind == "tcp" and self.address.startswith("["):
            family = socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_STREAM)
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        return sock


class Pending:
    """A request already sent whose answer is read when needed."""

    def __init__(self, owner: Connection, conn: http.client.HTTPConnection) -> None:
        self._owner = owner
        self._conn = conn
        self._response: Response | None = None

    def ready(self) -> Pending:
        """Block until the answer's headers arrive (for ``wait``: the daemon is now watching the container)."""
        if self._response is None:
            self._response = self._owner._receive(self._conn)
        return self

    def result(self) -> Response:
        """The answer (blocking until its headers arrive); a 4xx/5xx answer is raised as a ketch error."""
        response = self.ready()._response
        assert response is not None
        if response.status >= 400:
            raise error_from(response.status, response.read())
        return response

    def close(self) -> None:
        """Abandon the request: the daemon sees the connection close."""
        if self._response is not None:
            self._response.close()
        self._conn.close()


def _close(conn: http.client.HTTPConnection | socket.socket | None) -> None:
    if conn is not None:
        conn.close()


def encode_query(query: Query) -> str:
    """Go's ``url.Values.Encode``: keys sorted, a list value repeats its key. ``None`` and ``False`` are left
    out, and so is ``""`` unless wrapped in :class:`Keep` (docker sends ``repo=&tag=`` for commit and import)."""
    pairs: list[tuple[str, str]] = []
    for key in sorted(query):
        value = query[key]
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Keep):
                pairs.append((key, item.value))
            elif item is None or item is False or item == "":
                continue
            else:
                pairs.append((key, "1" if item is True else str(item)))
    return urlencode(pairs)


class Keep:
    """A query value sent even when empty."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value


def quote_path(name: str) -> str:
    """A name (``host:5000/a/b:tag``) as a path segment: slashes and colons kept, as the docker client sends."""
    return quote(name, safe="/:@")
