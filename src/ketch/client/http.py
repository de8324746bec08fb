"""HTTP/1.1 to the engine over a unix socket or TCP, with API version negotiation as the docker CLI does it.

The daemon's errors (``{"message": ...}`` with a 4xx/5xx status) become :mod:`ketch.common.errors` by status,
so callers catch ``NotFound`` or ``Conflict`` whether ketchd or dockerd answered.

Every command goes through here, so it imports little: unix sockets are spoken to by :mod:`ketch.client.wire`
(raw sockets, kept connections) and only a ``tcp://`` host loads :mod:`http.client` (:mod:`ketch.client.tcp`).
"""

from __future__ import annotations

from ketch.common import errors, fastjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import IO, Any, Protocol

    from ketch.client.hijack import Hijacked
    from ketch.client.wire import Headers, Pool

    class _Answer(Protocol):
        status: int
        headers: Headers

        def read1(self, size: int = ...) -> bytes: ...
        def read(self) -> bytes: ...
        def close(self) -> None: ...

    class _Exchange(Protocol):
        def receive(self) -> _Answer: ...
        def close(self) -> None: ...


__all__ = [
    "API_VERSION",
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
    "negotiate",
    "parse_host",
]

DEFAULT_HOST = "unix:///run/ketch/ketch.sock"
USER_AGENT = "ketch-client/0.1"
# ketch.spec.engine_api's API_VERSION and FALLBACK_API (a unit test keeps them equal): that module imports json
# and re, which a command that only talks to the daemon need not pay for.
API_VERSION = "1.41"
FALLBACK_API = "1.24"


def negotiate(server_version: str | None, client_maximum: str = API_VERSION) -> str:
    """The lower of the daemon's ``Api-Version`` and ours; 1.24 when the daemon names none."""
    if not server_version:
        return FALLBACK_API

    def components(version: str) -> list[int]:
        # moby's versions.compare: a component that is not a number counts as 0, as a missing one does.
        return [int(part) if part.isdigit() else 0 for part in version.split(".")]

    ours, theirs = components(client_maximum), components(server_version)
    width = max(len(ours), len(theirs))
    ours += [0] * (width - len(ours))
    theirs += [0] * (width - len(theirs))
    return server_version if theirs < ours else client_maximum


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


class Response:
    """A response whose body has not been read yet; close it (or use ``with``) when done."""

    def __init__(self, raw: _Answer, host: str = "") -> None:
        self.raw = raw
        self.status = raw.status
        self.headers = raw.headers
        self._host = host

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.raw.close()

    def read(self) -> bytes:
        try:
            return self.raw.read()
        except OSError as exc:
            raise errors.Unavailable(f"error reading from {self._host}: {exc}") from None
        finally:
            self.close()

    def json(self) -> Any:
        body = self.read()
        return fastjson.loads(body.decode()) if body.strip() else None

    def chunks(self, size: int = 65536) -> Iterator[bytes]:
        """The body as it arrives (a log or event stream is shown as soon as the daemon sends it)."""
        try:
            while True:
                try:
                    chunk = self.raw.read1(size)
                except OSError as exc:
                    raise errors.Unavailable(f"error reading from {self._host}: {exc}") from None
                if not chunk:
                    break
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
        from http import HTTPStatus  # only for an error without words: the status's reason phrase

        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = f"status {status}"
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls(message)
    return DaemonError(message, status)


