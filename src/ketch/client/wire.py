"""HTTP/1.1 on a raw unix socket: what the CLI needs of it, without :mod:`http.client`.

``http.client`` pulls in ``email`` and ``ssl`` (~25 ms here), more than a short command spends on the rest of
its work. This module speaks the protocol on ``_socket`` itself: requests with ``Content-Length`` or chunked
bodies, answers framed by ``Content-Length``, chunked encoding or the end of the connection, and keep-alive
connections kept in a :class:`Pool`, so consecutive calls (``_ping``, ``create``, ``start``) share one.

A request on a kept connection that the daemon closed meanwhile (it went idle too long) is sent again once on
a new connection, as Go's client does, when nothing of the answer had arrived and the body can be sent again.
"""

from __future__ import annotations

import _socket

from ketch.common import errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import IO

__all__ = ["HEAD_LIMIT", "Answer", "BadAnswer", "Exchange", "Headers", "Pool", "Wire", "dial", "read_head"]

HEAD_LIMIT = 64 * 1024  # an answer's status line and headers; more is not an HTTP answer we understand
RECV_SIZE = 65536
# Sent with Content-Length: 0 when they carry nothing, as http.client does.
_BODY_METHODS = ("POST", "PUT", "PATCH")


class BadAnswer(errors.Unavailable):
    """What the daemon sent is not (or no longer) an HTTP answer this client can read."""


class _ClosedEarly(BadAnswer):
    """The connection ended before a single byte of the answer: on a kept connection, send again."""


class Headers:
    """An answer's headers: names compared without regard to case; the first of repeated names counts."""

    __slots__ = ("_values",)

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._values: dict[str, str] = {}
        for name, value in pairs:
            self._values.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def items(self) -> list[tuple[str, str]]:
        return list(self._values.items())

    def __repr__(self) -> str:
        return f"Headers({self._values!r})"


