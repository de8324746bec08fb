"""Content digests: ``<algorithm>:<encoded>`` as the OCI image spec (descriptor.md) defines them.

Vocabulary: a *digest* is the whole string (``sha256:e3b0...``), its *algorithm* the part before the colon
and its *hex* (the spec's "encoded") the part after. The registered algorithms are validated strictly
(lowercase hex of the right length); a well-formed digest with another algorithm is rejected as
unsupported rather than silently accepted, because nothing here could verify it.
"""

from __future__ import annotations

import hashlib

from ketch.common.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = [
    "SHA256",
    "Hasher",
    "digest_bytes",
    "digest_stream",
    "hex_of",
    "is_digest",
    "parse_digest",
    "validate_digest",
]

SHA256 = "sha256"
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_HEX = frozenset("0123456789abcdef")
_ALG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_ALG_SEPARATORS = frozenset("+._-")
_CHUNK = 1 << 20


def _algorithm_is_wellformed(alg: str) -> bool:
    # algorithm-component ([a-z0-9]+) joined by algorithm-separator ([+._-])
    component = ""
    for ch in alg + "+":
        if ch in _ALG_CHARS:
            component += ch
        elif ch in _ALG_SEPARATORS and component:
            component = ""
        else:
            return False
    return True


def parse_digest(value: str) -> tuple[str, str]:
    """Split and validate a digest; return ``(algorithm, hex)``.

    Raises InvalidArgument naming the value for a malformed digest or an algorithm other than sha256 and
    sha512.
    """
    if not isinstance(value, str):
        raise InvalidArgument(f"invalid digest {value!r}: not a string")
    alg, sep, encoded = value.partition(":")
    if not sep or not alg or not encoded or not _algorithm_is_wellformed(alg):
        raise InvalidArgument(
            f"invalid digest {value!r}: expected <algorithm>:<hex>, such as sha256:<64 hex digits>"
        )
    length = _HEX_LENGTH.get(alg)
    if length is None:
        raise InvalidArgument(f"invalid digest {value!r}: unsupported digest algorithm {alg!r}")
    if len(encoded) != length or not _HEX.issuperset(encoded):
        raise InvalidArgument(f"invalid digest {value!r}: {alg} needs {length} lowercase hex digits")
    return alg, encoded


def validate_digest(value: str) -> str:
    """Return ``value`` unchanged if it is a valid digest, else raise InvalidArgument."""
    parse_digest(value)
    return value


def is_digest(value: str) -> bool:
    try:
        parse_digest(value)
    except InvalidArgument:
        return False
    return True


def hex_of(value: str) -> str:
    """The hex part of a valid digest."""
    return parse_digest(value)[1]


class Hasher:
    """Incremental sha256 that also counts bytes: feed it chunks, read ``digest`` and ``size`` at the end."""

    __slots__ = ("_h", "size")

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)
        self.size += len(data)

    @property
    def hexdigest(self) -> str:
        return self._h.hexdigest()

    @property
    def digest(self) -> str:
        return f"{SHA256}:{self._h.hexdigest()}"

    def copy(self) -> Hasher:
        other = Hasher()
        other._h = self._h.copy()
        other.size = self.size
        return other


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    """``sha256:<hex>`` of ``data``."""
    return f"{SHA256}:{hashlib.sha256(data).hexdigest()}"


def digest_stream(stream: BinaryIO, *, limit: int | None = None) -> tuple[str, int]:
    """Read ``stream`` to its end (or ``limit`` bytes) and return ``(digest, size)``."""
    hasher = Hasher()
    remaining = limit
    while remaining is None or remaining > 0:
        chunk = stream.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
        if not chunk:
            break
        hasher.update(chunk)
        if remaining is not None:
            remaining -= len(chunk)
    return hasher.digest, hasher.size
