"""A blocking client of one monitor's shim.sock, for the engine and for tests."""

from __future__ import annotations

import os
import socket

from ketch.common import fastjson
from ketch.common.errors import NotFound, SystemFailure
from ketch.shim import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ShimClient", "read_exit"]


def read_exit(state_dir: str) -> dict[str, Any]:
    """The exit.json a monitor left, for a container whose monitor is gone."""
    path = os.path.join(state_dir, "exit.json")
    try:
        with open(path, "rb") as f:
            result: dict[str, Any] = fastjson.loads(f.read())
    except FileNotFoundError:
        raise NotFound(f"no monitor answers and no {path}: the container's exit status is lost") from None
    return result


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
        with self._connect() as sock:
            sock.sendall(protocol.request(op, **fields))
            return _response(sock, protocol.LineReader())

    def wait(self) -> dict[str, Any]:
        """Block until the container exits; falls back to exit.json when the monitor has already gone."""
        try:
            return self.call("wait")
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError):
            return read_exit(self.state_dir)

    def attach(self, *, stdin: bool = False, stdout: bool = True, stderr: bool = True) -> socket.socket:
        """A socket carrying stdcopy frames of the container's output; what is sent goes to its stdin."""
        sock = self._connect()
        sock.sendall(protocol.request("attach", stdin=stdin, stdout=stdout, stderr=stderr))
        reader = protocol.LineReader()
        _response(sock, reader)
        if reader.rest:  # output that followed the response in the same read: keep it for the caller
            raise SystemFailure("monitor sent output before the attach response was read")
        return sock


def _response(sock: socket.socket, reader: protocol.LineReader) -> dict[str, Any]:
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
                raise SystemFailure(f"monitor refused: {message.get('error', message)}")
            return message
