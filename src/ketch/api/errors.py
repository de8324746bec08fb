"""From exceptions to HTTP answers, in one place.

The category of a :class:`~ketch.common.errors.KetchError` decides the status (its ``status`` attribute:
400 InvalidArgument, 404 NotFound, 409 Conflict, ...), and the message is the body: ``{"message": str(exc)}``,
the shape docker clients read (docker-py picks its exception class from the status and the message). There
are no isinstance chains by error kind here or in the routes. Anything that is not a KetchError is a bug
or an unforeseen failure: a 500, logged with its traceback.
"""

from __future__ import annotations

import logging

from ketch.api.http import Response
from ketch.common.errors import KetchError

__all__ = ["PAGE_NOT_FOUND", "bad_request", "error_response", "page_not_found", "status_for"]

log = logging.getLogger("ketch.api")

PAGE_NOT_FOUND = "page not found"


def status_for(exc: BaseException) -> int:
    return exc.status if isinstance(exc, KetchError) else 500


def error_response(exc: BaseException, *, context: str = "") -> Response:
    """The answer for a route that raised ``exc``; unexpected exceptions are logged with a traceback."""
    status = status_for(exc)
    if not isinstance(exc, KetchError):
        log.error("%s failed", context or "request", exc_info=exc)
    elif status >= 500:
        log.warning("%s failed: %s", context or "request", exc)
    if status == 304:
        return Response.empty(304)  # a 304 carries no body
    message = str(exc) or type(exc).__name__
    return Response.json({"message": message}, status)


def page_not_found() -> Response:
    return Response.json({"message": PAGE_NOT_FOUND}, 404)


def bad_request(detail: str, status: int = 400) -> Response:
    """The answer to a request that is not valid HTTP (before any route sees it)."""
    return Response.json({"message": f"malformed HTTP request: {detail}"}, status)
