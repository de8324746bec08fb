"""Typed calls for the network endpoints, shaped as the docker client (20.10) sends them.

Inspecting or removing a network that does not exist raises :class:`ObjectNotFound` ("Error: No such network:
x"), as the docker client words those two itself; connect and disconnect keep the daemon's message.
"""

from __future__ import annotations

from ketch.client.http import Connection, ObjectNotFound, quote_path
from ketch.common.errors import NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.client.http import Query
    from ketch.spec.engine_api import Filters

__all__ = ["NetworkCalls"]


class NetworkCalls:
    conn: Connection

    def networks(self, filters: Filters | None = None) -> list[dict[str, Any]]:
        query = {"filters": filters.to_json() if filters else None}
        result: list[dict[str, Any]] = self.conn.request("GET", "/networks", query=query).json() or []
        return result

    def inspect_network(self, network: str, *, verbose: bool = False, scope: str = "") -> dict[str, Any]:
        if not network:
            raise ObjectNotFound("network", network)  # docker asks nothing for an empty name
        query: Query = {"verbose": "true" if verbose else None, "scope": scope}
        try:
            response = self.conn.request("GET", f"/networks/{quote_path(network)}", query=query)
        except NotFound:
            raise ObjectNotFound("network", network) from None
        result: dict[str, Any] = response.json()
        return result

    def create_network(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` is a NetworkCreateRequest (the options and ``Name``); the answer has ``Id`` and ``Warning``."""
        result: dict[str, Any] = self.conn.request("POST", "/networks/create", json_body=body).json() or {}
        return result

    def remove_network(self, network: str) -> None:
        try:
            self.conn.request("DELETE", f"/networks/{quote_path(network)}").read()
        except NotFound:
            raise ObjectNotFound("network", network) from None

    def connect_network(self, network: str, container: str, config: dict[str, Any] | None) -> None:
        body = {"Container": container, "EndpointConfig": config}
        self.conn.request("POST", f"/networks/{quote_path(network)}/connect", json_body=body).read()

    def disconnect_network(self, network: str, container: str, *, force: bool = False) -> None:
        body = {"Container": container, "Force": force}
        self.conn.request("POST", f"/networks/{quote_path(network)}/disconnect", json_body=body).read()
