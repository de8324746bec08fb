"""The console socket: how the OCI runtime hands the monitor the pty master of a terminal process.

The runtime opens the pty inside the container and sends the master fd with SCM_RIGHTS over the unix socket
named by ``--console-socket`` before it exits, as runc does for containerd and conmon. The runtime only
connects and sends, so the monitor can listen, run the runtime to completion, then accept.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios

from ketch.common.errors import SystemFailure

__all__ = ["ConsoleSocket", "set_winsize"]


class ConsoleSocket:
    def __init__(self, path: str) -> None:
        self.path = path
        if os.path.lexists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.bind(path)
            self.sock.listen(1)
        except OSError as exc:
            self.sock.close()
            raise SystemFailure.from_oserror(f"listen on console socket {path}", exc) from None

    def receive(self, timeout: float = 5.0) -> int:
        """The pty master the runtime sent (close-on-exec). Call once the runtime has exited."""
        self.sock.settimeout(timeout)
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(timeout)
                _, fds, _, _ = socket.recv_fds(conn, 4096, 4, socket.MSG_CMSG_CLOEXEC)
        except OSError as exc:
            raise SystemFailure.from_oserror(f"receive the pty master on {self.path}", exc) from None
        if not fds:
            raise SystemFailure(f"the runtime connected to {self.path} but sent no pty master")
        for extra in fds[1:]:
            os.close(extra)
        return fds[0]

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def set_winsize(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
