"""Hijacked connections (attach, exec start) and the demultiplexing of Docker's stdout/stderr frames.

After ``101 UPGRADED`` the socket stops being HTTP: the daemon sends the container's output (raw bytes for a
tty, 8-byte-header frames otherwise, see :mod:`ketch.spec.stdcopy`) and reads its stdin. The client shuts
its write side when its stdin ends (at once when it attaches no stdin); the daemon keeps sending until the
process exits and then closes.
"""

from __future__ import annotations

import socket

from ketch.common import errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["HEAD_LIMIT", "Hijacked", "StreamError", "demux", "read_body", "read_head"]

HEAD_LIMIT = 64 * 1024  # an answer's status line and headers; more is not an HTTP answer we understand


class StreamError(errors.KetchError):
    """The daemon reported an error inside a multiplexed stream (stream 3), or the stream was cut short."""


class Hijacked:
    """The raw byte stream of a hijacked connection, starting with any bytes read along with its headers."""

    def __init__(self, sock: socket.socket, early: bytes, headers: dict[str, str]) -> None:
        self.sock = sock
        self.headers = headers
        self._early = early

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

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
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already closed by the daemon: nothing left to tell it

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Hijacked:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read an HTTP answer's status line and headers; returns the status, the headers (lower-case names)
    and whatever bytes came after them."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > HEAD_LIMIT:
            raise errors.Unavailable(f"the daemon's answer has no end of headers within {HEAD_LIMIT} bytes")
        chunk = sock.recv(65536)
        if not chunk:
            raise errors.Unavailable("the daemon closed the connection without answering")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise errors.Unavailable(f"bad status line from the daemon: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, rest


def read_body(sock: socket.socket, headers: dict[str, str], rest: bytes) -> bytes:
    """The body of a (non-upgraded) answer: by Content-Length, chunked, or until the daemon closes."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return _dechunk(sock, rest)
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        wanted = int(length)
        while len(rest) < wanted:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return rest[:wanted]
    while chunk := sock.recv(65536):
        rest += chunk
    return rest


def _dechunk(sock: socket.socket, data: bytes) -> bytes:
    out = b""
    while True:
        while b"\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            data += chunk
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return out
        while len(data) < size + 2:
            chunk = sock.recv(65536)
            if not chunk:
                return out + data[:size]
            data += chunk
        out += data[:size]
        data = data[size + 2 :]


def demux(
    chunks: Iterable[bytes], stdout: Callable[[bytes], object], stderr: Callable[[bytes], object]
) -> None:
    """Copy a multiplexed stream to ``stdout`` and ``stderr`` (docker's ``stdcopy.StdCopy``).

    A stream-3 frame is the daemon's own error: raised as :class:`StreamError` with docker's wording.
    Stdin frames (stream 0) go to stdout, as StdCopy does.
    """
    from ketch.spec import stdcopy

    decoder = stdcopy.Decoder()
    try:
        for chunk in chunks:
            for frame in decoder.feed(chunk):
                if frame.stream == stdcopy.SYSTEMERR:
                    raise StreamError(
                        f"error from daemon in stream: {frame.payload.decode(errors='replace')}"
                    )
                if frame.payload:
                    (stderr if frame.stream == stdcopy.STDERR else stdout)(frame.payload)
        decoder.close()
    except errors.InvalidArgument as exc:
        raise StreamError(str(exc)) from None
