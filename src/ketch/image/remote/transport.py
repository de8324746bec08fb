"""Requests to one registry: endpoint choice (HTTPS, then plain HTTP where allowed), auth, retries.

A :class:`Session` serves one registry (see :mod:`ketch.image.remote.connections` for the vocabulary and the
TLS rules): the first request pings ``GET /v2/`` to pick the scheme and learn the auth challenge, then every
request carries the authorization its scopes need, and only to the registry's own host.

Retries: connection errors and 429/5xx answers are retried with exponential backoff; a request whose body
cannot be replayed is sent once. Everything that goes wrong becomes a ketch error through
:mod:`ketch.image.remote.errors`, here and nowhere else.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import httpx

from ketch.common.errors import Unavailable
from ketch.image.remote.auth import Authenticator, Challenge, Token, basic_header, parse_token_response
from ketch.image.remote.connections import ClientPool, registry_host
from ketch.image.remote.credentials import AuthConfig, Credentials
from ketch.image.remote.errors import (
    RETRYABLE_STATUSES,
    Operation,
    RequestContext,
    tls_failure,
    translate_response,
    translate_transport,
)
from ketch.spec.reference import Reference

__all__ = ["RetryPolicy", "Session"]

_ERROR_BODY_LIMIT = 64 * 1024  # an error body is for a message; a bigger one is not read whole


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    retries: int = 4  # extra attempts after the first
    backoff: float = 0.5  # first delay in seconds; doubles each time
    max_backoff: float = 10.0

    def delay(self, attempt: int) -> float:
        """The pause before retry number ``attempt`` (1-based)."""
        return float(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))

    def sleep(self, attempt: int) -> None:
        pause = self.delay(attempt)
        if pause > 0:
            time.sleep(pause)


def _raw_chunks(response: httpx.Response) -> Iterator[bytes]:
    """The body as sent, never decompressed, in the pieces the network delivers (no re-chunking: bytes held
    in a chunker's buffer would be lost when the connection drops). A body already in memory (built from
    bytes, as ``httpx.MockTransport`` answers are) cannot be streamed again, so it is handed out as it is."""
    try:
        data = response.content
    except httpx.ResponseNotRead:
        yield from response.iter_raw()
        return
    yield data


def _read_limited(response: httpx.Response, limit: int = _ERROR_BODY_LIMIT) -> bytes:
    out = bytearray()
    with contextlib.suppress(httpx.HTTPError):
        for chunk in _raw_chunks(response):
            out += chunk
            if len(out) >= limit:
                break
    response.close()
    return bytes(out[:limit])


class Session:
    """Requests to one registry, with its endpoint, authenticator and retry policy."""

    def __init__(
        self,
        registry: str,
        *,
        clients: ClientPool,
        auth_config: AuthConfig,
        plain_http: bool,
        retry: RetryPolicy,
        sleep: Callable[[int], None] | None = None,
    ) -> None:
        self.registry = registry
        self.host = registry_host(registry)
        self._clients = clients
        self._auth_config = auth_config
        self._plain_http = plain_http
        self.retry = retry
        self.sleep = sleep or retry.sleep
        self._base: str | None = None
        self._verify = not plain_http
        self._lock = threading.Lock()
        self.auth = Authenticator(self.credentials, self._fetch_token)

    def credentials(self) -> Credentials | None:
        return self._auth_config.get(self.registry)

    # -- endpoint

    def _client(self) -> httpx.Client:
        return self._clients.client(self.host, verify=self._verify)

    def base_url(self) -> str:
        """``https://host`` or ``http://host``, chosen by the first ping."""
        if self._base is None:
            self.ping()
        assert self._base is not None
        return self._base

    def ping(self, *, authorization: str | None = None) -> httpx.Response:
        """``GET /v2/``: picks the scheme once, learns the challenge; returns the (closed) answer."""
        with self._lock:
            schemes = [self._base] if self._base else ["https://" + self.host]
            if self._base is None and self._plain_http:
                schemes.append("http://" + self.host)
            last: BaseException | None = None
            for base in schemes:
                try:
                    response = self._send_with_retries(
                        "GET", f"{base}/v2/", operation="ping", authorization=authorization, fail_fast=True
                    )
                except Unavailable as exc:
                    last = exc
                    continue
                self._base = base
                body = _read_limited(response)
                if response.status_code == 401:
                    self.auth.learn(response.headers.get_list("www-authenticate"))
                elif response.status_code >= 500:
                    raise translate_response(response, self._ctx("GET", f"{base}/v2/", "ping"), body)
                return response
            assert last is not None
            raise last

    # -- requests

    def _ctx(
        self,
        method: str,
        url: str,
        operation: Operation,
        reference: Reference | None = None,
        pushing: bool = False,
    ) -> RequestContext:
        return RequestContext(
            registry=self.registry,
            method=method,
            url=url,
            operation=operation,
            reference=reference,
            pushing=pushing,
        )

    def _send_with_retries(
        self,
        method: str,
        url: str,
        *,
        operation: Operation,
        authorization: str | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        replayable: bool = True,
        fail_fast: bool = False,
        follow_redirects: bool = True,
    ) -> httpx.Response:
        """Send until an answer that is not 429/5xx, or retries run out; the answer is streamed, unread."""
        client = self._client()
        ctx = self._ctx(method, url, operation)
        all_headers = dict(headers or {})
        if authorization:
            all_headers["Authorization"] = authorization
        attempt = 0
        while True:
            request = client.build_request(method, url, headers=all_headers, content=content, params=params)
            try:
                response = client.send(request, stream=True, follow_redirects=follow_redirects)
            except httpx.TransportError as exc:
                # A refused or failed TLS connection at the ping means "wrong endpoint", not "try later".
                quick = fail_fast and (isinstance(exc, httpx.ConnectError) or tls_failure(exc) is not None)
                if replayable and not quick and attempt < self.retry.retries:
                    attempt += 1
                    self.sleep(attempt)
                    continue
                raise translate_transport(exc, ctx) from exc
            if response.status_code in RETRYABLE_STATUSES and replayable and attempt < self.retry.retries:
                response.close()
                attempt += 1
                self.sleep(attempt)
                continue
            return response

    def request(
        self,
        method: str,
        path: str,
        *,
        scopes: tuple[str, ...],
        operation: Operation,
        reference: Reference | None = None,
        pushing: bool = False,
        ok: Iterable[int] = (200,),
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        stream: bool = False,
        replayable: bool = True,
    ) -> httpx.Response:
        """A request to ``path`` (``/v2/...`` or an absolute URL from a Location header).

        Returns the answer when its status is in ``ok``: read and closed, or with ``stream`` open for the caller
        to read (through :meth:`iter_body`) and close. Any other answer raises the translated error.
        """
        url = path if path.startswith(("http://", "https://")) else self.base_url() + path
        ctx = self._ctx(method, url, operation, reference, pushing)
        accepted = frozenset(ok)
        auth_retried = False
        # Credentials go only to the registry itself, never to a storage host a Location points at.
        ours = httpx.URL(url).netloc.decode() == self.host
        while True:
            authorization = self.auth.header(scopes) if ours else None
            response = self._send_with_retries(
                method,
                url,
                operation=operation,
                authorization=authorization,
                headers=headers,
                content=content,
                params=params,
                replayable=replayable,
            )
            if response.status_code == 401 and not auth_retried:
                body = _read_limited(response)
                auth_retried = True
                if authorization and authorization.startswith("Bearer "):
                    self.auth.forget(scopes)
                if self.auth.learn(response.headers.get_list("www-authenticate")) and self.auth.header(
                    scopes
                ):
                    continue
                raise translate_response(response, ctx, body)
            if response.status_code not in accepted:
                raise translate_response(response, ctx, _read_limited(response))
            if not stream:
                try:
                    response.read()
                except httpx.TransportError as exc:
                    raise translate_transport(exc, ctx) from exc
                finally:
                    response.close()
            return response

    def iter_body(self, response: httpx.Response, operation: Operation) -> Iterator[bytes]:
        """The raw (never decompressed) body of a streamed answer; transport failures become Unavailable."""
        ctx = self._ctx(response.request.method, str(response.request.url), operation)
        try:
            yield from _raw_chunks(response)
        except httpx.TransportError as exc:
            raise translate_transport(exc, ctx) from exc

    def external_get(self, url: str, headers: Mapping[str, str]) -> httpx.Response:
        """A streamed GET outside the registry API (a foreign layer's URL); no credentials are sent."""
        host = httpx.URL(url).netloc.decode()
        client = self._clients.client(host, verify=True)
        ctx = self._ctx("GET", url, "blob")
        try:
            response = client.send(
                client.build_request("GET", url, headers=headers), stream=True, follow_redirects=True
            )
        except httpx.TransportError as exc:
            raise translate_transport(exc, ctx) from exc
        if response.status_code not in (200, 206):
            raise translate_response(response, ctx, _read_limited(response))
        return response

    # -- tokens

    def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...], creds: Credentials | None) -> Token:
        """Ask the challenge's realm for a token (GET with Basic, or the OAuth2 refresh-token POST)."""
        realm = challenge.realm
        parsed = httpx.URL(realm)
        same_host = parsed.netloc.decode() == self.host
        client = self._clients.client(parsed.netloc.decode(), verify=self._verify if same_host else True)
        service = challenge.params.get("service", "")
        if creds is not None and creds.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "client_id": "ketch",
            }
            if service:
                form["service"] = service
            if scopes:
                form["scope"] = " ".join(scopes)
            request = client.build_request("POST", realm, data=form)
        else:
            params: list[tuple[str, str | int | float | bool | None]] = (
                [("service", service)] if service else []
            )
            params += [("scope", scope) for scope in scopes]
            headers = {}
            if creds is not None and creds.username:
                params.append(("account", creds.username))
                headers["Authorization"] = basic_header(creds.username, creds.password)
            request = client.build_request("GET", realm, params=params, headers=headers)
        ctx = self._ctx(request.method, str(request.url.copy_with(query=None)), "token")
        attempt = 0
        while True:
            try:
                response = client.send(request, follow_redirects=True)
            except httpx.TransportError as exc:
                if attempt < self.retry.retries:
                    attempt += 1
                    self.sleep(attempt)
                    continue
                raise translate_transport(exc, ctx) from exc
            if response.status_code in RETRYABLE_STATUSES and attempt < self.retry.retries:
                attempt += 1
                self.sleep(attempt)
                continue
            break
        if response.status_code != 200:
            raise translate_response(response, ctx, response.content)
        return parse_token_response(response.content, time.monotonic())
