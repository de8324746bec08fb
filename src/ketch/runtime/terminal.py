"""Pseudo-terminals: made inside the container, the master handed out over the console socket.

As with runc, the pty is opened from the container's own /dev/ptmx (its devpts instance), and the master
fd is sent with SCM_RIGHTS over the unix socket named by ``--console-socket``; containerd, conmon and
``ketch-runtime run`` in the foreground all receive it this way.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import struct
import termios

__all__ = ["connect_console", "open_container_pty", "recv_fd", "send_fd", "set_winsize"]

_TIOCGPTPEER = 0x5441
_TIOCSPTLCK = 0x40045431


def connect_console(path: str) -> int:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock.detach()


def send_fd(sock_fd: int, fd: int, name: str) -> None:
    sock = _socket.socket(fileno=sock_fd)
    try:
        sock.sendmsg([name.encode()], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", fd))])
    finally:
        sock.detach()


def recv_fd(sock_fd: int) -> int:
    sock = _socket.socket(fileno=sock_fd)
    try:
        _msg, ancdata, _flags, _addr = sock.recvmsg(4096, _socket.CMSG_SPACE(struct.calcsize("i")))
    finally:
        sock.detach()
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            return int(struct.unpack("i", data[: struct.calcsize("i")])[0])
    raise OSError(5, "console socket: no file descriptor received")


def set_winsize(fd: int, height: int, width: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def get_winsize(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def open_container_pty(console_size: dict[str, int] | None) -> tuple[int, int]:
    """Open a pty from /dev/ptmx of the current root; return (master, slave)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    if console_size and console_size.get("height") and console_size.get("width"):
        set_winsize(slave, console_size["height"], console_size["width"])
    return master, slave


def make_controlling(slave: int) -> None:
    """Make ``slave`` the session's controlling terminal and the process's stdio (after setsid)."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)


def proxy(master: int, child_pid: int) -> int:
    """Copy our stdin to ``master`` and ``master`` to our stdout until ``child_pid`` exits; return its
    wait status. Our terminal is put in raw mode meanwhile and its size follows SIGWINCH."""
    import select
    import signal
    import tty

    stdin_tty = os.isatty(0)
    saved = termios.tcgetattr(0) if stdin_tty else None
    if stdin_tty:
        tty.setraw(0)
        try:
            set_winsize(master, *get_winsize(0))
        except OSError:
            pass
        signal.signal(signal.SIGWINCH, lambda *_: set_winsize(master, *get_winsize(0)))
    readers = [master, 0]
    try:
        while True:
            try:
                ready, _, _ = select.select(readers, [], [], 0.2)
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    readers.remove(0)
            if not ready:
                pid, status = os.waitpid(child_pid, os.WNOHANG)
                if pid:
                    return status
        _, status = os.waitpid(child_pid, 0)
        return status
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
