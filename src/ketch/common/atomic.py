"""Write a file so that readers see either the old content or the new, never a torn one."""

from __future__ import annotations

import os

__all__ = ["atomic_write", "fsync_dir"]


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Write to a temporary sibling, fsync it, rename it over ``path``, then fsync the directory.

    ``durable=False`` skips both fsyncs: for files on tmpfs (runtime state under /run) where a crash
    loses the file anyway, the rename alone gives atomicity without the cost.
    """
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
    if durable:
        fsync_dir(directory)
