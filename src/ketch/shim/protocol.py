"""The messages between the engine and a monitor on ``shim.sock``; plain code, no I/O.

Each message is one JSON object on one line. A client sends a request, the monitor answers one response:

    {"op": "state"}                                  -> {"ok": true, "status": "running", "pid": 123, ...}
    {"op": "wait"}                                   -> {"ok": true, "exit_code": 3, "signal": 0, ...}
                                                        (sent once the container has exited)
    {"op": "signal", "signal": 15}                   -> {"ok": true}
    {"op": "resize", "width": 80, "height": 24}      -> {"ok": true}
    {"op": "attach", "stdin": true, "stdout": true, "stderr": true}
                                                     -> {"ok": true, "tty": false}, then raw bytes

After an attach response the connection stops carrying lines: the monitor sends the container's output as
stdcopy frames (ketch.spec.stdcopy), or raw bytes for a tty, and whatever the client sends goes to the
container's stdin; the client half-closes to close stdin. A failed request gets ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

from ketch.common import fastjson
from ketch.common.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MAX_LINE", "OPS", "LineReader", "decode", "encode", "error", "ok", "request"]

MAX_LINE = 64 * 1024
OPS: dict[str, dict[str, type]] = {
    "state": {},
    "wait": {},
    "signal": {"signal": int},
    "resize": {"width": int, "height": int},
    "attach": {"stdin": bool, "stdout": bool, "stderr": bool},
}


def encode(message: dict[str, Any]) -> bytes:
    return fastjson.dumps(message).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = fastjson.loads(line)
    except ValueError as exc:
        raise InvalidArgument(f"shim message is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise InvalidArgument(f"shim message must be a JSON object, not {type(message).__name__}")
    return message


def request(op: str, **fields: Any) -> bytes:
    """A request line, checked against OPS so a client cannot send what the monitor will refuse."""
    message = {"op": op, **fields}
    validate_request(message)
    return encode(message)


def validate_request(message: dict[str, Any]) -> dict[str, Any]:
    op = message.get("op")
    if op not in OPS:
        raise InvalidArgument(f"unknown shim op {op!r} (known: {', '.join(sorted(OPS))})")
    for name, kind in OPS[op].items():
        value = message.get(name)
        # bool is an int in Python; a signal or size given as true/false is still wrong.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InvalidArgument(f"shim op {op!r}: field {name!r} must be {kind.__name__}, not {value!r}")
    return message


def ok(**fields: Any) -> bytes:
    return encode({"ok": True, **fields})


def error(message: str) -> bytes:
    return encode({"ok": False, "error": message})


class LineReader:
    """Collects bytes into lines; :meth:`feed` returns the whole lines it completes.

    ``rest`` is what follows the last newline: after an attach response, the first raw bytes.
    """

    __slots__ = ("rest",)

    def __init__(self) -> None:
        self.rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        *lines, self.rest = (self.rest + data).split(b"\n")
        if len(self.rest) > MAX_LINE:
            raise InvalidArgument(f"shim message longer than {MAX_LINE} bytes")
        return lines

    def take_one(self, data: bytes) -> bytes | None:
        """The first whole line, leaving everything after it in ``rest``."""
        self.rest += data
        line, sep, rest = self.rest.partition(b"\n")
        if not sep:
            if len(self.rest) > MAX_LINE:
                raise InvalidArgument(f"shim message longer than {MAX_LINE} bytes")
            return None
        self.rest = rest
        return line
