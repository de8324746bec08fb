"""Resolve a path inside a container's root as if that root were ``/``.

A symlink in the rootfs (``/etc -> /``, ``a -> ../../..``) must never lead a mount or a device node out of
the root: every component is resolved by hand, absolute links restart at the root and ``..`` stops there,
the way a chroot would see it.
"""

from __future__ import annotations

import os
import stat

__all__ = ["open_in_root", "secure_join"]

_MAX_LINKS = 255


def secure_join(root: str, unsafe: str) -> str:
    """Return ``root`` joined with ``unsafe``, with every symlink resolved inside ``root``.

    Components that do not exist yet are kept as they are (the caller may create them).
    """
    root = os.path.abspath(root)
    pending = [p for p in unsafe.split("/") if p and p != "."]
    pending.reverse()
    parts: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if parts:
                parts.pop()
            continue
        candidate = os.path.join(root, *parts, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            parts.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            parts.append(part)
            continue
        links += 1
        if links > _MAX_LINKS:
            raise OSError(40, "too many levels of symbolic links", os.path.join("/", *parts, part))
        target = os.readlink(candidate)
        if target.startswith("/"):
            parts = []
        pending.extend(reversed([p for p in target.split("/") if p and p != "."]))
    return os.path.join(root, *parts)


def open_in_root(root: str, unsafe: str) -> tuple[str, int]:
    """Resolve ``unsafe`` inside ``root`` and open it with O_PATH; return (path, fd).

    Mounting on ``/proc/self/fd/<fd>`` instead of on the path closes the window in which a process in the
    container could swap a directory for a symlink between our check and the mount. The opened file is
    checked to still lie under ``root``.
    """
    path = secure_join(root, unsafe)
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    real = os.readlink(f"/proc/self/fd/{fd}")
    base = os.path.realpath(root)
    if real != base and not real.startswith(base.rstrip("/") + "/"):
        os.close(fd)
        raise OSError(1, f"path escapes the container root (resolved to {real})", unsafe)
    return path, fd