class Connection:
    """Requests to one daemon; negotiates the API version on first use unless ``version`` is given.

    On a unix socket, connections are kept between requests (the daemon sees one connection for a command's
    calls, as with the docker CLI); :meth:`close` ends the idle ones, and so does the process's exit.
    """

    def __init__(
        self, host: str = DEFAULT_HOST, *, version: str | None = None, timeout: float | None = None
    ) -> None:
        self.host = host
        self.kind, self.address = parse_host(host)
        self.timeout = timeout
        self._version = version
        self._pool: Pool | None = None

    def _exchange(
        self,
        method: str,
        target: str,
        body: bytes | IO[bytes] | None,
        headers: Mapping[str, str],
    ) -> _Exchange:
        """Connect (or take a kept connection) and send the request; the answer is read by :meth:`_receive`."""
        all_headers = {"User-Agent": USER_AGENT, **headers}
        chunked = body is not None and not isinstance(body, bytes) and "Content-Length" not in all_headers
        try:
            if self.kind == "unix":
                all_headers.setdefault("Host", "docker")
                if self._pool is None:
                    from ketch.client.wire import Pool

                    self._pool = Pool(self.address, self.timeout)
                return self._pool.send(method, target, all_headers, body, chunked)
            from ketch.client.tcp import TcpExchange

            return TcpExchange(
                self.host, self.address, self.timeout, method, target, all_headers, body, chunked
            )
        except OSError as exc:
            raise self._failure(exc) from None

    def _receive(self, exchange: _Exchange) -> Response:
        try:
            return Response(exchange.receive(), self.host)
        except OSError as exc:
            raise self._failure(exc) from None

    def _send(
        self, method: str, target: str, body: bytes | IO[bytes] | None, headers: Mapping[str, str]
    ) -> Response:
        return self._receive(self._exchange(method, target, body, headers))

    def _failure(self, exc: OSError) -> errors.KetchError:
        """The ketch error for a failure to reach the daemon or to talk to it."""
        if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
            return DaemonUnreachable(self.host, exc)
        if isinstance(exc, PermissionError):
            return errors.Forbidden(
                f"Got permission denied while trying to connect to the ketch daemon socket at {self.host}"
            )
        return errors.Unavailable(f"error during connect to {self.host}: {exc}")

    def close(self) -> None:
        """Close the kept connections (requests after this open new ones)."""
        if self._pool is not None:
            self._pool.close()

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
            body = go_json_body(json_body)
            all_headers["Content-Type"] = "application/json"
        return Pending(self, self._exchange(method, self._target(path, query), body, all_headers))

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
        container's streams; an error status is raised as a ketch error as for any request. The stream gets
        a connection of its own, never a kept one.
        """
        import _socket

        from ketch.client.hijack import Hijacked
        from ketch.client.wire import Answer, Wire, read_head

        body = b"" if json_body is None else go_json_body(json_body)
        content_type = "text/plain" if json_body is None else "application/json"
        host = "docker" if self.kind == "unix" else self.address
        head = (
            f"{method} {self._target(path, query)} HTTP/1.1\r\n"
            f"Host: {host}\r\nUser-Agent: {USER_AGENT}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: Upgrade\r\nContent-Type: {content_type}\r\nUpgrade: tcp\r\n\r\n"
        )
        family = _socket.AF_UNIX if self.kind == "unix" else _socket.AF_INET
        if self.kind == "tcp" and self.address.startswith("["):
            family = _socket.AF_INET6
        sock = _socket.socket(family, _socket.SOCK_STREAM)
        wire = Wire(sock)
        try:
            if self.timeout is not None:
                sock.settimeout(self.timeout)
            if self.kind == "unix":
                sock.connect(self.address)
            else:
                hostname, _, port = self.address.rpartition(":")
                sock.connect((hostname, int(port)))
            sock.sendall(head.encode("latin-1") + body)
            version, status, headers = read_head(wire)
        except OSError as exc:
            sock.close()
            raise self._failure(exc) from None
        except BaseException:
            sock.close()
            raise
        if status in (101, 200):
            return Hijacked(sock, wire.buffer, headers)
        try:
            error_body = Answer(wire, version, status, headers, method).read()
        except OSError as exc:
            raise self._failure(exc) from None
        finally:
            sock.close()
        raise error_from(status, error_body)


class Pending:
    """A request already sent whose answer is read when needed."""

    def __init__(self, owner: Connection, exchange: _Exchange) -> None:
        self._owner = owner
        self._exchange = exchange
        self._response: Response | None = None

    def ready(self) -> Pending:
        """Block until the answer's headers arrive (for ``wait``: the daemon is now watching the container)."""
        if self._response is None:
            self._response = self._owner._receive(self._exchange)
        return self

    def result(self) -> Response:
        """The answer (blocking until its headers arrive); a 4xx/5xx answer is raised as a ketch error."""
        response = self.ready()._response
        assert response is not None
        if response.status >= 400:
            raise error_from(response.status, response.read())
        return response

    def close(self) -> None:
        """Abandon the request: the daemon sees the connection close (unless its answer was read whole)."""
        if self._response is not None:
            self._response.close()
        self._exchange.close()


def encode_query(query: Query) -> str:
    """Go's ``url.Values.Encode``: keys sorted, a list value repeats its key. ``None`` and ``False`` are left
    out, and so is ``""`` unless wrapped in :class:`Keep` (docker sends ``repo=&tag=`` for commit and import)."""
    pairs: list[str] = []
    for key in sorted(query):
        value = query[key]
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Keep):
                text = item.value
            elif item is None or item is False or item == "":
                continue
            else:
                text = "1" if item is True else str(item)
            pairs.append(f"{_percent(key, _FORM)}={_percent(text, _FORM)}")
    return "&".join(pairs)


class Keep:
    """A query value sent even when empty."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value


if TYPE_CHECKING:
    QueryValue = str | int | bool | None | Keep | list[str | Keep]
    Query = Mapping[str, QueryValue]


def _go_encoder() -> Callable[[Any, int], Any]:
    import _json

    def unserialisable(obj: Any) -> Any:
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    # fastjson's compact encoder, but writing non-ASCII characters as they are (Go writes UTF-8)
    encoder: Callable[[Any, int], Any] = _json.make_encoder(
        None, unserialisable, _json.encode_basestring, None, ":", ",", False, False, False
    )
    return encoder


_encode: Callable[[Any, int], Any] | None = None


def go_json_body(value: Any) -> bytes:
    """A request body as the docker client's ``json.NewEncoder(w).Encode(v)`` writes it: compact UTF-8, with <,
    >, &, U+2028 and U+2029 escaped (JSON has them only inside strings, so plain replaces are exact), and a
    newline at the end."""
    global _encode
    if _encode is None:
        _encode = _go_encoder()
    text = "".join(_encode(value, 0))
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):  # fmt: skip
        if raw in text:
            text = text.replace(raw, escaped)
    return (text + "\n").encode()


def quote_path(name: str) -> str:
    """A name (``host:5000/a/b:tag``) as a path segment: slashes and colons kept, as the docker client sends."""
    return _percent(name, _PATH)


# urllib.parse's quote (and quote_plus for forms), which would import re and more: every byte outside
# RFC 3986's unreserved set (and the set's extras) as %XX with capital hex digits; a form's space is "+".
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_PATH = _UNRESERVED | frozenset(b"/:@")
_FORM = _UNRESERVED | frozenset(b" ")


def _percent(text: str, keep: frozenset[int]) -> str:
    data = text.encode()
    if all(byte in keep for byte in data):
        return text.replace(" ", "+") if keep is _FORM else text
    out = []
    for byte in data:
        if byte == 0x20 and keep is _FORM:
            out.append("+")
        elif byte in keep:
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)
