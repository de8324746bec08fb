"""Reading layer blobs: compression detected from the first bytes (gzip, zstd or none), decompressed as a
stream, and hashed as it is read (the diff ID is the digest of the uncompressed tar)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, BinaryIO

from ketch.common.digest import Hasher
from ketch.common.errors import Unsupported

if TYPE_CHECKING:
    from typing import Protocol

    from _typeshed import WriteableBuffer

__all__ = ["HashingReader", "decompressed", "detect_compression"]

_CHUNK = 1 << 20


def detect_compression(head: bytes) -> str:
    """Name the compression of a layer from its first bytes: "gzip", "zstd" or "none"."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"\xfd7zXZ\x00"):
        raise Unsupported("xz-compressed layers are not supported (OCI layers are tar, gzip or zstd)")
    if head.startswith(b"BZh"):
        raise Unsupported("bzip2-compressed layers are not supported (OCI layers are tar, gzip or zstd)")
    return "none"


class _Prefixed(io.RawIOBase):
    """A raw reader that returns ``head`` and then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        out = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(out), len(self._head))
            out[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(out))
        out[: len(data)] = data
        return len(data)


class HashingReader:
    """Counts and hashes what passes through, so the diff ID is computed while unpacking."""

    def __init__(self, stream: _Readable) -> None:
        self._stream = stream
        self.hasher = Hasher()

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.hasher.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


if TYPE_CHECKING:
    from typing import Protocol

    class _Readable(Protocol):
        def read(self, n: int = ..., /) -> bytes: ...


def decompressed(stream: BinaryIO) -> tuple[_Readable, str]:
    """Wrap ``stream`` in the decompressor its magic bytes call for; return (reader, compression)."""
    head = b""
    while len(head) < 6:
        chunk = stream.read(6 - len(head))
        if not chunk:
            break
        head += chunk
    compression = detect_compression(head)
    raw = io.BufferedReader(_Prefixed(head, stream), _CHUNK)
    if compression == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb"), compression
    if compression == "zstd":
        return _ZstdReader(raw), compression
    return raw, compression


class _ZstdReader:
    """Decompress concatenated zstd frames; a stream that ends inside a frame raises EOFError.

    zstandard's stream_reader returns a short read at a truncated frame instead of failing, which would let
    a truncated layer pass for a shorter one. Input goes in small pieces so that a frame of highly
    compressible data cannot expand into an unbounded buffer at once.
    """

    _FEED = 4096

    def __init__(self, raw: BinaryIO) -> None:
        import zstandard

        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._in_frame = False
        self._buf = b""
        self._pos = 0

    def _fill(self) -> bool:
        chunk = self._raw.read(self._FEED)
        if not chunk:
            if self._in_frame:
                raise EOFError("zstd stream ends inside a frame")
            return False
        out = []
        while chunk:
            self._in_frame = True
            out.append(self._obj.decompress(chunk))
            if not self._obj.eof:
                break
            chunk = self._obj.unused_data
            self._obj = self._dctx.decompressobj()
            self._in_frame = False
        self._buf, self._pos = b"".join(out), 0
        return True

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = [self._buf[self._pos :]]
            while self._fill():
                parts.append(self._buf)
            self._buf, self._pos = b"", 0
            return b"".join(parts)
        while self._pos >= len(self._buf):
            if not self._fill():
                return b""
        data = self._buf[self._pos : self._pos + n]
        self._pos += len(data)
        return data
