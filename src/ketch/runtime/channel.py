"""The sync channel between the runtime and the processes it forks (one JSON object per line).

Two pipes, because both sides talk. A closed pipe means the other side is gone: the runtime treats that
as a failed create, and a container init treats it as "abort", so an interrupted ``create`` never leaves
an init waiting for ever.
"""

from __future__ import annotations

import os

from ketch.common import fastjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Channel"]


class Channel:
    __slots__ = ("_buf", "_child_fds", "_read_fd", "_write_fd")

    def __init__(self) -> None:
        down_r, down_w = os.pipe()  # runtime -> child
        up_r, up_w = os.pipe()  # child -> runtime
        self._read_fd, self._write_fd = up_r, down_w
        self._child_fds = (down_r, up_w)
        self._buf = b""

    def become_child(self) -> None:
        """Called in the forked process: swap to the child's ends and close the parent's."""
        os.close(self._read_fd)
        os.close(self._write_fd)
        self._read_fd, self._write_fd = self._child_fds
        self._child_fds = (-1, -1)

    def close_child_ends(self) -> None:
        for fd in self._child_fds:
            if fd >= 0:
                os.close(fd)
        self._child_fds = (-1, -1)

    def send(self, kind: str, **fields: Any) -> None:
        fields["type"] = kind
        data = (fastjson.dumps(fields) + "\n").encode()
        try:
            while data:
                data = data[os.write(self._write_fd, data) :]
        except BrokenPipeError:
            pass  # the reader is gone; it will notice on its side

    def recv(self) -> dict[str, Any]:
        """The next message; ``{"type": "eof"}`` once the other side has closed."""
        while b"\n" not in self._buf:
            chunk = os.read(self._read_fd, 65536)
            if not chunk:
                return {"type": "eof"}
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        message: dict[str, Any] = fastjson.loads(line)
        return message

    def expect(self, kind: str) -> dict[str, Any]:
        message = self.recv()
        if message["type"] != kind:
            raise EOFError(f"expected {kind!r} from the runtime, got {message['type']!r}")
        return message

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd, *self._child_fds):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._read_fd = self._write_fd = -1
        self._child_fds = (-1, -1)

    def fds(self) -> tuple[int, ...]:
        return tuple(fd for fd in (self._read_fd, self._write_fd, *self._child_fds) if fd >= 0)
