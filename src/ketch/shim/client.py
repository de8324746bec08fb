"""A blocking client of one monitor's shim.sock, for the engine and for tests."""

from __future__ import annotations

import os
import socket
from typing import NamedTuple

from ketch.common import errors, fastjson
from ketch.common.errors import NotFound, SystemFailure
from ketch.shim import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Attached", "ShimClient", "error_of_kind", "read_exit", "refusal"]


class Attached(NamedTuple):
    """A connection carrying a process's output (stdcopy frames, or raw bytes when ``tty``) and taking its
    stdin; ``sock`` is None for a detached exec. ``pid`` is 0 for an attach to the container."""

    sock: socket.socket | None
    tty: bool
    pid: int


def read_exit(state_dir: str, exec_id: str | None = None) -> dict[str, Any]:
    """The exit.json (or exec-<id>.json) a monitor left, for a process whose monitor is gone."""
    name = f"exec-{protocol.validate_exec_id(exec_id)}.json" if exec_id is not None else "exit.json"
    path = os.path.join(state_dir, name)
    try:
        with open(path, "rb") as f:
            result: dict[str, Any] = fastjson.loads(f.read())
    except FileNotFoundError:
        raise NotFound(f"no monitor answers and no {path}: the exit status is lost") from None
    return result


def refusal(message: dict[str, Any]) -> errors.KetchError:
    """The typed error for a ``{"ok": false, "error", "kind"}`` answer (SystemFailure for unknown kinds)."""
    return error_of_kind(str(message.get("kind")), str(message.get("error", message)))


def error_of_kind(kind: str, text: str) -> errors.KetchError:
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.KetchError)) or cls is SystemFailure:
        return SystemFailure(text)
    error: errors.KetchError = cls(text)
    return error


class ShimClient:
    def __init__(self, state_dir: str, *, timeout: float | None = None) -> None:
        self.state_dir = state_dir
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(os.path.join(self.state_dir, "shim.sock"))
        except OSError:
            sock.close()
            raise
        return sock

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """One request and its answer; a refusal raises the error class the monitor named."""
        with self._connect() as sock:
            sock.sendall(protocol.request(op, **fields))
            return _response(sock)

    def _exec_field(self, exec_id: str | None) -> dict[str, Any]:
        return {} if exec_id is None else {"exec": exec_id}

    def state(self, exec_id: str | None = None) -> dict[str, Any]:
        return self.call("state", **self._exec_field(exec_id))

    def wait(self, exec_id: str | None = None) -> dict[str, Any]:
        """Block until the container (or exec) has exited and its output is drained; falls back to the exit
        file when the monitor has already gone."""
        try:
            return self.call("wait", **self._exec_field(exec_id))
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError):
            return read_exit(self.state_dir, exec_id)

    def signal(self, signum: int, exec_id: str | None = None) -> None:
        self.call("signal", signal=signum, **self._exec_field(exec_id))

    def resize(self, width: int, height: int, exec_id: str | None = None) -> None:
        self.call("resize", width=width, height=height, **self._exec_field(exec_id))

    def start(self) -> None:
        """Run ``<runtime> start`` in a monitor spawned with ``deferred_start``."""
        self.call("start")

    def _stream(self, op: str, fields: dict[str, Any], *, keep: bool) -> tuple[socket.socket, dict[str, Any]]:
        sock = self._connect()
        try:
            sock.sendall(protocol.request(op, **fields))
            answer = _response(sock)
        except BaseException:
            sock.close()
            raise
        if not keep:
            sock.close()
        return sock, answer

    def attach(self, *, stdin: bool = False, stdout: bool = True, stderr: bool = True) -> socket.socket:
        """A socket carrying the container's output; what is sent goes to its stdin."""
        return self._stream("attach", {"stdin": stdin, "stdout": stdout, "stderr": stderr}, keep=True)[0]

    def attach_stream(self, *, stdin: bool = False, stdout: bool = True, stderr: bool = True) -> Attached:
        """As :meth:`attach`, and whether the stream is raw (tty) or stdcopy frames."""
        sock, answer = self._stream("attach", {"stdin": stdin, "stdout": stdout, "stderr": stderr}, keep=True)
        return Attached(sock, bool(answer.get("tty")), 0)

    def exec(
        self,
        exec_id: str,
        process: str,
        *,
        tty: bool = False,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        detach: bool = False,
    ) -> Attached:
        """Start the OCI process spec at ``process`` (an absolute path) in the container. Unless ``detach``,
        the returned socket carries its output until it has exited and its output is drained."""
        fields = {
            "id": exec_id,
            "process": process,
            "tty": tty,
            "stdin": stdin,
            "stdout": stdout,
            "stderr": stderr,
            "detach": detach,
        }
        sock, answer = self._stream("exec", fields, keep=not detach)
        return Attached(None if detach else sock, bool(answer.get("tty")), int(answer["pid"]))


def _response(sock: socket.socket) -> dict[str, Any]:
    reader = protocol.LineReader()
    while True:
        # Peek, then read only up to the newline: after an attach answer the socket carries raw output,
        # which must stay in the socket for the caller.
        data = sock.recv(4096, socket.MSG_PEEK)
        if not data:
            raise SystemFailure("monitor closed shim.sock without answering")
        end = data.find(b"\n")
        data = sock.recv(end + 1 if end >= 0 else len(data))
        line = reader.take_one(data)
        if line is not None:
            message = protocol.decode(line)
            if not message.get("ok"):
                raise refusal(message)
            return message
