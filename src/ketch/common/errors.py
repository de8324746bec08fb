"""Typed errors shared by every layer.

The category (the class a concrete error derives from) decides the HTTP status the API answers with; the
message is what users and clients read, so it follows Docker's and runc's wording where they have one::

    KetchError              500  (base; never raised directly)
    +-- InvalidArgument     400  bad parameter, bad config.json, bad reference
    +-- Unauthorized        401
    +-- Forbidden           403
    +-- NotFound            404  no such container / image / file
    +-- Conflict            409  name in use, container running
    +-- NotModified         304  start a running container, stop a stopped one
    +-- Unsupported         501
    +-- Unavailable         503
    +-- SystemFailure       500  the kernel refused: mount, cgroup write, netlink (keeps errno and path)
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~8 ms to import; short-lived commands avoid it
if TYPE_CHECKING:
    from typing import ClassVar

__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidArgument",
    "KetchError",
    "NotFound",
    "NotModified",
    "SystemFailure",
    "Unauthorized",
    "Unavailable",
    "Unsupported",
]


class KetchError(Exception):
    """Base of every error that leaves its package."""

    status: ClassVar[int] = 500

    @property
    def message(self) -> str:
        return str(self)


class InvalidArgument(KetchError):
    status = 400


class Unauthorized(KetchError):
    status = 401


class Forbidden(KetchError):
    status = 403


class NotFound(KetchError):
    status = 404


class Conflict(KetchError):
    status = 409


class NotModified(KetchError):
    status = 304


class Unsupported(KetchError):
    status = 501


class Unavailable(KetchError):
    status = 503


class SystemFailure(KetchError):
    """The kernel refused an operation; keeps the errno and the path it was about."""

    status = 500

    def __init__(self, message: str, *, errno: int = 0, path: str = "") -> None:
        super().__init__(message)
        self.errno = errno
        self.path = path

    @classmethod
    def from_oserror(cls, what: str, exc: OSError) -> SystemFailure:
        detail = exc.strerror or str(exc)
        return cls(f"{what}: {detail}", errno=exc.errno or 0, path=str(exc.filename or ""))
