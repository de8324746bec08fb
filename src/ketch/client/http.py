"""HTTP/1.1 to the engine over a unix socket or TCP, with API version negotiation as the docker CLI does it.

The daemon's errors (``{"message": ...}`` with a 4xx/5xx status) become :mod:`ketch.common.errors` by status,
so callers catch ``NotFound`` or ``Conflict`` whether ketchd or dockerd answered.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator, Mapping
from typing import IO, Any
from urllib.parse import quote, urlencode

from ketch.common import errors, fastjson
from ketch.spec.engine_api import API_VERSION, negotiate

__all__ = [
    "DEFAULT_HOST",
    "Connection",
    "DaemonError",
    "DaemonUnreachable",
    "FromDaemon",
    "Response",
    "parse_host",
]

DEFAULT_HOST = "unix:///run/ketch/ketch.sock"
USER_AGENT = "ketch-client/0.1"


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
        conn = self._connect()
        all_headers = {"User-Agent": USER_AGENT, **headers}
        if self.kind == "unix":
            all_headers.setdefault("Host", "docker")
        chunked = body is not None and not isinstance(body, bytes) and "Content-Length" not in all_headers
        try:
            conn.request(method, path, body=body, headers=all_headers, encode_chunked=chunked)
            raw = conn.getresponse()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            conn.close()
            raise DaemonUnreachable(self.host, exc) from None
        except PermissionError:
            conn.close()
            raise errors.Forbidden(
                f"Got permission denied while trying to connect to the ketch daemon socket at {self.host}"
            ) from None
        except OSError as exc:
            conn.close()
            raise errors.Unavailable(f"error during connect to {self.host}: {exc}") from None
        except http.client.HTTPException as exc:
            conn.close()
            raise errors.Unavailable(f"bad answer from {self.host}: {exc!r}") from None
        return Response(conn, raw)

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

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool | None] | None = None,
        body: bytes | IO[bytes] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send a versioned request; a 4xx/5xx answer is raised as a ketch error."""
        all_headers = dict(headers or {})
        if json_body is not None:
            body = fastjson.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        target = f"/v{self.version}{path}"
        params = _encode_query(query or {})
        if params:
            target += "?" + params
        response = self._send(method, target, body, all_headers)
        if response.status >= 400:
            raise error_from(response.status, response.read())
        return response


def _encode_query(query: Mapping[str, str | int | bool | None]) -> str:
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        if value is None or value is False or value == "":
            continue
        pairs.append((key, "1" if value is True else str(value)))
    return urlencode(pairs)


def quote_path(name: str) -> str:
    """A name (``host:5000/a/b:tag``) as a path segment: slashes and colons kept, as the docker client sends."""
    return quote(name, safe="/:@")
