"""Writing one value to a kernel file (/proc, /sys): one write(2), as the kernel expects."""

from __future__ import annotations

import os

from ketch.common.errors import SystemFailure

__all__ = ["write_value"]


def write_value(path: str, value: str, what: str | None = None) -> None:
    """Write ``value`` to ``path`` in a single write; a refusal raises SystemFailure naming ``what``."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise SystemFailure.from_oserror(what or f"write {value!r} to {path}", exc) from None
