"""Reading a file's extended attributes for a layer tar, without following symlinks."""

from __future__ import annotations

import errno
import os

__all__ = ["pax_xattrs", "read_xattrs"]


def read_xattrs(path: str) -> dict[str, bytes]:
    """Every extended attribute of ``path``, by name in sorted order; {} where the filesystem has none."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    out = {}
    for name in sorted(names):
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                raise
    return out


def pax_xattrs(xattrs: dict[str, bytes]) -> dict[str, str]:
    """The PAX headers that carry ``xattrs`` in a tar (``SCHILY.xattr.<name>``, as Docker writes them)."""
    return {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()}