def dial(path: str, timeout: float | None) -> _socket.socket:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        if timeout is not None:
            sock.settimeout(timeout)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def request_head(method: str, target: str, headers: Mapping[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise errors.InvalidArgument(f"invalid HTTP header {name!r}: {value!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Wire:
    """A connected socket and the bytes received on it that nobody has consumed yet."""

    __slots__ = ("buffer", "sock")

    def __init__(self, sock: _socket.socket, buffer: bytes = b"") -> None:
        self.sock = sock
        self.buffer = buffer

    def fill(self) -> bool:
        """Receive more into the buffer; False when the daemon has closed its side."""
        chunk = self.sock.recv(RECV_SIZE)
        self.buffer += chunk
        return bool(chunk)

    def send(self, head: bytes, body: bytes | IO[bytes] | None, chunked: bool) -> None:
        if body is None or isinstance(body, bytes):
            if body and len(body) > RECV_SIZE:
                self.sock.sendall(head)
                self.sock.sendall(body)
            else:
                self.sock.sendall(head + (body or b""))  # one write: one packet for the daemon to read
            return
        self.sock.sendall(head)
        while block := body.read(RECV_SIZE):
            self.sock.sendall(b"%X\r\n%s\r\n" % (len(block), block) if chunked else block)
        if chunked:
            self.sock.sendall(b"0\r\n\r\n")

    def idle(self) -> bool:
        """A kept connection is usable when nothing is waiting on it (neither bytes nor the daemon's close)."""
        import select

        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def close(self) -> None:
        self.sock.close()


def read_head(wire: Wire) -> tuple[str, int, Headers]:
    """Read an answer's status line and headers (skipping ``100 Continue``); the body stays in the buffer."""
    while True:
        while (end := wire.buffer.find(b"\r\n\r\n")) < 0:
            if len(wire.buffer) > HEAD_LIMIT:
                raise BadAnswer(f"the daemon's answer has no end of headers within {HEAD_LIMIT} bytes")
            if not wire.fill():
                cls = BadAnswer if wire.buffer else _ClosedEarly
                raise cls("the daemon closed the connection without answering")
        head, wire.buffer = wire.buffer[:end], wire.buffer[end + 4 :]
        status_line, *lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise BadAnswer(f"bad status line from the daemon: {status_line[:80]!r}")
        if parts[1] != "100":
            break
    pairs = []
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            pairs.append((name.strip(), value.strip()))
    return parts[0], int(parts[1]), Headers(pairs)


class Answer:
    """An answer's body, read as it arrives; once read to its end the connection goes back to its pool."""

    def __init__(
        self,
        wire: Wire,
        version: str,
        status: int,
        headers: Headers,
        method: str,
        release: Callable[[Wire], None] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self._wire = wire
        self._release = release
        self._keep = version == "HTTP/1.1" and "close" not in (headers.get("connection") or "").lower()
        self._chunked = False
        self._until_close = False
        self._left = 0  # bytes left of the body (or of the current chunk)
        self._in_chunk = False  # a chunk's data was read: its CRLF comes before the next size line
        self._done = False
        length = headers.get("content-length")
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            pass
        elif "chunked" in (headers.get("transfer-encoding") or "").lower():
            self._chunked = True
        elif length is not None and length.strip().isdigit():
            self._left = int(length)
        else:
            self._until_close = True
            self._keep = False
        if not (self._chunked or self._until_close or self._left):
            self._finish()

    def read1(self, size: int = RECV_SIZE) -> bytes:
        """The next bytes of the body (at most ``size``, at least one unless it has ended): ``b""`` at its end."""
        if self._done:
            return b""
        if self._chunked and not self._left and not self._next_chunk():
            return b""
        want = size if self._until_close else min(size, self._left)
        wire = self._wire
        if wire.buffer:
            data, wire.buffer = wire.buffer[:want], wire.buffer[want:]
        else:
            data = wire.sock.recv(min(want, RECV_SIZE))
        if not data:
            if self._until_close:
                self._finish()
                return b""
            self._wire.close()
            self._done = True
            raise BadAnswer("the daemon closed the connection in the middle of an answer")
        if not self._until_close:
            self._left -= len(data)
            if not self._left and not self._chunked:
                self._finish()
        return data

    def read(self) -> bytes:
        parts = []
        while data := self.read1(RECV_SIZE):
            parts.append(data)
        return b"".join(parts)

    def _next_chunk(self) -> bool:
        if self._in_chunk:
            self._line()  # the CRLF after the previous chunk's data
        line = self._line()
        try:
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        except ValueError:
            self.close()
            raise BadAnswer(f"bad chunk size in the daemon's answer: {line[:40]!r}") from None
        if size == 0:
            while self._line():
                pass  # trailers, up to the empty line
            self._finish()
            return False
        self._left = size
        self._in_chunk = True
        return True

    def _line(self) -> bytes:
        wire = self._wire
        while (end := wire.buffer.find(b"\r\n")) < 0:
            if len(wire.buffer) > HEAD_LIMIT or not wire.fill():
                self.close()
                raise BadAnswer("the daemon's chunked answer ended without its last chunk")
        line, wire.buffer = wire.buffer[:end], wire.buffer[end + 2 :]
        return line

    def _finish(self) -> None:
        self._done = True
        if self._keep and self._release is not None:
            self._release(self._wire)
        else:
            self._wire.close()

    def close(self) -> None:
        """Stop reading: an answer not read to its end leaves the connection unusable, so it is closed."""
        if not self._done:
            self._done = True
            self._wire.close()


class Pool:
    """Connections to one unix socket: a request takes an idle kept one, or dials a new one."""

    def __init__(self, path: str, timeout: float | None) -> None:
        self.path = path
        self.timeout = timeout
        self._idle: list[Wire] = []

    def take(self) -> tuple[Wire, bool]:
        while True:
            try:
                wire = self._idle.pop()  # atomic: threads (signal forwarding, parallel rm) share the pool
            except IndexError:
                return Wire(dial(self.path, self.timeout)), False
            if wire.idle():
                return wire, True
            wire.close()

    def give_back(self, wire: Wire) -> None:
        if wire.buffer:
            wire.close()  # bytes nobody asked for: the connection is out of step
        else:
            self._idle.append(wire)

    def send(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | IO[bytes] | None,
        chunked: bool,
    ) -> Exchange:
        all_headers = dict(headers)
        if isinstance(body, bytes):
            all_headers["Content-Length"] = str(len(body))
        elif chunked:
            all_headers["Transfer-Encoding"] = "chunked"
        elif body is None and method in _BODY_METHODS:
            all_headers["Content-Length"] = "0"
        exchange = Exchange(self, method, request_head(method, target, all_headers), body, chunked)
        exchange.send()
        return exchange

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def __del__(self) -> None:
        # Kept connections end with their pool (a test's client, or the command's at exit), quietly.
        self.close()


class Exchange:
    """One request, sent at once; its answer is read by :meth:`receive` (``wait`` is answered late)."""

    def __init__(
        self, pool: Pool, method: str, head: bytes, body: bytes | IO[bytes] | None, chunked: bool
    ) -> None:
        self._pool = pool
        self._method = method
        self._head = head
        self._body = body
        self._chunked = chunked
        self._replayable = body is None or isinstance(body, bytes)
        self._wire: Wire | None = None
        self._reused = False
        self._answer: Answer | None = None

    def send(self) -> None:
        self._wire, self._reused = self._pool.take()
        try:
            self._wire.send(self._head, self._body, self._chunked)
        except OSError:
            self._wire.close()
            if not (self._reused and self._replayable):
                raise
            self._resend()

    def _resend(self) -> None:
        self._wire, self._reused = Wire(dial(self._pool.path, self._pool.timeout)), False
        try:
            self._wire.send(self._head, self._body, self._chunked)
        except BaseException:
            self._wire.close()
            raise

    def receive(self) -> Answer:
        assert self._wire is not None
        try:
            try:
                version, status, headers = read_head(self._wire)
            except (_ClosedEarly, ConnectionResetError):
                if not (self._reused and self._replayable):
                    raise
                self._wire.close()
                self._resend()
                version, status, headers = read_head(self._wire)
        except BaseException:
            self._wire.close()
            raise
        self._answer = Answer(self._wire, version, status, headers, self._method, self._pool.give_back)
        return self._answer

    def close(self) -> None:
        if self._answer is not None:
            self._answer.close()
        elif self._wire is not None:
            self._wire.close()
