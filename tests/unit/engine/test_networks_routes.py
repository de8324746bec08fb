"""The /networks routes over a socketpair, against a fake backend: paths, status codes, bodies, and what reaches
the backend (filters, the connect and disconnect bodies)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from tests.unit.api.wire import run, serving

from ketch.api.router import Router
from ketch.api.routes import networks as network_routes
from ketch.common.errors import Forbidden, NotFound
from ketch.engine.model import EndpointConfig

JSON = [("Content-Type", "application/json")]


class FakeNetworks:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def list_networks(self, filters: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
        self.calls.append(("list", dict(filters or {})))
        return [{"Name": "bridge"}]

    def inspect(self, ref: str, *, scope: str = "") -> dict[str, Any]:
        if ref == "nosuch":
            raise NotFound("network nosuch not found")
        self.calls.append(("inspect", ref, scope))
        return {"Name": ref}

    def create(self, body: Any) -> dict[str, str]:
        self.calls.append(("create", body))
        return {"Id": "a" * 64, "Warning": ""}

    def remove(self, ref: str) -> None:
        if ref == "bridge":
            raise Forbidden("bridge is a pre-defined network and cannot be removed")
        self.calls.append(("remove", ref))

    def prune(self, filters: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
        self.calls.append(("prune", dict(filters or {})))
        return {"NetworksDeleted": ["n1"]}

    def connect(self, ref: str, container_ref: str, config: EndpointConfig | None = None) -> None:
        self.calls.append(("connect", ref, container_ref, config))

    def disconnect(self, ref: str, container_ref: str, *, force: bool = False) -> None:
        self.calls.append(("disconnect", ref, container_ref, force))


def test_network_routes() -> None:
    fake = FakeNetworks()
    router = Router()
    network_routes.register(router, fake)

    async def go() -> None:
        async with serving(router) as (_, connect):
            wire = await connect()
            reply = await wire.call("GET", '/v1.41/networks?filters={"name":{"n1":true}}')
            assert (reply.status, reply.json()) == (200, [{"Name": "bridge"}])
            reply = await wire.call("GET", "/v1.41/networks/n1?scope=local")
            assert (reply.status, reply.json()) == (200, {"Name": "n1"})
            reply = await wire.call("GET", "/v1.41/networks/nosuch")
            assert (reply.status, reply.json()) == (404, {"message": "network nosuch not found"})
            body = json.dumps({"Name": "n1", "CheckDuplicate": True}).encode()
            reply = await wire.call("POST", "/v1.41/networks/create", body=body, headers=JSON)
            assert (reply.status, reply.json()) == (201, {"Id": "a" * 64, "Warning": ""})
            reply = await wire.call("DELETE", "/v1.41/networks/n1")
            assert reply.status == 204
            reply = await wire.call("DELETE", "/v1.41/networks/bridge")
            assert reply.status == 403
            body = json.dumps({"Container": "c1", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.0.0.9"},
                                                                     "Aliases": ["web"]}}).encode()  # fmt: skip
            reply = await wire.call("POST", "/v1.41/networks/n1/connect", body=body, headers=JSON)
            assert (reply.status, reply.body) == (200, b"")
            body = json.dumps({"Container": "c1", "Force": True}).encode()
            reply = await wire.call("POST", "/v1.41/networks/n1/disconnect", body=body, headers=JSON)
            assert reply.status == 200
            body = json.dumps(
                {"Container": "c1", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "x"}}}
            ).encode()
            reply = await wire.call("POST", "/v1.41/networks/n1/connect", body=body, headers=JSON)
            assert (reply.status, reply.json()) == (400, {"message": "invalid IPv4 address: x"})
            reply = await wire.call("POST", "/v1.41/networks/n1/connect", body=b"{}", headers=JSON)
            assert (reply.status, reply.json()) == (400, {"message": "no container specified"})
            reply = await wire.call("POST", '/v1.41/networks/prune?filters={"label":["a=b"]}')
            assert (reply.status, reply.json()) == (200, {"NetworksDeleted": ["n1"]})

    run(go())
    assert fake.calls == [
        ("list", {"name": ["n1"]}),
        ("inspect", "n1", "local"),
        ("create", {"Name": "n1", "CheckDuplicate": True}),
        ("remove", "n1"),
        ("connect", "n1", "c1", EndpointConfig(ipv4_address="10.0.0.9", aliases=("web",))),
        ("disconnect", "n1", "c1", True),
        ("prune", {"label": ["a=b"]}),
    ]
