"""Registry errors: the one place where HTTP statuses, registry error bodies and transport exceptions become
ketch error categories (the way httpx's ``map_httpcore_exceptions`` maps its backend's exceptions).

::

    HTTP answer (translate_response)
        401                         Unauthorized    "unauthorized: authentication required"
        403                         Forbidden       "denied: requested access to the resource is denied"
        404 manifest                NotFound        "manifest for busybox:nope not found: manifest unknown: ..."
        404 repository              NotFound        "repository x not found: name unknown: ..."
        404 blob, other             NotFound
        405                         Unsupported     (the registry does not allow the operation)
        409                         Conflict
        429, 5xx (after retries)    Unavailable     "received unexpected HTTP status: 500 Internal Server Error"
        other 4xx                   InvalidArgument (digest, manifest or upload rejected)
    httpx.TransportError (translate_transport)
        connection refused          Unavailable     'Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: ...'
        TLS failure                 Unavailable     'Get "https://host/v2/": tls: certificate verify failed: ...'
        timeout, reset, protocol    Unavailable
    bad digest, bad size            InvalidArgument (raised where the bytes are checked)

The message of an error body ``{"errors": [{"code", "message", "detail"}]}`` is rendered as distribution's
errcode does: the code in lower case with spaces (``MANIFEST_UNKNOWN`` -> ``manifest unknown``), a colon, the
message; several errors become ``errors:\\n<one>\\n<two>\\n``. Token servers answer ``{"details": "..."}``.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from ketch.common.errors import (
    Conflict,
    Forbidden,
    InvalidArgument,
    KetchError,
    NotFound,
    Unauthorized,
    Unavailable,
    Unsupported,
)
from ketch.image.remote.auth import parse_challenges
from ketch.spec.reference import Reference

__all__ = [
    "RETRYABLE_STATUSES",
    "Operation",
    "RegistryError",
    "RequestContext",
    "parse_error_body",
    "tls_failure",
    "translate_response",
    "translate_transport",
]

Operation = Literal["ping", "manifest", "blob", "upload", "token", "login", "other"]
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

# errcode's default messages, used when a registry answers an error status without a body (HEAD, proxies).
_DEFAULT_ERRORS: dict[int, tuple[str, str]] = {
    401: ("UNAUTHORIZED", "authentication required"),
    403: ("DENIED", "requested access to the resource is denied"),
}
_NOT_FOUND_DEFAULTS: dict[str, tuple[str, str]] = {
    "manifest": ("MANIFEST_UNKNOWN", "manifest unknown"),
    "blob": ("BLOB_UNKNOWN", "blob unknown to registry"),
    "upload": ("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"),
}


@dataclass(frozen=True, slots=True)
class RegistryError:
    """One entry of an OCI error body."""

    code: str
    message: str
    detail: Any = None

    def __str__(self) -> str:
        code = self.code.replace("_", " ").lower() or "unknown"
        return f"{code}: {self.message}" if self.message else code


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestContext:
    """What a request was for, so that an error can say it in Docker's words."""

    registry: str
    method: str
    url: str
    operation: Operation = "other"
    reference: Reference | None = None
    pushing: bool = False

    @property
    def prefix(self) -> str:
        """Go's url.Error prefix: ``Get "https://host/v2/"``."""
        return f'{self.method.capitalize()} "{self.url}"'


def parse_error_body(body: bytes) -> list[RegistryError]:
    """The errors of an OCI error body, or of a token server's ``details``; [] when there are none."""
    try:
        obj = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(obj, dict):
        return []
    errors = obj.get("errors")
    out: list[RegistryError] = []
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict):
                code, message = item.get("code"), item.get("message")
                out.append(
                    RegistryError(
                        code if isinstance(code, str) else "UNKNOWN",
                        message if isinstance(message, str) else "",
                        item.get("detail"),
                    )
                )
    if not out and isinstance(obj.get("details"), str):
        out.append(RegistryError("UNAUTHORIZED", obj["details"]))
    return out


