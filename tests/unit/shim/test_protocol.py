from __future__ import annotations

import json

import pytest

from ketch.common.errors import InvalidArgument
from ketch.shim import protocol


def test_request_is_one_json_line() -> None:
    line = protocol.request("signal", signal=15)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"op": "signal", "signal": 15}
    assert protocol.validate_request(protocol.decode(line[:-1]))["signal"] == 15


@pytest.mark.parametrize(
    ("op", "fields", "match"),
    [
        ("exec", {}, "unknown shim op 'exec'"),
        ("signal", {}, "'signal' must be int"),
        ("signal", {"signal": True}, "'signal' must be int"),
        ("resize", {"width": 80, "height": "24"}, "'height' must be int"),
        ("attach", {"stdin": 1, "stdout": True, "stderr": True}, "'stdin' must be bool"),
    ],
)
def test_bad_requests(op: str, fields: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        protocol.request(op, **fields)


@pytest.mark.parametrize("line", [b"not json", b"[1]", b'"op"'])
def test_decode_rejects(line: bytes) -> None:
    with pytest.raises(InvalidArgument):
        protocol.decode(line)


def test_responses() -> None:
    assert json.loads(protocol.ok(exit_code=3)) == {"ok": True, "exit_code": 3}
    assert json.loads(protocol.error("gone")) == {"ok": False, "error": "gone"}


def test_line_reader_in_chunks() -> None:
    reader = protocol.LineReader()
    assert reader.feed(b'{"op":') == []
    assert reader.feed(b'"wait"}\n{"op"') == [b'{"op":"wait"}']
    assert reader.rest == b'{"op"'


def test_take_one_leaves_raw_bytes_after_attach() -> None:
    reader = protocol.LineReader()
    assert reader.take_one(b'{"op":"attach"') is None
    assert reader.take_one(b"}\nraw stdin\nmore") == b'{"op":"attach"}'
    assert reader.rest == b"raw stdin\nmore"


def test_overlong_line() -> None:
    with pytest.raises(InvalidArgument, match="longer than"):
        protocol.LineReader().take_one(b"x" * (protocol.MAX_LINE + 1))
