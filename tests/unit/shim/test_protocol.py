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
        ("frobnicate", {}, "unknown shim op 'frobnicate'"),
        ("exec", {}, "'id' must be str"),
        ("wait", {"exec": 3}, "'exec' must be str"),
        ("state", {"exec": "../x"}, "exec id '../x'"),
        ("signal", {"signal": 9, "exec": ".."}, "exec id '..'"),
        ("resize", {"width": 0, "height": 24}, "0x24 is not a size"),
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
    assert json.loads(protocol.error("gone")) == {"ok": False, "error": "gone", "kind": "SystemFailure"}


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


EXEC = {"id": "e1", "process": "/p.json", "tty": False, "stdin": True, "stdout": True, "stderr": False}


def test_exec_request_round_trips() -> None:
    line = protocol.request("exec", **EXEC, detach=False)
    assert protocol.validate_request(protocol.decode(line[:-1])) == {"op": "exec", **EXEC, "detach": False}


@pytest.mark.parametrize("missing", [*EXEC, "detach"])
def test_exec_request_needs_every_field(missing: str) -> None:
    fields = {**EXEC, "detach": True}
    del fields[missing]
    with pytest.raises(InvalidArgument, match=f"'{missing}' must be"):
        protocol.request("exec", **fields)


def test_exec_id_rules() -> None:
    assert protocol.validate_exec_id("a" * 64) == "a" * 64
    for bad in ("", "a/b", "...", "x" * 129, "sp ace"):
        with pytest.raises(InvalidArgument):
            protocol.validate_exec_id(bad)
    with pytest.raises(InvalidArgument, match="exec id 'a/b'"):
        protocol.request("exec", **{**EXEC, "id": "a/b"}, detach=True)


def test_optional_exec_field_and_start() -> None:
    assert json.loads(protocol.request("wait", exec="e1")) == {"op": "wait", "exec": "e1"}
    assert json.loads(protocol.request("resize", width=80, height=24, exec="e1"))["exec"] == "e1"
    assert json.loads(protocol.request("start")) == {"op": "start"}


def test_error_carries_its_kind() -> None:
    assert json.loads(protocol.error("no exec 'x'", "NotFound")) == {
        "ok": False,
        "error": "no exec 'x'",
        "kind": "NotFound",
    }
