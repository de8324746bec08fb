"""Requests to a daemon on TCP, through :mod:`http.client` (imported only when a ``tcp://`` host is used).

Unix sockets, the common case, go through the lean :mod:`ketch.client.wire` instead; a remote daemon keeps
the standard library's client (and the TLS it can add).
"""

from __future__ import annotations

import http.client

from ketch.client.wire import BadAnswer, Headers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import IO

__all__ = ["TcpAnswer", "TcpExchange"]


class TcpAnswer:
    """An :class:`http.client.HTTPResponse` with the interface of :class:`ketch.client.wire.Answer`."""

    def __init__(self, conn: http.client.HTTPConnection, raw: http.client.HTTPResponse, host: str) -> None:
        self._conn = conn
        self._raw = raw
        self._host = host
        self.status = raw.status
        self.headers = Headers(raw.headers.items())

    def read1(self, size: int = 65536) -> bytes:
        try:
            return self._raw.read1(size)
        except http.client.HTTPException as exc:
            raise BadAnswer(f"bad answer from {self._host}: {exc!r}") from None

    def read(self) -> bytes:
        try:
            return self._raw.read()
        except http.client.HTTPException as exc:
            raise BadAnswer(f"bad answer from {self._host}: {exc!r}") from None

    def close(self) -> None:
        self._raw.close()
        self._conn.close()


class TcpExchange:
    """One request on its own connection, sent at once; the answer is read by :meth:`receive`."""

    def __init__(
        self,
        host: str,
        address: str,
        timeout: float | None,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | IO[bytes] | None,
        chunked: bool,
    ) -> None:
        hostname, _, port = address.rpartition(":")
        self._host = host
        self._conn = http.client.HTTPConnection(hostname, int(port), timeout=timeout)
        self._answer: TcpAnswer | None = None
        try:
            self._conn.request(method, target, body=body, headers=dict(headers), encode_chunked=chunked)
        except http.client.HTTPException as exc:
            self._conn.close()
            raise BadAnswer(f"bad answer from {host}: {exc!r}") from None
        except BaseException:
            self._conn.close()
            raise

    def receive(self) -> TcpAnswer:
        try:
            raw = self._conn.getresponse()
        except http.client.HTTPException as exc:
            self._conn.close()
            raise BadAnswer(f"bad answer from {self._host}: {exc!r}") from None
        except BaseException:
            self._conn.close()
            raise
        self._answer = TcpAnswer(self._conn, raw, self._host)
        return self._answer

    def close(self) -> None:
        if self._answer is not None:
            self._answer.close()
        self._conn.close()
