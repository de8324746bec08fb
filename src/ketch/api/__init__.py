"""The Docker Engine API over HTTP/1.1: what routes see and return, the router, and the error mapping.

The server itself is :mod:`ketch.api.server` (kept out of this package's imports so that
``python -m ketch.api.server`` runs it as a script without importing it twice).
"""

from __future__ import annotations

from ketch.api.errors import error_response, page_not_found, status_for
from ketch.api.http import (
    JSON,
    RAW_STREAM,
    Handler,
    Hijack,
    Query,
    RawStream,
    Reply,
    Request,
    Response,
    StreamingResponse,
)
from ketch.api.router import Router

__all__ = [
    "JSON",
    "RAW_STREAM",
    "Handler",
    "Hijack",
    "Query",
    "RawStream",
    "Reply",
    "Request",
    "Response",
    "Router",
    "StreamingResponse",
    "error_response",
    "page_not_found",
    "status_for",
]
