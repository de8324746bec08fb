"""The messages between the engine and a monitor on ``shim.sock``; plain code, no I/O.

Each message is one JSON object on one line. A client sends a request, the monitor answers one response.
Fields in brackets are optional; ``exec`` names an exec'd process (by the id given to the ``exec`` op)
instead of the container's own process:

    {"op": "state", ["exec": id]}       -> {"ok": true, "status": S, "pid": 123, "exit": null | {...}}
                                           S: "created" (deferred start, not started yet), "running",
                                           "stopped" (the container) / "exited" (an exec'd process)
    {"op": "wait", ["exec": id]}        -> {"ok": true, "exit_code": 3, "signal": 0, "finished_at": ...,
                                           "oom_killed": false (container only)}, once it has exited
    {"op": "signal", "signal": 15, ["exec": id]}             -> {"ok": true}
    {"op": "resize", "width": 80, "height": 24, ["exec": id]} -> {"ok": true} (error without a tty)
    {"op": "start"}                     -> {"ok": true} once ``<runtime> start`` has returned
                                           (only for a monitor spawned with deferred_start)
    {"op": "attach", "stdin": true, "stdout": true, "stderr": true}
                                        -> {"ok": true, "tty": false}, then raw bytes
    {"op": "exec", "id": "e1", "process": "/path/process.json", "tty": false, "stdin": true,
     "stdout": true, "stderr": true, "detach": false}
                                        -> {"ok": true, "pid": 456, "tty": false}, then raw bytes
                                           unless detach

After an attach or a non-detached exec response the connection stops carrying lines: the monitor sends the
process's output as stdcopy frames (ketch.spec.stdcopy), or raw bytes for a tty, and whatever the client
sends goes to the process's stdin. What a half-close (or a disconnect) of a client that asked for stdin means
follows Docker: see docs/shim.md. A failed request gets ``{"ok": false, "error": "...", "kind": K}`` where K
names the ketch.common.errors class (``NotFound``, ``Conflict``, ``InvalidArgument``, ...).
"""

from __future__ import annotations

from ketch.common import fastjson
from ketch.common.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "EXEC_ID_CHARS",
    "MAX_LINE",
    "OPS",
    "OPTIONAL",
    "LineReader",
    "decode",
    "encode",
    "error",
    "ok",
    "request",
    "validate_exec_id",
]

MAX_LINE = 64 * 1024
OPS: dict[str, dict[str, type]] = {
    "state": {},
    "wait": {},
    "signal": {"signal": int},
    "resize": {"width": int, "height": int},
    "start": {},
    "attach": {"stdin": bool, "stdout": bool, "stderr": bool},
    "exec": {
        "id": str,
        "process": str,
        "tty": bool,
        "stdin": bool,
        "stdout": bool,
        "stderr": bool,
        "detach": bool,
    },
}
# Fields an op may carry; absent means "the container's own process".
OPTIONAL: dict[str, dict[str, type]] = {
    "state": {"exec": str},
    "wait": {"exec": str},
    "signal": {"exec": str},
    "resize": {"exec": str},
}
EXEC_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
MAX_EXEC_ID = 128


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


def _check(op: str, name: str, kind: type, value: object) -> None:
    # bool is an int in Python; a signal or size given as true/false is still wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidArgument(f"shim op {op!r}: field {name!r} must be {kind.__name__}, not {value!r}")


def validate_exec_id(exec_id: str) -> str:
    """Exec ids name files in the state directory (``exec-<id>.json``): no slashes, no dot-only names."""
    if (
        not exec_id
        or len(exec_id) > MAX_EXEC_ID
        or not set(exec_id) <= EXEC_ID_CHARS
        or not exec_id.strip(".")
    ):
        raise InvalidArgument(
            f"exec id {exec_id!r} must be 1 to {MAX_EXEC_ID} of [A-Za-z0-9_.-], and not only dots"
        )
    return exec_id


def validate_request(message: dict[str, Any]) -> dict[str, Any]:
    op = message.get("op")
    if op not in OPS:
        raise InvalidArgument(f"unknown shim op {op!r} (known: {', '.join(sorted(OPS))})")
    for name, kind in OPS[op].items():
        _check(op, name, kind, message.get(name))
    for name, kind in OPTIONAL.get(op, {}).items():
        if name in message:
            _check(op, name, kind, message[name])
    if op == "exec":
        validate_exec_id(message["id"])
    if "exec" in message and op in OPTIONAL:
        validate_exec_id(message["exec"])
    if op == "resize" and not (0 < message["width"] < 65536 and 0 < message["height"] < 65536):
        raise InvalidArgument(f"shim op 'resize': {message['width']}x{message['height']} is not a size")
    return message


def ok(**fields: Any) -> bytes:
    return encode({"ok": True, **fields})


def error(message: str, kind: str = "SystemFailure") -> bytes:
    return encode({"ok": False, "error": message, "kind": kind})


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