def _bearer_error(response: httpx.Response) -> RegistryError | None:
    """RFC 6750 section 3 error in a bearer challenge (``error="insufficient_scope"``)."""
    for challenge in parse_challenges(response.headers.get_list("www-authenticate")):
        if challenge.scheme != "bearer":
            continue
        kind = challenge.params.get("error", "")
        code = {"invalid_token": "UNAUTHORIZED", "insufficient_scope": "DENIED"}.get(kind)
        if code is not None:
            default = _DEFAULT_ERRORS[401 if code == "UNAUTHORIZED" else 403][1]
            return RegistryError(code, challenge.params.get("error_description") or default)
    return None


def _render(errors: list[RegistryError]) -> str:
    if len(errors) == 1:
        return str(errors[0])
    return "errors:\n" + "".join(f"{error}\n" for error in errors)


def translate_response(
    response: httpx.Response, ctx: RequestContext, body: bytes | None = None
) -> KetchError:
    """The error for an unexpected answer; ``body`` is the response body when it was read."""
    status = response.status_code
    errors = parse_error_body(body) if body else []
    if 400 <= status < 500 and not any(e.code in ("UNAUTHORIZED", "DENIED") for e in errors):
        bearer = _bearer_error(response)
        if bearer is not None:
            errors.insert(0, bearer)
    if not errors:
        default = _DEFAULT_ERRORS.get(status)
        if status == 404:
            default = _NOT_FOUND_DEFAULTS.get(ctx.operation)
        if default is not None:
            errors = [RegistryError(*default)]
    if status >= 500 or status == 429 or not errors:
        if status == 429 and errors:
            return Unavailable(f"{ctx.prefix}: {_render(errors)}")
        reason = f"{status} {response.reason_phrase}".strip()
        if 400 <= status < 500:
            return _category(status)(f"{ctx.prefix}: received unexpected HTTP status: {reason}")
        return Unavailable(f"{ctx.prefix}: received unexpected HTTP status: {reason}")
    first, ref = errors[0], ctx.reference
    text = _render(errors)
    if ref is not None and first.code == "MANIFEST_UNKNOWN":
        return NotFound(f"manifest for {ref.familiar()} not found: {text}")
    if ref is not None and first.code == "NAME_UNKNOWN":
        return NotFound(f"repository {ref.familiar_name} not found: {text}")
    if ref is not None and first.code == "DENIED" and not ctx.pushing:
        message = (
            f"pull access denied for {ref.familiar_name}, repository does not exist or may require "
            f"'docker login': {text}"
        )
        return _category(status)(message)
    if ctx.operation in ("blob", "upload") or status == 401:
        return _category(status)(f"{ctx.prefix}: {text}")
    return _category(status)(text)


def _category(status: int) -> type[KetchError]:
    return {
        401: Unauthorized,
        403: Forbidden,
        404: NotFound,
        405: Unsupported,
        409: Conflict,
    }.get(status, InvalidArgument if 400 <= status < 500 else Unavailable)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error under an httpx exception, if the failure was one."""
    for item in _chain(exc):
        if isinstance(item, ssl.SSLError):
            return item
    return None


def _host_port(url: str) -> str:
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.host}:{port}"


def translate_transport(exc: httpx.TransportError, ctx: RequestContext) -> Unavailable:
    """Unavailable naming the registry and the reason, in the shape Go's net/http errors have."""
    tls = tls_failure(exc)
    if tls is not None:
        code = getattr(tls, "reason", None)
        if code in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE"):
            reason = "server gave HTTP response to HTTPS client"
        elif getattr(tls, "verify_message", None):
            reason = str(tls.verify_message)  # type: ignore[attr-defined]
        else:
            reason = str(code).lower().replace("_", " ") if code else str(tls)
        return Unavailable(f"{ctx.prefix}: tls: {reason} (registry {ctx.registry})")
    for item in _chain(exc):
        if isinstance(item, ConnectionRefusedError):
            return Unavailable(f"{ctx.prefix}: dial tcp {_host_port(ctx.url)}: connect: connection refused")
        if isinstance(item, OSError) and item.strerror:
            return Unavailable(f"{ctx.prefix}: dial tcp {_host_port(ctx.url)}: {item.strerror.lower()}")
    if isinstance(exc, httpx.TimeoutException):
        return Unavailable(f"{ctx.prefix}: timeout talking to registry {ctx.registry}")
    detail = str(exc) or type(exc).__name__
    return Unavailable(f"{ctx.prefix}: {detail} (registry {ctx.registry})")
