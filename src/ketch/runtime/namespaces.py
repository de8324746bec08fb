"""Namespaces: which to create, which to join by path, and the user namespace's id maps."""

from __future__ import annotations

import os

from ketch.common.errors import InvalidArgument, SystemFailure
from ketch.runtime.kernel_files import write_value
from ketch.spec.oci_runtime import NAMESPACES
from ketch.sys import linux as L

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CLONE_FLAGS", "join", "new_flags", "write_id_maps"]

CLONE_FLAGS: dict[str, int] = {
    "pid": L.CLONE_NEWPID, "network": L.CLONE_NEWNET, "mount": L.CLONE_NEWNS, "ipc": L.CLONE_NEWIPC,
    "uts": L.CLONE_NEWUTS, "user": L.CLONE_NEWUSER, "cgroup": L.CLONE_NEWCGROUP, "time": L.CLONE_NEWTIME,
}  # fmt: skip
# setns order: the user namespace first, so that joining the others happens with its privileges.
_JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "mount", "cgroup", "time")


def new_flags(namespaces: list[dict[str, Any]]) -> int:
    """unshare(2) flags for the namespaces to create (those without a path), the user namespace excluded."""
    flags = 0
    for ns in namespaces:
        if "path" not in ns and ns["type"] != "user":
            flags |= CLONE_FLAGS[ns["type"]]
    return flags


def wants_new(namespaces: list[dict[str, Any]], kind: str) -> bool:
    return any(ns["type"] == kind and "path" not in ns for ns in namespaces)


def join(paths: dict[str, str]) -> None:
    """setns(2) into each namespace file of ``paths`` (type -> path), user namespace first.

    A namespace we are already in is skipped: setns into one's own user namespace fails with EINVAL.
    """
    # Open every file first: once in the container's mount namespace, /proc is the container's and the
    # paths (/proc/<host pid>/ns/...) no longer resolve.
    fds: list[tuple[str, str, int]] = []
    try:
        for kind in _JOIN_ORDER:
            path = paths.get(kind)
            if not path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise InvalidArgument(f"namespace {kind} path {path}: {exc.strerror}") from None
            fds.append((kind, path, fd))
        # Likewise our own namespaces: /proc/self does not resolve in a pid namespace we are not in.
        own = {kind: os.stat(f"/proc/self/ns/{NAMESPACES[kind]}") for kind, _path, _fd in fds}
        for kind, path, fd in fds:
            try:
                st, mine = os.fstat(fd), own[kind]
                if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
                    continue
                L.setns(fd, CLONE_FLAGS[kind])
            except OSError as exc:
                raise SystemFailure.from_oserror(f"join {kind} namespace {path}", exc) from None
    finally:
        for _kind, _path, fd in fds:
            os.close(fd)


def write_id_maps(pid: int, linux: dict[str, Any]) -> None:
    """Write uid_map and gid_map of ``pid``'s new user namespace (done from outside, as root)."""
    for key, name in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in linux.get(key, []))
        write_value(f"/proc/{pid}/{name}", lines, f"write {name} {lines.strip()!r}")


_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def loopback_up() -> None:
    """Bring ``lo`` up in a new network namespace, as runc does (an ioctl; no netlink needed for this)."""
    import _socket
    import fcntl
    import struct

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
    except OSError as exc:
        raise SystemFailure.from_oserror("bring up the loopback interface", exc) from None
    finally:
        sock.close()
