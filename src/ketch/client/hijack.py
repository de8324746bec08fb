"""Hijacked connections (attach, exec start) and the demultiplexing of Docker's stdout/stderr frames.

After ``101 UPGRADED`` the socket stops being HTTP: the daemon sends the container's output (raw bytes for a
tty, 8-byte-header frames otherwise, see :mod:`ketch.spec.stdcopy`) and reads its stdin. The client shuts
its write side when its stdin ends (at once when it attaches no stdin); the daemon keeps sending until the
process exits and then closes.
"""

from __future__ import annotations

import _socket

from ketch.client.wire import HEAD_LIMIT, Answer, Headers, Wire
from ketch.client.wire import read_head as wire_read_head
from ketch.common import errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["HEAD_LIMIT", "Hijacked", "StreamError", "demux", "read_body", "read_head"]


class StreamError(errors.KetchError):
    """The daemon reported an error inside a multiplexed stream (stream 3), or the stream was cut short."""


class Hijacked:
    """The raw byte stream of a hijacked connection, starting with any bytes read along with its headers."""

    def __init__(self, sock: _socket.socket, early: bytes, headers: Headers) -> None:
        self.sock = sock
        self.headers = headers
        self._early = early

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type") or ""

    def recv(self, size: int = 65536) -> bytes:
        """The next bytes the daemon sent; ``b""`` once it has closed its side."""
        if self._early:
            data, self._early = self._early[:size], self._early[size:]
            return data
        try:
            return self.sock.recv(size)
        except ConnectionResetError:
            return b""

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        """Half-close: the daemon reads end-of-file on the container's stdin, and may go on writing."""
        try:
            self.sock.shutdown(_socket.SHUT_WR)
        except OSError:
            pass  # already closed by the daemon: nothing left to tell it

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Hijacked:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_head(sock: _socket.socket) -> tuple[int, Headers, bytes]:
    """Read an HTTP answer's status line and headers; returns the status, the headers and whatever bytes
    came after them."""
    wire = Wire(sock)
    _, status, headers = wire_read_head(wire)
    return status, headers, wire.buffer


def read_body(sock: _socket.socket, headers: Headers | dict[str, str], rest: bytes) -> bytes:
    """The body of a (non-upgraded) answer: by Content-Length, chunked, or until the daemon closes."""
    if not isinstance(headers, Headers):
        headers = Headers(headers.items())
    return Answer(_Borrowed(sock, rest), "HTTP/1.1", 200, headers, "GET").read()


class _Borrowed(Wire):
    """The caller's socket: reading a body to its end leaves it open."""

    __slots__ = ()

    def close(self) -> None:
        pass


def demux(
    chunks: Iterable[bytes], stdout: Callable[[bytes], object], stderr: Callable[[bytes], object]
) -> None:
    """Copy a multiplexed stream to ``stdout`` and ``stderr`` (docker's ``stdcopy.StdCopy``).

    A stream-3 frame is the daemon's own error: raised as :class:`StreamError` with docker's wording.
    Stdin frames (stream 0) go to stdout, as StdCopy does. The frames are those of :mod:`ketch.spec.stdcopy`
    (8-byte header: stream, three zero bytes, big-endian length), read here without its ``typing`` import;
    a unit test holds this reader to that module's decoder, error wording included.
    """
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        frames: list[tuple[int, bytes]] = []  # a chunk's whole frames are taken before any is written
        offset = 0
        while len(buffer) - offset >= _HEADER_SIZE:
            stream = buffer[offset]
            if stream > _SYSTEMERR:
                raise StreamError(
                    f"unknown stream {stream} in a multiplexed stream header (0 to 3 are defined)"
                )
            end = offset + _HEADER_SIZE + int.from_bytes(buffer[offset + 4 : offset + _HEADER_SIZE], "big")
            if len(buffer) < end:
                break
            frames.append((stream, bytes(buffer[offset + _HEADER_SIZE : end])))
            offset = end
        del buffer[:offset]
        for stream, payload in frames:
            if stream == _SYSTEMERR:
                raise StreamError(f"error from daemon in stream: {payload.decode(errors='replace')}")
            if payload:
                (stderr if stream == _STDERR else stdout)(payload)
    if buffer:
        detail = "header" if len(buffer) < _HEADER_SIZE else f"{_STREAM_NAMES[buffer[0]]} frame"
        raise StreamError(f"multiplexed stream ended inside a {detail} ({len(buffer)} bytes left over)")


_HEADER_SIZE = 8
_STDERR = 2
_SYSTEMERR = 3
_STREAM_NAMES = ("stdin", "stdout", "stderr", "systemerr")
