"""Typed calls for the Engine API endpoints the CLI uses: system and images here, containers, exec and the
rest of system in :mod:`ketch.client.containers`, networks in :mod:`ketch.client.networks`."""

from __future__ import annotations

from ketch.client.containers import ContainerCalls
from ketch.client.http import DEFAULT_HOST, Connection, Response, quote_path
from ketch.client.networks import NetworkCalls
from ketch.common import fastjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import IO, Any

    from ketch.spec.engine_api import Filters

__all__ = ["APIClient", "encode_auth"]


def encode_auth(auth: dict[str, str] | None) -> str:
    """The ``X-Registry-Auth`` header: base64url of the JSON auth config (``e30=``, i.e. ``{}``, when none)."""
    import base64

    return base64.urlsafe_b64encode(fastjson.dumps(auth or {}).encode()).decode()


class APIClient(ContainerCalls, NetworkCalls):
    def __init__(
        self, host: str = DEFAULT_HOST, *, version: str | None = None, timeout: float | None = None
    ) -> None:
        self.conn = Connection(host, version=version, timeout=timeout)

    @property
    def api_version(self) -> str:
        return self.conn.version

    # ---- system -------------------------------------------------------------------------------------------

    def ping(self) -> Response:
        return self.conn.ping()

    def version(self) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("GET", "/version").json()
        return result

    # ---- images -------------------------------------------------------------------------------------------

    def images(
        self, *, all: bool = False, digests: bool = False, filters: Filters | None = None
    ) -> list[dict[str, Any]]:
        query = {"all": all, "digests": digests, "filters": filters.to_json() if filters else None}
        result: list[dict[str, Any]] = self.conn.request("GET", "/images/json", query=query).json() or []
        return result

    def pull(
        self, name: str, tag: str, *, platform: str = "", auth: dict[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        query = {"fromImage": name, "tag": tag, "platform": platform}
        headers = {"X-Registry-Auth": encode_auth(auth)}
        return self.conn.request("POST", "/images/create", query=query, headers=headers).json_stream()

    def push(self, name: str, tag: str, *, auth: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
        headers = {"X-Registry-Auth": encode_auth(auth)}
        path = f"/images/{quote_path(name)}/push"
        return self.conn.request("POST", path, query={"tag": tag}, headers=headers).json_stream()

    def tag(self, source: str, repo: str, tag: str) -> None:
        path = f"/images/{quote_path(source)}/tag"
        self.conn.request("POST", path, query={"repo": repo, "tag": tag}).read()

    def remove_image(self, name: str, *, force: bool = False, noprune: bool = False) -> list[dict[str, str]]:
        path = f"/images/{quote_path(name)}"
        result: list[dict[str, str]] = (
            self.conn.request("DELETE", path, query={"force": force, "noprune": noprune}).json() or []
        )
        return result

    def inspect_image(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("GET", f"/images/{quote_path(name)}/json").json()
        return result

    def history(self, name: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (
            self.conn.request("GET", f"/images/{quote_path(name)}/history").json() or []
        )
        return result

    def save(self, names: list[str]) -> Response:
        """The tar stream of ``docker save``; read it with :meth:`Response.chunks`."""
        from urllib.parse import urlencode

        query = urlencode([("names", name) for name in names])
        return self.conn.request("GET", "/images/get?" + query)

    def load(
        self, archive: IO[bytes], *, quiet: bool = False, size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        headers = {"Content-Type": "application/x-tar"}
        if size is not None:
            headers["Content-Length"] = str(size)
        response = self.conn.request(
            "POST", "/images/load", query={"quiet": quiet}, body=archive, headers=headers
        )
        return response.json_stream()

    def prune_images(self, filters: Filters | None = None) -> dict[str, Any]:
        query = {"filters": filters.to_json() if filters else None}
        result: dict[str, Any] = self.conn.request("POST", "/images/prune", query=query).json() or {}
        return result

    def auth(self, config: dict[str, str]) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("POST", "/auth", json_body=config).json() or {}
        return result
