"""common.digest: the digest grammar and the hashing helpers."""

from __future__ import annotations

import hashlib
import io

import pytest

from ketch.common.digest import (
    Hasher,
    digest_bytes,
    digest_stream,
    hex_of,
    is_digest,
    parse_digest,
    validate_digest,
)
from ketch.common.errors import InvalidArgument

EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_parse_valid_sha256_and_sha512() -> None:
    assert parse_digest(EMPTY) == ("sha256", EMPTY[7:])
    long = "sha512:" + "ab" * 64
    assert parse_digest(long) == ("sha512", "ab" * 64)
    assert validate_digest(EMPTY) == EMPTY
    assert hex_of(EMPTY) == EMPTY[7:]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "expected <algorithm>:<hex>"),
        ("sha256", "expected <algorithm>:<hex>"),
        (":" + "a" * 64, "expected <algorithm>:<hex>"),
        ("sha256:", "expected <algorithm>:<hex>"),
        ("SHA256:" + "a" * 64, "expected <algorithm>:<hex>"),
        ("sha256:" + "A" * 64, "64 lowercase hex"),
        ("sha256:" + "a" * 63, "64 lowercase hex"),
        ("sha256:" + "g" * 64, "64 lowercase hex"),
        ("sha512:" + "a" * 64, "128 lowercase hex"),
        ("md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
        ("sha256+b64:abc", "unsupported digest algorithm"),
        ("sha256..x:abc", "expected <algorithm>:<hex>"),
    ],
)
def test_parse_rejects_with_a_precise_message(value: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_digest(value)
    assert fragment in str(info.value)
    assert repr(value) in str(info.value)
    assert not is_digest(value)


def test_digest_bytes_and_stream_agree_with_hashlib() -> None:
    data = bytes(range(256)) * 10_000
    expected = "sha256:" + hashlib.sha256(data).hexdigest()
    assert digest_bytes(data) == expected
    assert digest_stream(io.BytesIO(data)) == (expected, len(data))
    assert digest_stream(io.BytesIO(data), limit=10) == (digest_bytes(data[:10]), 10)
    assert digest_bytes(b"") == EMPTY


def test_hasher_counts_and_copies() -> None:
    h = Hasher()
    h.update(b"abc")
    snapshot = h.copy()
    h.update(b"def")
    assert (h.digest, h.size) == (digest_bytes(b"abcdef"), 6)
    assert (snapshot.digest, snapshot.size) == (digest_bytes(b"abc"), 3)
