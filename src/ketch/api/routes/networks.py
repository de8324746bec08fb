"""Network routes: ``GET /networks``, ``GET /networks/{id}``, ``POST /networks/create``,
``DELETE /networks/{id}``, ``POST /networks/{id}/connect``, ``POST /networks/{id}/disconnect``,
``POST /networks/prune``. The work happens in engine/networks.py, in worker threads (it changes the kernel's
links and rules)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ketch.api.http import Reply, Request, Response
from ketch.api.router import Router
from ketch.common.errors import InvalidArgument
from ketch.engine.model import EndpointConfig

__all__ = ["NetworkBackend", "register"]


class NetworkBackend(Protocol):
    def list_networks(self, filters: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]: ...
    def inspect(self, ref: str, *, scope: str = "") -> dict[str, Any]: ...
    def create(self, body: Any) -> dict[str, str]: ...
    def remove(self, ref: str) -> None: ...
    def prune(self, filters: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]: ...
    def connect(self, ref: str, container_ref: str, config: EndpointConfig | None = None) -> None: ...
    def disconnect(self, ref: str, container_ref: str, *, force: bool = False) -> None: ...


def _filters(request: Request) -> dict[str, list[str]]:
    parsed = request.query.filters()
    return {key: parsed.get(key) for key in parsed}


def _object(body: Any, what: str) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidArgument(f"json: cannot unmarshal into Go value of type {what}")
    return body


def _container(body: dict[str, Any], what: str) -> str:
    container = body.get("Container") or body.get("container") or ""
    if not isinstance(container, str):
        raise InvalidArgument(f"json: cannot unmarshal {type(container).__name__} into Go struct field "
                              f"{what}.Container of type string")  # fmt: skip
    if not container:
        raise InvalidArgument("no container specified")
    return container


def register(router: Router, networks: NetworkBackend) -> None:
    async def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def list_networks(request: Request) -> Reply:
        return Response.json(await run(networks.list_networks, _filters(request)))

    async def inspect(request: Request) -> Reply:
        scope = request.query.get("scope") or ""
        return Response.json(await run(networks.inspect, request.params["id"], scope=scope))

    async def create(request: Request) -> Reply:
        body = await request.json()
        return Response.json(await run(networks.create, body), 201)

    async def remove(request: Request) -> Reply:
        await run(networks.remove, request.params["id"])
        return Response.empty(204)

    async def prune(request: Request) -> Reply:
        return Response.json(await run(networks.prune, _filters(request)))

    async def connect(request: Request) -> Reply:
        body = _object(await request.json(), "types.NetworkConnect")
        container = _container(body, "NetworkConnect")
        raw = body.get("EndpointConfig")
        config = None if raw is None else EndpointConfig.from_api(raw, "NetworkConnect.EndpointConfig")
        await run(networks.connect, request.params["id"], container, config)
        return Response.empty(200)

    async def disconnect(request: Request) -> Reply:
        body = _object(await request.json(), "types.NetworkDisconnect")
        container = _container(body, "NetworkDisconnect")
        force = body.get("Force", False)
        if not isinstance(force, bool):
            raise InvalidArgument(
                "json: cannot unmarshal into Go struct field NetworkDisconnect.Force of type bool"
            )
        await run(networks.disconnect, request.params["id"], container, force=force)
        return Response.empty(200)

    router.add("GET", "/networks", list_networks)
    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    router.add("GET", "/networks/{id}", inspect)
    router.add("DELETE", "/networks/{id}", remove)
    router.add("POST", "/networks/{id}/connect", connect)
    router.add("POST", "/networks/{id}/disconnect", disconnect)
